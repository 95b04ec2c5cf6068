/**
 * Rendered PROPFIND listings, kept until something they show may have changed.
 *
 * A folder's `Depth: 1` answer is the same bytes for the same user, properties and href until
 * something in it changes. What can change it is known: every change made through this provider
 * is an event, whatever the door; changes made around it are reported by the observer (and the
 * paths it merely looked at, which another process may have changed whole, as stale); the passing
 * of time matters only through expiring grants (the provider tells when the first one that
 * counted expires) and lock timeouts (listings that show a lock are not kept).
 *
 * A change at a path changes the listing of the path itself, of everything below it (a folder
 * moved or removed), and one entry in the listing of each folder above it: the child on the way
 * to the change (a folder's tree size and etag move with any change below it). So a listing whose
 * folder path is known is dropped by a change at or above that path; a change below it only marks
 * the child it goes through, which is rendered again from a fresh stat when the listing is next
 * asked for (entry by entry: a sync client's listing of the folder it just wrote to costs one stat
 * per changed child, not a listing); changes elsewhere in its space leave it. A change whose path
 * is not known (a grant: permissions are inherited; the space itself; the observer's long batches)
 * drops the whole space, and a listing whose folder path is not known (reached through a share, or
 * by a user who may not see paths) goes with any change in its space. A listing that was being
 * made while its folder or a folder above changed is not kept at all; one that saw a change below
 * is kept with that child marked. The folder's own etag is compared as well while no child is
 * marked, so changes made by another Stowage process that moved it are seen even without an
 * observer (once a child is marked, the folder's etag is expected to move: only the events say
 * what changed). Edits made around Stowage are only seen through the observer, and so are changes
 * by other Stowage processes unless their events reach this one; enable this only where one runs
 * (as `stowage serve` does) or where nothing writes around Stowage.
 */
import type { EventBus } from '../core/events.js';

/** Options of the listing cache. */
export interface ListingCacheOptions {
  /** Bytes of rendered XML kept, all listings together (default 64 MiB). */
  maxBytes?: number;
  /** Longest an entry is used, as a safety net (default 60 s). */
  maxAgeMs?: number;
  /** Listings kept at most (default 10,000). */
  maxEntries?: number;
}

/** What an entry costs besides its chunks (the key is counted too, two bytes a character). */
const ENTRY_OVERHEAD = 512;

interface Entry {
  /**
   * The children's responses, one after the other, in parts: a patched listing shares the
   * unchanged runs of the one it was patched from (a reader still sending that one holds no copy).
   */
  body: Buffer[];
  /** The children's names in order, and where each one's response ends in `body` (when known). */
  names: string[] | undefined;
  ends: number[] | undefined;
  /** Children to render again (changed since): name -> the generation that marked it. */
  dirty: Map<string, number> | undefined;
  /** What it holds: the memory its parts keep alive, its index and its overhead. */
  bytes: number;
  /** The folder's etag when the listing was made. */
  etag: string;
  /** The generation the listing was made at. */
  gen: number;
  /** Not used at or after this time (ms since epoch). */
  until: number;
  space: string;
  /** The folder's path from its space root (`a/b`, `''` for the root), when known. */
  path: string | undefined;
}

/** What a listing being made remembers, to be kept once it is complete. */
export interface Fill {
  readonly key: string;
  readonly space: string;
  readonly path: string | undefined;
  readonly etag: string;
  readonly gen: number;
  chunks: Buffer[] | undefined;
  bytes: number;
  /** The children listed so far (see {@link ListingCache.entry}), and where each one's response ends. */
  names: string[];
  ends: number[];
  /** Children that changed while it was made: marked in the listing kept. */
  dirty: Map<string, number> | undefined;
  /** Its folder (or one above) changed while it was made: not kept. */
  spoiled: boolean;
}

/** A kept listing, as {@link ListingCache.get} gives it. */
export interface Kept {
  /** The children's responses, as rendered (in parts: write them one after the other). */
  readonly body: readonly Buffer[];
  /**
   * Children that changed since (names in the folder), to render again from a fresh stat and hand
   * to {@link ListingCache.patch} before `body` is used; absent when there is none.
   */
  readonly dirty?: readonly string[];
}

interface KeptEntry extends Kept {
  readonly entry: Entry;
  /** The generation when it was taken: what was marked later is still to do. */
  readonly gen: number;
}

/** Children marked in a listing at most (and an eighth of its entries when more): past that it goes. */
const MAX_DIRTY = 64;

/**
 * Parts of a patched listing at most: past that (or once the buffers they keep alive hold twice
 * its bytes and more), it is copied into new {@link PART}-sized parts.
 */
const MAX_PARTS = 1024;
const PART = 65_536;

/** Listings of one space: by folder path, and those whose path is not known. */
interface SpaceEntries {
  byPath: Map<string, Set<string>>;
  unplaced: Set<string>;
}

/** A path from the space root as `a/b` (events say `/a/b`). */
function pathKey(p: string): string {
  let s = p;
  while (s.startsWith('/')) s = s.slice(1);
  while (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

export class ListingCache {
  private readonly entries = new Map<string, Entry>();
  /** Keys of the entries of each space (storage id + space id). */
  private readonly bySpace = new Map<string, SpaceEntries>();
  /** Listings being made, by space. */
  private readonly fills = new Map<string, Set<Fill>>();
  /** Generations count changes; every change takes the next one. */
  private gen = 0;
  /** Generation of the last change that concerned everything. */
  private everything = 0;
  /** Per space: the generation of its last change (for fills whose stat came before {@link begin}). */
  private readonly lastChange = new Map<string, number>();
  private bytes = 0;
  /** Bytes held by listings being made (bounded like the kept ones). */
  private filling = 0;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private readonly off: (() => void)[];
  private counters = { hits: 0, misses: 0, stored: 0, patched: 0 };

  constructor(bus: EventBus, opts: ListingCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxAgeMs = opts.maxAgeMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.off = [
      bus.on((e) => {
        // A user's favorites are in no listing kept (the door does not keep those that show them).
        if (e.type === 'favorite.changed') return;
        // Grants are inherited, and a space's properties show everywhere in it: the whole space.
        const whole = e.type === 'grant.changed' || e.type.startsWith('space.') || e.path === undefined;
        const paths = whole ? undefined : e.from?.path !== undefined ? [e.path!, e.from.path] : [e.path!];
        // A file moved or copied over a folder replaces it: what was below goes too.
        const leaf = e.kind === 'file' && e.type !== 'moved' && e.type !== 'created';
        this.change(e.storageId, e.spaceId, paths, leaf);
      }),
      bus.onStale((storageId, spaceId, paths, inPlace) =>
        this.change(storageId, spaceId, paths, false, inPlace),
      ),
    ];
  }

  /** Hits (`patched` of them after rendering changed children again), misses and listings kept so far; entries and bytes held now. */
  stats(): { hits: number; misses: number; stored: number; patched: number; entries: number; bytes: number } {
    return { ...this.counters, entries: this.entries.size, bytes: this.bytes };
  }

  /** Stop listening and drop everything. */
  close(): void {
    for (const f of this.off) f();
    this.clear();
  }

  /** Drop everything (what a lost change notice calls for). */
  clear(): void {
    this.everything = ++this.gen;
    this.entries.clear();
    this.bySpace.clear();
    for (const set of this.fills.values()) for (const f of set) f.spoiled = true;
    this.bytes = 0;
  }

  /**
   * The rendered listing of `key`, if it is still good for a folder whose etag is now `etag`, or
   * good once the children in its `dirty` are rendered again (see {@link patch}).
   */
  get(key: string, etag: string): Kept | undefined {
    const e = this.entries.get(key);
    if (!e) {
      this.counters.misses++;
      return undefined;
    }
    if ((e.etag !== etag && !e.dirty) || e.until <= Date.now() || e.gen < this.everything) {
      this.drop(key, e);
      this.counters.misses++;
      return undefined;
    }
    // Most recently used last: eviction takes from the front.
    this.entries.delete(key);
    this.entries.set(key, e);
    this.counters.hits++;
    const kept: KeptEntry = {
      body: e.body,
      entry: e,
      gen: this.gen,
      ...(e.dirty && { dirty: [...e.dirty.keys()] }),
    };
    return kept;
  }

  /**
   * A kept listing with its changed children rendered again: `renders` maps each name of its
   * `dirty` to the child's response now, or to null when the folder no longer shows it (new
   * children go last). Keeps the result for a folder whose etag is `etag` (unless the listing was
   * dropped meanwhile; what changed meanwhile stays marked), until `until` at the latest, and
   * returns the children's responses. The unchanged runs are shared with the listing patched, not
   * copied: readers of either hold one copy of them between them.
   */
  patch(
    key: string,
    kept: Kept,
    renders: ReadonlyMap<string, string | null>,
    etag: string,
    until: number,
  ): Buffer[] {
    const { entry: e, gen } = kept as KeptEntry;
    const names: string[] = [];
    const ends: number[] = [];
    let parts: Buffer[] = [];
    let pos = 0;
    const fresh = new Rendered(renders);
    const shown = new Set<string>(); // rendered children the listing already showed
    if (e.names && e.ends) {
      const old = new Cursor(e.body);
      let run = -1; // start in e.body of the unchanged responses being gathered
      let start = 0;
      for (let i = 0; i < e.names.length; i++) {
        const name = e.names[i]!;
        const end = e.ends[i]!;
        const r = renders.get(name);
        if (r !== undefined) shown.add(name);
        if (r === undefined) {
          if (run < 0) run = start;
          pos += end - start;
          names.push(name);
          ends.push(pos);
        } else {
          if (run >= 0) old.take(run, start, parts);
          run = -1;
          if (r !== null) {
            const b = fresh.of(name);
            parts.push(b);
            pos += b.length;
            names.push(name);
            ends.push(pos);
          }
        }
        start = end;
      }
      if (run >= 0) old.take(run, start, parts);
    }
    for (const [name, r] of renders) {
      if (r === null || shown.has(name)) continue;
      const b = fresh.of(name);
      parts.push(b);
      pos += b.length;
      names.push(name);
      ends.push(pos);
    }
    let held = heldBy(parts);
    if (parts.length > MAX_PARTS || held > 2 * pos + PART) {
      parts = copied(parts);
      held = pos;
    }
    this.counters.patched++;
    if (this.entries.get(key) !== e || !e.names) return parts;
    let dirty: Map<string, number> | undefined;
    for (const [name, g] of e.dirty ?? []) {
      if (g <= gen && renders.has(name)) continue;
      dirty ??= new Map();
      dirty.set(name, g);
    }
    this.drop(key, e);
    this.store(
      key,
      {
        ...e,
        body: parts,
        names,
        ends,
        dirty,
        bytes: held + indexBytes(names) + ENTRY_OVERHEAD + 2 * key.length,
        etag,
        until: Math.min(e.until, until),
      },
      true,
    );
    return parts;
  }

  /**
   * Start remembering a listing about to be made; end it with {@link done}, whatever happens.
   * `path` is the folder's path from its space root (`/a/b`), when known: only changes at, above
   * or below it drop the listing then.
   */
  /** The generation now: take it before the folder's stat, and give it to {@link begin}. */
  mark(): number {
    return this.gen;
  }

  begin(key: string, storageId: string, spaceId: string, etag: string, path?: string, since?: number): Fill {
    const fill: Fill = {
      key,
      space: `${storageId}\u0000${spaceId}`,
      path: path === undefined ? undefined : pathKey(path),
      etag,
      gen: this.gen,
      chunks: [],
      bytes: 0,
      names: [],
      ends: [],
      dirty: undefined,
      spoiled: false,
    };
    // A change between the stat and now (a move: the path is no longer the folder's) is not seen by the fill.
    if (since !== undefined && ((this.lastChange.get(fill.space) ?? 0) > since || this.everything > since))
      fill.spoiled = true;
    let set = this.fills.get(fill.space);
    if (!set) {
      set = new Set();
      this.fills.set(fill.space, set);
    }
    set.add(fill);
    return fill;
  }

  /**
   * Add the next part of a listing being made. A listing too big to keep (over a quarter of the
   * budget), or one that would take the listings being made past the budget, is given up on.
   */
  add(fill: Fill, chunk: Buffer): void {
    if (!fill.chunks) return;
    if (fill.bytes + chunk.length > this.maxBytes / 4 || this.filling + chunk.length > this.maxBytes) {
      this.giveUp(fill);
      return;
    }
    // A small buffer may be a slice of a shared 8 KiB pool: keep an exact copy instead.
    const own =
      chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.length
        ? chunk
        : Buffer.from(chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length));
    fill.chunks.push(own);
    fill.bytes += own.length;
    this.filling += own.length;
  }

  /**
   * Say that the next child's response (`bytes` long, added with {@link add} before or after) is
   * that of `name`: a listing that says so for every child can be patched entry by entry later;
   * one that does not is dropped by any change in it.
   */
  entry(fill: Fill, name: string, bytes: number): void {
    if (!fill.chunks) return;
    fill.names.push(name);
    fill.ends.push((fill.ends.at(-1) ?? 0) + bytes);
  }

  /**
   * End a listing being made. With `until` (it is complete), keep it unless its space changed
   * while it was made; `until` bounds how long it holds (a grant it depends on expires). Without,
   * drop it (the request failed).
   */
  done(fill: Fill, until?: number): void {
    const { chunks, bytes, names, ends } = fill;
    this.giveUp(fill);
    const set = this.fills.get(fill.space);
    if (set?.delete(fill) && set.size === 0) this.fills.delete(fill.space);
    if (!chunks || until === undefined || fill.spoiled || fill.gen < this.everything) return;
    // Patchable when every child said where its response ends, and they account for every byte.
    const placed = fill.path !== undefined && (ends.at(-1) ?? 0) === bytes;
    if (!placed && fill.dirty) return;
    const old = this.entries.get(fill.key);
    if (old) this.drop(fill.key, old);
    this.store(fill.key, {
      body: chunks,
      names: placed ? names : undefined,
      ends: placed ? ends : undefined,
      dirty: fill.dirty,
      bytes: bytes + (placed ? indexBytes(names) : 0) + ENTRY_OVERHEAD + 2 * fill.key.length,
      etag: fill.etag,
      gen: fill.gen,
      until: Math.min(until, Date.now() + this.maxAgeMs),
      space: fill.space,
      path: fill.path,
    });
  }

  private store(key: string, e: Entry, patched = false): void {
    this.entries.set(key, e);
    let sp = this.bySpace.get(e.space);
    if (!sp) {
      sp = { byPath: new Map(), unplaced: new Set() };
      this.bySpace.set(e.space, sp);
    }
    if (e.path === undefined) sp.unplaced.add(key);
    else {
      let keys = sp.byPath.get(e.path);
      if (!keys) {
        keys = new Set();
        sp.byPath.set(e.path, keys);
      }
      keys.add(key);
    }
    this.bytes += e.bytes;
    if (!patched) this.counters.stored++;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes && this.entries.size <= this.maxEntries) break;
      this.drop(k, v);
    }
  }

  private giveUp(fill: Fill): void {
    this.filling -= fill.bytes;
    fill.chunks = undefined;
    fill.bytes = 0;
    fill.names = [];
    fill.ends = [];
  }

  /**
   * Something changed in a space: at `paths` (and below them) when given, else anywhere in it.
   * `leaf`: the paths are files (nothing below them to look for); `inPlace`: those of the paths
   * that are folders still in place, whose own attributes alone changed (their listings stay).
   */
  private change(
    storageId: string,
    spaceId?: string,
    paths?: readonly string[],
    leaf = false,
    inPlace?: readonly string[],
  ): void {
    ++this.gen;
    if (spaceId === undefined) {
      // Anything in a storage: rare (lost events); drop everything rather than track storages.
      this.clear();
      return;
    }
    const space = `${storageId}\u0000${spaceId}`;
    this.lastChange.delete(space);
    this.lastChange.set(space, this.gen);
    if (this.lastChange.size > 100_000) this.lastChange.delete(this.lastChange.keys().next().value!);
    const keys = paths?.map(pathKey);
    const still = inPlace?.length ? new Set(inPlace.map(pathKey)) : undefined;
    for (const f of this.fills.get(space) ?? []) {
      if (f.spoiled) continue;
      if (!keys || f.path === undefined) {
        f.spoiled = true;
        continue;
      }
      for (const k of keys) {
        const child = childOn(f.path, k);
        if (child !== undefined) {
          f.dirty ??= new Map();
          f.dirty.set(child, this.gen);
          if (tooMany(f.dirty, f.names)) f.spoiled = true;
        } else if (related(f.path, k) && !still?.has(k)) f.spoiled = true;
      }
    }
    const sp = this.bySpace.get(space);
    if (!sp) return;
    if (!keys) {
      for (const set of [sp.unplaced, ...sp.byPath.values()]) this.dropAll(set);
      return;
    }
    this.dropAll(sp.unplaced);
    for (const k of keys) {
      // The path itself, unless only its own attributes changed (what is below it stays then).
      const inPlaceHere = still?.has(k) === true;
      if (!inPlaceHere) {
        const at = sp.byPath.get(k);
        if (at) this.dropAll(at);
      }
      // Every folder above it: the child on the way to it.
      for (let p = parentOf(k); p !== undefined; p = parentOf(p)) {
        const set = sp.byPath.get(p);
        if (set) this.markAll(set, childOn(p, k)!);
      }
      // Everything below it, when it may be a folder.
      if (!inPlaceHere && !leaf) {
        for (const [p, set] of sp.byPath) if (k === '' || p.startsWith(`${k}/`)) this.dropAll(set);
      }
    }
  }

  /** Mark `child` in the listings `keys`; those that cannot be patched, or hold too many marks, go. */
  private markAll(keys: Set<string>, child: string): void {
    for (const k of [...keys]) {
      const e = this.entries.get(k);
      if (!e) continue;
      if (!e.names) {
        this.drop(k, e);
        continue;
      }
      e.dirty ??= new Map();
      e.dirty.set(child, this.gen);
      if (tooMany(e.dirty, e.names)) this.drop(k, e);
    }
  }

  private dropAll(keys: Set<string>): void {
    for (const k of [...keys]) {
      const e = this.entries.get(k);
      if (e) this.drop(k, e);
    }
  }

  private drop(key: string, e: Entry): void {
    if (this.entries.get(key) !== e) return;
    this.entries.delete(key);
    this.bytes -= e.bytes;
    const sp = this.bySpace.get(e.space);
    if (!sp) return;
    if (e.path === undefined) sp.unplaced.delete(key);
    else {
      const keys = sp.byPath.get(e.path);
      keys?.delete(key);
      if (keys?.size === 0) sp.byPath.delete(e.path);
    }
    if (sp.unplaced.size === 0 && sp.byPath.size === 0) this.bySpace.delete(e.space);
  }
}

/** More children marked than patching is worth: making the listing anew is cheaper then. */
function tooMany(dirty: ReadonlyMap<string, number>, names: readonly string[]): boolean {
  return dirty.size > Math.max(MAX_DIRTY, names.length >> 3);
}

/** The bytes of the buffers under `parts` (each counted once, however many parts it is under). */
function heldBy(parts: readonly Buffer[]): number {
  const seen = new Set<ArrayBufferLike>();
  let n = 0;
  for (const p of parts) {
    if (seen.has(p.buffer)) continue;
    seen.add(p.buffer);
    n += p.buffer.byteLength;
  }
  return n;
}

/** `parts` copied into new parts of {@link PART} bytes (the last one shorter). */
function copied(parts: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let cur: Buffer | undefined;
  let at = 0;
  let left = 0;
  for (const p of parts) left += p.length;
  for (const p of parts) {
    let from = 0;
    while (from < p.length) {
      if (!cur || at === cur.length) {
        cur = Buffer.allocUnsafeSlow(Math.min(PART, left));
        out.push(cur);
        at = 0;
      }
      const n = p.copy(cur, at, from);
      at += n;
      from += n;
      left -= n;
    }
  }
  return out;
}

/** Reads byte ranges of a listing held in parts, front to back. */
class Cursor {
  private i = 0; // the part holding offset `start`
  private start = 0; // offset of part i
  constructor(private readonly parts: readonly Buffer[]) {}

  /** Push the parts (or pieces of parts) covering `[from, to)` onto `out`; `from` never goes back. */
  take(from: number, to: number, out: Buffer[]): void {
    let a = from;
    while (a < to) {
      let p = this.parts[this.i]!;
      while (a >= this.start + p.length) {
        this.start += p.length;
        p = this.parts[++this.i]!;
      }
      const end = Math.min(to, this.start + p.length);
      out.push(
        a === this.start && end === this.start + p.length ? p : p.subarray(a - this.start, end - this.start),
      );
      a = end;
    }
  }
}

/** The responses rendered again, in one buffer of their own (not a slice of Node's shared pool). */
class Rendered {
  private readonly buf: Buffer;
  private readonly at = new Map<string, [number, number]>();
  constructor(renders: ReadonlyMap<string, string | null>) {
    let n = 0;
    for (const r of renders.values()) if (r !== null) n += Buffer.byteLength(r);
    this.buf = Buffer.allocUnsafeSlow(n);
    let pos = 0;
    for (const [name, r] of renders) {
      if (r === null) continue;
      const len = this.buf.write(r, pos);
      this.at.set(name, [pos, pos + len]);
      pos += len;
    }
  }

  of(name: string): Buffer {
    const [a, b] = this.at.get(name)!;
    return this.buf.subarray(a, b);
  }
}

/** What a listing's index of children costs: each name (two bytes a character) and its end. */
function indexBytes(names: readonly string[]): number {
  let n = 0;
  for (const name of names) n += 24 + 2 * name.length;
  return n;
}

/** The parent of a path (`a/b` -> `a`, `a` -> `''`), none for the root. */
function parentOf(p: string): string | undefined {
  if (p === '') return undefined;
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/** The child of `folder` on the way to `changed` (a path strictly below it), else undefined. */
function childOn(folder: string, changed: string): string | undefined {
  let rest: string;
  if (folder === '') {
    if (changed === '') return undefined;
    rest = changed;
  } else {
    if (!changed.startsWith(`${folder}/`)) return undefined;
    rest = changed.slice(folder.length + 1);
  }
  const i = rest.indexOf('/');
  return i < 0 ? rest : rest.slice(0, i);
}

/** Whether a change at `changed` may change the listing of folder `folder`: at, above or below it. */
function related(folder: string, changed: string): boolean {
  return (
    folder === changed ||
    changed === '' ||
    folder === '' ||
    changed.startsWith(`${folder}/`) ||
    folder.startsWith(`${changed}/`)
  );
}
