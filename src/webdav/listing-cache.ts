/**
 * Rendered PROPFIND listings, kept until anything in their space may have changed.
 *
 * A folder's `Depth: 1` answer is the same bytes for the same user, properties and href until
 * something in the space changes. What can change it is known: every change made through this
 * provider is an event, whatever the door; changes made around it are reported by the observer
 * (and the paths it merely looked at, which another process may have changed whole, as stale);
 * the passing of time matters only through expiring grants (the provider tells when the first
 * one that counted expires) and lock timeouts (listings that show a lock are not kept).
 *
 * So an entry is dropped on any event or staleness of its space: coarse, and plainly right
 * (a folder's tree size, etag and quota move with changes far below it). A listing that was
 * being made while its space changed is not kept at all. The folder's own etag is compared as
 * well, so changes made by another Stowage process that moved it are seen even without an
 * observer; but edits made around Stowage are only seen through the observer, so enable this
 * only where one runs (as `stowage serve` does) or where nothing writes around Stowage.
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
  chunks: Buffer[];
  bytes: number;
  /** The folder's etag when the listing was made. */
  etag: string;
  /** The generation the listing was made at. */
  gen: number;
  /** Not used at or after this time (ms since epoch). */
  until: number;
  space: string;
}

/** What a listing being made remembers, to be kept once it is complete. */
export interface Fill {
  readonly key: string;
  readonly space: string;
  readonly etag: string;
  readonly gen: number;
  chunks: Buffer[] | undefined;
  bytes: number;
}

export class ListingCache {
  private readonly entries = new Map<string, Entry>();
  /** Keys of the entries of each space. */
  private readonly bySpace = new Map<string, Set<string>>();
  /** Per space (storage id + space id): the generation of its last change. */
  private readonly changed = new Map<string, number>();
  /** Generations count changes; every change takes the next one. */
  private gen = 0;
  /** Generation of the last change that concerned everything. */
  private everything = 0;
  private bytes = 0;
  /** Bytes held by listings being made (bounded like the kept ones). */
  private filling = 0;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private readonly off: (() => void)[];
  private counters = { hits: 0, misses: 0, stored: 0 };

  constructor(bus: EventBus, opts: ListingCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxAgeMs = opts.maxAgeMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.off = [
      bus.on((e) => this.change(e.storageId, e.spaceId)),
      bus.onStale((storageId, spaceId) => this.change(storageId, spaceId)),
    ];
  }

  /** Hits, misses and listings kept so far; entries and bytes held now. */
  stats(): { hits: number; misses: number; stored: number; entries: number; bytes: number } {
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
    this.changed.clear();
    this.bytes = 0;
  }

  /** The rendered listing of `key`, if it is still good for a folder whose etag is now `etag`. */
  get(key: string, etag: string): Buffer[] | undefined {
    const e = this.entries.get(key);
    if (!e) {
      this.counters.misses++;
      return undefined;
    }
    if (e.etag !== etag || e.until <= Date.now() || !this.current(e.space, e.gen)) {
      this.drop(key, e);
      this.counters.misses++;
      return undefined;
    }
    // Most recently used last: eviction takes from the front.
    this.entries.delete(key);
    this.entries.set(key, e);
    this.counters.hits++;
    return e.chunks;
  }

  /** Start remembering a listing about to be made; end it with {@link done}, whatever happens. */
  begin(key: string, storageId: string, spaceId: string, etag: string): Fill {
    return { key, space: `${storageId}\u0000${spaceId}`, etag, gen: this.gen, chunks: [], bytes: 0 };
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
   * End a listing being made. With `until` (it is complete), keep it unless its space changed
   * while it was made; `until` bounds how long it holds (a grant it depends on expires). Without,
   * drop it (the request failed).
   */
  done(fill: Fill, until?: number): void {
    const chunks = fill.chunks;
    const bytes = fill.bytes;
    this.giveUp(fill);
    if (!chunks || until === undefined || !this.current(fill.space, fill.gen)) return;
    const old = this.entries.get(fill.key);
    if (old) this.drop(fill.key, old);
    const e: Entry = {
      chunks,
      bytes: bytes + ENTRY_OVERHEAD + 2 * fill.key.length,
      etag: fill.etag,
      gen: fill.gen,
      until: Math.min(until, Date.now() + this.maxAgeMs),
      space: fill.space,
    };
    this.entries.set(fill.key, e);
    let keys = this.bySpace.get(e.space);
    if (!keys) {
      keys = new Set();
      this.bySpace.set(e.space, keys);
    }
    keys.add(fill.key);
    this.bytes += e.bytes;
    this.counters.stored++;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes && this.entries.size <= this.maxEntries) break;
      this.drop(k, v);
    }
  }

  private giveUp(fill: Fill): void {
    this.filling -= fill.bytes;
    fill.chunks = undefined;
    fill.bytes = 0;
  }

  private current(space: string, gen: number): boolean {
    return gen >= this.everything && (this.changed.get(space) ?? 0) <= gen;
  }

  private change(storageId: string, spaceId?: string): void {
    const g = ++this.gen;
    if (spaceId === undefined) {
      // Anything in a storage: rare (lost events); drop everything rather than track storages.
      this.clear();
      return;
    }
    const space = `${storageId}\u0000${spaceId}`;
    this.changed.set(space, g);
    if (this.changed.size > 100_000) this.clear();
    for (const k of this.bySpace.get(space) ?? []) {
      const e = this.entries.get(k);
      if (e) this.drop(k, e);
    }
  }

  private drop(key: string, e: Entry): void {
    if (this.entries.get(key) !== e) return;
    this.entries.delete(key);
    this.bytes -= e.bytes;
    const keys = this.bySpace.get(e.space);
    keys?.delete(key);
    if (keys?.size === 0) this.bySpace.delete(e.space);
  }
}
