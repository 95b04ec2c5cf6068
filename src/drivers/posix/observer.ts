/**
 * The POSIX driver's observer: files and folders written around Stowage (scanners, instruments,
 * rsync, admins) become first-class: ids, checksums, tree sizes and etags, move and copy detection,
 * deletions, and a report of each change.
 *
 * How it goes:
 * - Every folder of every space is watched ({@link TreeWatcher}); each event marks a path pending.
 * - A path is looked at once it has been quiet for `debounceMs`. What is already consistent
 *   (Stowage's own writes, changes already seen) costs an lstat, a getxattr and at most a readlink,
 *   and is not reported. Any other file waits until its ctime (which every write moves) has been
 *   still for `settleMs` (a file still being written waits). Everything else is vetted (before-hooks),
 *   hashed (outside the commit lock) and then assimilated under the space's commit lock, which
 *   serialises it with the API: the same rules as on first sight (a copy made with `cp -a` gets a
 *   new id, a move keeps its id, and with it its shares).
 * - Folders whose content changed are recounted and their sizes and tree times propagated. A
 *   recount costs a pass over the folder, so a folder is recounted at most once per ten times what
 *   its last recount took (a folder of 100,000 files filling up is not recounted per file); one
 *   put off is recounted when its time comes, and `idle()` waits for it.
 * - Paths that disappeared are matched to the ids they had (the process's cache of recent
 *   sightings, else a pass over the id index, whose entries are taken by their parent's id and
 *   name: below a folder moved since, they still name the paths from before) and reported as
 *   deleted, unless Stowage itself put them in the trash or they are found elsewhere. A folder
 *   removed takes the index entries of everything below it along (a later pass).
 * - At start, and after any sign that events were lost, every space is scanned: each node's ctime
 *   is compared with the start of the last complete scan (kept on the space root), so only what
 *   changed since is examined; deletions are found through the id index entries of folders that
 *   changed. A periodic scan is a safety net for what nothing announced.
 *
 * @module
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { ChecksumAccumulator } from '../../core/checksums.js';
import type { ExternalChange, Watch, WatchOptions, WatchStats } from '../../core/driver.js';
import { StorageError } from '../../core/errors.js';
import { nextTreeTime, nowUs } from '../../core/etag.js';
import type { Annotation, PendingChange } from '../../core/events.js';
import { ParallelChecksums } from '../../core/parallel-checksums.js';
import { RESERVED_ROOT_NAME } from '../../core/refs.js';
import type { Checksums, ResourceInfo } from '../../core/types.js';
import { TreeWatcher } from '../../observer/tree-watcher.js';
import { bornAt, checksumsValid, type NodeRecord, sameChecksums, XATTR_PREFIX } from './record.js';
import {
  type Displaced,
  depth,
  keyOf,
  type PosixSpace,
  parentKeyOf,
  placedAt,
  sameFile,
  segsOf,
} from './space.js';
import { isMissing } from './util.js';

/** On a space root: start (ms) of the last complete scan; nodes with an older ctime are unchanged. */
export const XATTR_SCANNED = `${XATTR_PREFIX}w`;
/** Timestamps are compared with this much slack (clock granularity, a scan's own duration). */
const MARGIN_MS = 2000;
/** The longest delay a timer takes (2^31 - 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Keys assimilated per commit during a scan. */
const SCAN_CHUNK = 512;
const PARALLEL_HASH_BYTES = 1024 * 1024;

/** What the observer needs from the driver (its private parts). */
export interface ObserverHost {
  readonly root: string;
  readonly storageId: string;
  log(message: string, err?: unknown): void;
  /** The space with this alias, if it is one. */
  spaceAt(alias: string): Promise<PosixSpace | undefined>;
  /** Every space. */
  allSpaces(): Promise<PosixSpace[]>;
  /** The node at `key` if it has a record, and carries `id` when one is given. */
  probe(sp: PosixSpace, key: string, id?: string): Promise<{ st: fs.Stats; rec: NodeRecord } | undefined>;
  /**
   * Where the node `id` is now, if its index entry or its parents' entries lead to it (no folder
   * is read and no scan made: a node moved around Stowage and not seen yet is not found).
   */
  whereIs(sp: PosixSpace, id: string): Promise<string | undefined>;
  /** Give a copy made around Stowage its own id (lock held). */
  newIdentityHeld(
    sp: PosixSpace,
    segs: string[],
    rec: NodeRecord,
    parentId: string,
    st: fs.Stats,
  ): Promise<NodeRecord>;
  /** Info from a record and an lstat. */
  infoNow(sp: PosixSpace, segs: string[], st: fs.Stats, rec: NodeRecord): ResourceInfo;
  /** Merge metadata into a node's (lock held; `rec` is updated, the caller writes it). */
  mergeMetadataHeld(
    sp: PosixSpace,
    segs: string[],
    rec: NodeRecord,
    md: Record<string, string>,
  ): Promise<void>;
  /** Move a refused node to the trash (or, without one, leave it); what was moved, if anything. */
  reject(sp: PosixSpace, segs: string[]): Promise<ResourceInfo | undefined>;
}

interface Candidate {
  key: string;
  segs: string[];
  st: fs.Stats;
  rec?: NodeRecord;
  annotation?: Annotation;
  rejected?: string;
  sums?: Required<Checksums>;
  skip?: boolean;
  /** The id a scan's pass over the index placed here, gone from here (replaced while unwatched). */
  was?: string;
}

interface Pending {
  due: number;
  gone?: boolean;
  /** Every event of it said: a folder still in its place, whose own attributes changed. */
  inPlace?: boolean;
}

function unchanged(a: fs.Stats, b: fs.Stats): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** The id of the node at `key`, if it is there with a record (gone: its own disappearance tells). */
function idAt(sp: PosixSpace, key: string): string | undefined {
  try {
    return sp.recordHeld(segsOf(key))?.id;
  } catch {
    return undefined;
  }
}

function baseName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/**
 * Every entry of a space's id index as id and path, read with synchronous calls (about 2 µs an
 * entry), letting the event loop run every 2,000 entries.
 */
async function* indexEntries(sp: PosixSpace): AsyncGenerator<{ id: string; parent: string; rel: string }> {
  const dir = sp.index.dir;
  let shards: string[];
  try {
    shards = fs.readdirSync(dir);
  } catch {
    return;
  }
  let n = 0;
  for (const shard of shards) {
    let names: string[];
    try {
      names = fs.readdirSync(`${dir}/${shard}`);
    } catch {
      continue;
    }
    for (const id of names) {
      if (id.startsWith('.tmp-')) continue;
      let target: string;
      try {
        target = fs.readlinkSync(`${dir}/${shard}/${id}`);
      } catch {
        continue;
      }
      const slash = target.indexOf('/');
      if (slash <= 0) continue;
      yield { id, parent: target.slice(0, slash), rel: target.slice(slash + 1) };
      if (++n % 2000 === 0) await new Promise<void>((r) => setImmediate(r));
    }
  }
}

/** The running observer of one POSIX driver. */
export class PosixObserver implements Watch {
  readonly ready: Promise<void>;
  private readonly spacesDir: string;
  private readonly tree: TreeWatcher;
  private readonly pending = new Map<string, Pending>();
  /** The grants version of each space when its root last changed (see {@link tick}). */
  private readonly grantsVersions = new Map<string, number>();
  /** A hash of the grants document of folders last reported in place (see {@link grantsUnchanged}). */
  private readonly grantsSeen = new Map<string, string>();
  private readonly debounceMs: number;
  private readonly settleMs: number;
  private readonly rescanIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private work: Promise<void> = Promise.resolve();
  private working = false;
  private closed = false;
  private scanWanted: string | undefined;
  private scanning: Promise<void> | undefined;
  private readonly counts = { changes: 0, scans: 0, lost: 0 };
  /** Per folder (space id + key): when it may be recounted next, and whether one is owed. */
  private readonly recounts = new Map<string, { next: number; owed: boolean }>();
  /** Recounts put off (a folder recounted a moment ago) and not done yet: {@link idle} waits for them. */
  private owedRecounts = 0;
  /**
   * Files with a record held back while still being written, by id: alive where they are, so a
   * file renamed over their old name does not take their id (a log moved aside that its writer
   * keeps appending to).
   */
  private readonly settling = new Map<string, { space: string; key: string }>();
  /** Ids a scan found gone from paths that are looked at again later (space id, NUL, key). */
  private readonly wasAt = new Map<string, string>();
  private idleWaiters: (() => void)[] = [];
  /**
   * Per space, folders removed around Stowage: the index entries of what was below them are
   * still to go (a pass over the index, put off like the ones that look ids up).
   */
  private readonly bereaved = new Map<string, { sp: PosixSpace; ids: Set<string> }>();
  private orphanTimer: NodeJS.Timeout | undefined;
  private dropping = false;

  constructor(
    private readonly host: ObserverHost,
    private readonly opts: WatchOptions,
  ) {
    this.spacesDir = `${host.root}/spaces`;
    this.debounceMs = Math.max(0, opts.debounceMs ?? 50);
    this.settleMs = Math.max(0, opts.settleMs ?? 100);
    this.rescanIntervalMs = opts.rescanIntervalMs ?? 3_600_000;
    const tree = new TreeWatcher({
      root: this.spacesDir,
      skip: (abs) => this.internal(abs),
      onChange: (abs, gone, inPlace) => this.touch(abs, gone, inPlace),
      onLost: (reason) => this.lost(reason),
    });
    this.tree = tree;
    this.ready = (async () => {
      await tree.start();
      if (opts.reconcile !== false) await this.rescan();
    })();
    this.ready.catch((err) => this.log('observer start failed', err));
    if (this.rescanIntervalMs > 0) {
      this.periodic = setInterval(() => {
        void this.rescan().catch((err) => this.log('periodic scan failed', err));
      }, this.rescanIntervalMs).unref();
    }
  }

  stats(): WatchStats {
    return {
      watchedFolders: this.tree.size,
      pending: this.pending.size,
      changes: this.counts.changes,
      scans: this.counts.scans,
      lost: this.counts.lost,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.orphanTimer);
    clearInterval(this.periodic);
    this.tree.close();
    await this.work.catch(() => {});
    await this.scanning?.catch(() => {});
    this.wakeIdle();
  }

  /** Resolves when nothing is pending, processing or scanning. */
  async idle(): Promise<void> {
    await this.ready;
    // Some of what is waited for runs from timers that do not keep the process up (a recount put
    // off, the rescan after lost events): while someone waits, the process stays up for them
    // (else a script awaiting this at its top level would end there, with exit code 13).
    let up: NodeJS.Timeout | undefined;
    try {
      for (;;) {
        if (this.closed) return;
        if (
          !this.pending.size &&
          !this.working &&
          !this.owedRecounts &&
          !this.bereaved.size &&
          !this.dropping &&
          !this.scanning &&
          this.scanWanted === undefined
        )
          return;
        up ??= setInterval(() => {}, MAX_TIMER_MS);
        await new Promise<void>((r) => this.idleWaiters.push(r));
      }
    } finally {
      clearInterval(up);
    }
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  private log(message: string, err?: unknown): void {
    (this.opts.log ?? this.host.log)(message, err);
  }

  /** The hidden folder of a space (never watched). */
  private internal(abs: string): boolean {
    const rel = this.relParts(abs);
    return rel?.length === 3 && rel[2] === RESERVED_ROOT_NAME;
  }

  /** Segments of a path below the spaces folder (`<type>`, `<alias>`, then the node's), if it is. */
  private relParts(abs: string): string[] | undefined {
    return abs.startsWith(`${this.spacesDir}/`) ? abs.slice(this.spacesDir.length + 1).split('/') : undefined;
  }

  // ---------------------------------------------------------------- events in

  private touch(abs: string, gone?: boolean, inPlace?: boolean): void {
    if (this.closed) return;
    const prev = this.pending.get(abs);
    this.pending.set(abs, {
      due: Date.now() + this.debounceMs,
      gone: gone || prev?.gone,
      inPlace: inPlace === true && (prev === undefined || prev.inPlace === true),
    });
    this.schedule(this.debounceMs);
  }

  private lost(reason: string): void {
    this.counts.lost++;
    this.opts.onStale?.();
    this.log(`observer: ${reason}; rescanning`);
    if (this.scanWanted === undefined) {
      this.scanWanted = reason;
      setTimeout(() => void this.rescan().catch((err) => this.log('rescan failed', err)), 200).unref();
    }
  }

  private schedule(ms: number): void {
    if (this.timer || this.closed) return;
    // (a delay past what a timer holds would fire at once, again and again)
    ms = Math.min(ms, MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.work = this.work.then(() => this.tick()).catch((err) => this.log('observer failed', err));
    }, ms);
  }

  /** Process every pending path that is due, space by space. */
  private async tick(): Promise<void> {
    if (this.closed) return;
    this.working = true;
    try {
      // Events of one burst (the two halves of a move) get due times a few ms apart: take them together.
      const now = Date.now() + Math.max(5, this.debounceMs / 2);
      const bySpace = new Map<string, { keys: Set<string>; gone: Set<string>; inPlace: Set<string> }>();
      const roots = new Map<string, boolean>();
      for (const [abs, p] of this.pending) {
        if (p.due > now) continue;
        this.pending.delete(abs);
        const where = this.locate(abs);
        if (!where) continue;
        if (where.key === '') {
          // A space root's own xattrs changed (its tree size, its grants, the grants version
          // another process bumped): nothing to assimilate, but caches may be stale.
          roots.set(where.alias, (roots.get(where.alias) ?? true) && p.inPlace === true);
          continue;
        }
        let e = bySpace.get(where.alias);
        if (!e) {
          e = { keys: new Set(), gone: new Set(), inPlace: new Set() };
          bySpace.set(where.alias, e);
        }
        e.keys.add(where.key);
        if (p.gone) e.gone.add(where.key);
        if (p.inPlace) e.inPlace.add(where.key);
      }
      for (const [alias, inPlace] of roots) {
        const sp = await this.host.spaceAt(alias).catch(() => undefined);
        if (!sp) continue;
        // Grants are inherited: one changed anywhere in the space (by any process: it bumps the
        // root's grants version) makes the whole space stale, unless this process announced it
        // (a grant set, a folder moved: the events say where). Else only the root's own attributes
        // changed, which no listing shows but the root's own answer (never kept).
        const gv = sp.grantsVersion();
        const seen = this.grantsVersions.get(sp.id);
        this.grantsVersions.set(sp.id, gv);
        const moved = seen === undefined || (gv !== seen && !sp.announcedSince(seen, gv));
        if (!inPlace || moved || !(await this.grantsUnchanged(sp, ''))) this.opts.onStale?.(sp.id);
      }
      for (const [alias, { keys, gone, inPlace }] of bySpace) {
        const sp = await this.host.spaceAt(alias).catch(() => undefined);
        if (!sp) continue;
        try {
          await this.process(sp, [...keys], gone, undefined, inPlace);
        } catch (err) {
          this.log(`observer: changes in ${alias} failed; rescanning`, err);
          this.lost(`processing changes in ${alias} failed`);
        }
      }
    } finally {
      this.working = false;
      let next = Number.POSITIVE_INFINITY;
      for (const p of this.pending.values()) next = Math.min(next, p.due);
      if (next !== Number.POSITIVE_INFINITY) this.schedule(Math.max(0, next - Date.now()));
      else this.wakeIdle();
    }
  }

  /**
   * Space alias and key of a path inside a space: `''` for the space root itself; undefined for
   * its hidden folder and anything outside a space.
   */
  private locate(abs: string): { alias: string; key: string } | undefined {
    const parts = this.relParts(abs);
    if (!parts || parts.length < 2 || parts[2] === RESERVED_ROOT_NAME) return undefined;
    return { alias: `${parts[0]}/${parts[1]}`, key: parts.slice(2).join('/') };
  }

  // ---------------------------------------------------------------- one batch of one space

  /**
   * Look at changed paths of one space: classify, vet and hash outside the lock, assimilate under
   * it, then report. `goneIds` names ids already known for paths that disappeared (scans).
   */
  private async process(
    sp: PosixSpace,
    keys: string[],
    goneHint: ReadonlySet<string>,
    goneIds?: ReadonlyMap<string, string>,
    inPlace?: ReadonlySet<string>,
  ): Promise<void> {
    // A folder whose grants were edited by hand (no grants version bumped) is not "in place":
    // what is below it inherits them.
    const still = new Set<string>();
    if (keys.length <= 1000)
      for (const k of inPlace ?? []) if (await this.grantsUnchanged(sp, k)) still.add(k);
    this.reportStale(
      sp.id,
      keys.filter((k) => !still.has(k)),
      still,
    );
    // Folders above a change that are new to Stowage are announced first, so they come along.
    const all = new Set(keys);
    for (const key of keys) {
      for (let p = parentKeyOf(key); p !== '' && !all.has(p); p = parentKeyOf(p)) {
        let rec: NodeRecord | undefined;
        try {
          rec = sp.recordHeld(segsOf(p));
        } catch {
          break; // gone: its own event says so
        }
        if (rec && rec.ex !== 1) break;
        all.add(p);
      }
    }
    keys = [...all].sort((a, b) => depth(a) - depth(b));
    const now = Date.now();
    const present: Candidate[] = [];
    const gone: string[] = [];
    let wait = 0;
    let linked = false;
    for (const key of keys) {
      const segs = segsOf(key);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(sp.abs(segs));
      } catch {
        gone.push(key);
        continue;
      }
      if (!(st.isFile() || st.isDirectory())) continue; // symlinks and special files are never followed
      if (st.isFile() && st.nlink > 1) linked = true;
      const was = goneIds?.get(key) ?? this.takeWas(sp, key);
      let rec: NodeRecord | undefined;
      try {
        rec = sp.recordFor(segs, st);
        // Nothing to do (Stowage's own writes, changes already seen): not even a wait for it to settle.
        if (!was && (await this.consistent(sp, segs, key, st, rec))) continue;
      } catch (err) {
        if (!isMissing(err)) throw err;
        // Gone since its lstat (a temp file renamed away): looked at again, not a failed batch.
        this.repend(sp, key, this.debounceMs);
        continue;
      }
      if (st.isFile()) {
        // The ctime says when the file last changed: every write moves it, and only the kernel sets
        // it. (The mtime can be anything: touch -d, rsync -t from a clock that runs ahead.) A wait
        // is at most settleMs, whatever the clock did since.
        const quiet = now - st.ctimeMs;
        if (quiet < this.settleMs) {
          const ms = Math.min(this.settleMs, this.settleMs - quiet);
          this.repend(sp, key, ms, false, was);
          wait = Math.max(wait, ms);
          if (rec) {
            if (this.settling.size >= 10_000) this.settling.clear();
            this.settling.set(rec.id, { space: sp.id, key });
          }
          continue;
        }
      }
      present.push({ key, segs, st, ...(was && { was }) });
    }
    // A file with more names (a hard link): a change under one name shows under the others, in
    // folders no event names; caches of the space go whole (this one's listings then show the
    // file's other names, and are not kept).
    if (linked) this.opts.onStale?.(sp.id);
    // A file that waits to settle may be where a path that disappeared went (a rename moves the
    // ctime): the disappearance waits with it, so the two are seen together, as a move.
    if (wait > 0 && gone.length) {
      for (const k of gone.splice(0)) this.repend(sp, k, wait + 1, goneHint.has(k), goneIds?.get(k));
    }
    // Changes Stowage is committing right now look inconsistent until their commit ends: wait for
    // the lock once, then keep only what still needs work.
    let remaining = present;
    if (remaining.length) {
      await sp.commit(async () => {});
      const still: Candidate[] = [];
      for (const c of remaining) {
        let st: fs.Stats;
        try {
          st = fs.lstatSync(sp.abs(c.segs));
        } catch {
          gone.push(c.key);
          continue;
        }
        if (!c.was && (await this.consistent(sp, c.segs, c.key, st))) continue;
        c.st = st;
        c.rec = sp.recordHeld(c.segs);
        still.push(c);
      }
      remaining = still;
    }
    // Vet (before-hooks) and hash, outside the lock.
    const vet = this.opts.vet;
    const refused: string[] = [];
    for (const c of remaining) {
      const file = c.st.isFile();
      const fresh = !c.rec || c.rec.ex !== undefined || (file && !sp.checksumsCurrent(c.rec, c.st));
      if (!fresh) continue;
      // Inside a folder that is itself refused, nothing is asked about: it goes with its folder.
      if (refused.some((r) => c.key.startsWith(`${r}/`))) {
        c.skip = true;
        continue;
      }
      if (vet) {
        const change: PendingChange = {
          op: file ? 'write' : 'mkdir',
          origin: 'external',
          spaceId: sp.id,
          path: `/${c.key}`,
          ...(file && { size: c.st.size }),
        };
        try {
          c.annotation = (await vet(change)) ?? undefined;
        } catch (err) {
          c.rejected = err instanceof Error ? err.message : String(err);
          refused.push(c.key);
          continue;
        }
      }
      if (file) {
        const sums = await this.hash(sp.abs(c.segs), c.st).catch(() => undefined);
        if (!sums) {
          this.repend(sp, c.key, this.settleMs, false, c.was); // changed while read: looked at again later
          c.skip = true;
          continue;
        }
        c.sums = sums;
      }
    }
    const accepted = remaining.filter((c) => !c.skip && !c.rejected);
    const rejected = remaining.filter((c) => !c.skip && c.rejected);
    // Drop deletions implied by a deleted folder above them in the same batch.
    const goneSet = new Set(gone);
    const goneTop = gone.filter((k) => {
      for (let p = parentKeyOf(k); p !== ''; p = parentKeyOf(p)) if (goneSet.has(p)) return false;
      return true;
    });
    if (!accepted.length && !goneTop.length) {
      await this.report(sp, [], rejected);
      return;
    }
    const ids = await this.idsOf(sp, goneTop, goneIds);
    // Paths that disappeared without ever being known (a scanner's temp file renamed away) change
    // nothing; those whose id is not found yet are looked at again after the next pass over the index.
    const deleted = goneTop.filter((k) => ids.has(k));
    if (!accepted.length && !deleted.length) {
      await this.report(sp, [], rejected);
      return;
    }
    const changes: ExternalChange[] = [];
    const affected = new Set<string>();
    await sp.commit(async (journal) => {
      for (const c of accepted) affected.add(parentKeyOf(c.key));
      journal.begin({ dirs: [...new Set([...affected, ...deleted.map(parentKeyOf)])].map(segsOf) });
      // Files without a record go last: one may have replaced a known file, whose id it takes
      // over, unless that file was moved away instead (log rotation: mv a.log a.log.1; touch
      // a.log), which its own sighting in this batch says first.
      const fresh = (c: Candidate) => !c.rec && c.st.isFile();
      this.batch = accepted.map((c) => c.key);
      this.siblings.clear();
      try {
        for (const c of [...accepted.filter((c) => !fresh(c)), ...accepted.filter(fresh)]) {
          const change = await this.assimilate(sp, c, affected, changes);
          if (change) changes.push(change);
        }
      } finally {
        this.batch = [];
        this.siblings.clear();
      }
      for (const key of deleted) {
        // (a temp file renamed over a known one was retired above, and said so)
        if (changes.some((x) => x.type === 'deleted' && x.resourceId?.opaqueId === ids.get(key))) continue;
        const change = await this.forget(sp, key, ids.get(key)!, goneHint.has(key));
        if (!change) continue; // (Stowage's own delete, already counted: no new tree time above it)
        changes.push(change);
        // A folder (as its watch said; a scan cannot tell): what was below it has entries too.
        if (goneHint.has(key) || goneIds) this.bereave(sp, ids.get(key)!);
        affected.add(parentKeyOf(key));
      }
      await this.recount(sp, affected);
      // A folder moved or removed around Stowage changes what is inherited below its old and new
      // places: every process's cached grant chains go, as with Stowage's own moves.
      if (
        accepted.some((c) => c.st.isDirectory() && (c.rec !== undefined || goneHint.has(c.key))) ||
        deleted.some((k) => goneHint.has(k))
      )
        sp.bumpGrantsVersionHeld(true); // (announced: the report below names the paths)
    });
    // What was written here (records, the tree sizes and times of the folders above) is stale for
    // caches from now on; what they read since the report above may predate it.
    this.reportStale(sp.id, [...deleted, ...accepted.map((c) => c.key)], affected);
    await this.report(sp, changes, rejected);
  }

  /**
   * Whether the grants of the folder at `key` are those it had when last looked at here (a folder
   * without grants, never seen with any, counts as unchanged). Grants edited by hand do not bump
   * the space's grants version; this catches them for folders reported in place.
   */
  private async grantsUnchanged(sp: PosixSpace, key: string): Promise<boolean> {
    const segs = segsOf(key);
    let now = '';
    try {
      const rec = sp.recordHeld(segs);
      if (rec?.g) {
        const raw = await sp.readGrantsDocument(sp.abs(segs), rec);
        now = raw ? raw.toString('utf8') : '';
      }
    } catch {
      return false;
    }
    if (now) now = createHash('sha1').update(now).digest('base64'); // (kept for up to 10,000 folders)
    const k = `${sp.id}\u0000${key}`;
    const before = this.grantsSeen.get(k);
    if (before === undefined && now === '') return true;
    if (this.grantsSeen.size >= 10_000) this.grantsSeen.clear();
    this.grantsSeen.set(k, now);
    return before === now;
  }

  /**
   * Tell caches what may be stale in a space: `changed` paths, and folders `inPlace` of which only
   * their own attributes changed (a folder in both counts as changed). Also for records written
   * without an event of their own (the observer's recounts, a listing's repair of a drifted tree
   * size). A long batch (a rescan's) says the whole space: cheaper for caches than each path.
   */
  reportStale(spaceId: string, changed: readonly string[], inPlace: Iterable<string>): void {
    const all = new Set(changed);
    const folders: string[] = [];
    for (const k of inPlace) {
      if (all.has(k)) continue;
      all.add(k);
      folders.push(k);
    }
    if (!all.size) return;
    if (all.size > 1000) this.opts.onStale?.(spaceId);
    else this.opts.onStale?.(spaceId, [...all], folders.length ? folders : undefined);
  }

  /** The id a scan found gone from `key`, kept while the path waited (see {@link Candidate.was}). */
  private takeWas(sp: PosixSpace, key: string): string | undefined {
    if (!this.wasAt.size) return undefined;
    const k = `${sp.id}\u0000${key}`;
    const id = this.wasAt.get(k);
    this.wasAt.delete(k);
    return id;
  }

  /** Look at a path again later (still being written, or changed while read). */
  private repend(sp: PosixSpace, key: string, ms: number, gone?: boolean, was?: string): void {
    if (was) {
      if (this.wasAt.size >= 10_000) this.wasAt.clear();
      this.wasAt.set(`${sp.id}\u0000${key}`, was);
    }
    const abs = sp.abs(segsOf(key));
    const prev = this.pending.get(abs);
    const due = Date.now() + Math.max(ms, 1);
    if (!prev || prev.due < due) this.pending.set(abs, { due, gone: gone || prev?.gone });
    this.schedule(Math.max(ms, 1));
  }

  /**
   * Nothing to do for this node: it has a record that is not waiting to be announced, valid
   * checksums (files), and sits in the folder and under the name its record and index entry say
   * (the rest of the entry's path may be stale after a folder above moved: that is no change here).
   * `rec`: its record, when the caller read it already.
   */
  private async consistent(
    sp: PosixSpace,
    segs: string[],
    key: string,
    st: fs.Stats,
    rec = sp.recordFor(segs, st),
  ): Promise<boolean> {
    if (!rec || rec.ex !== undefined) return false;
    if (st.isFile() && !sp.checksumsCurrent(rec, st)) return false;
    const parentSegs = segs.slice(0, -1);
    const parentKey = keyOf(parentSegs);
    if (segs.length === 1) {
      if (rec.p !== sp.id) return false;
    } else if (sp.index.cached(rec.p ?? '') !== parentKey) {
      // (the parent's own place is its own event's business: not remembered from here)
      const parent = sp.recordHeld(parentSegs);
      if (!parent || parent.id !== rec.p) return false;
    }
    if (sp.index.cached(rec.id) === key) {
      sp.index.noteShape(key, rec, st);
      return true;
    }
    const entry = await sp.index.read(rec.id);
    if (!entry || entry.parent !== rec.p || baseName(entry.rel) !== baseName(key)) return false;
    if (entry.rel !== key) {
      // Stale only because a folder above moved; but a copy of a folder made with cp -a also looks
      // like this, so make sure the original is not still where the entry says.
      const there = await this.host.probe(sp, entry.rel, rec.id);
      if (there && !sameFile(there.st, st)) return false;
    }
    sp.index.remember(rec.id, key);
    sp.index.noteShape(key, rec, st);
    return true;
  }

  /**
   * Whether `id` may still be alive somewhere else than at `key`, so that a file renamed over
   * `key` must not take it: a file with it held back while still being written, or a path of the
   * same folder with changes still coming in (a log moved aside whose writer keeps appending is
   * never quiet long enough to be looked at), or in the batch being assimilated.
   */
  private async livesElsewhere(sp: PosixSpace, id: string, key: string): Promise<boolean> {
    const at = this.settling.get(id);
    if (at && at.space === sp.id && at.key !== key) {
      if (await this.host.probe(sp, at.key, id)) return true;
      this.settling.delete(id);
    }
    const folder = key.slice(0, key.lastIndexOf('/') + 1);
    for (const other of (await this.siblingIds(sp, folder)).get(id) ?? [])
      if (other !== key && (await this.host.probe(sp, other, id))) return true;
    return false;
  }

  /**
   * The ids of a folder's paths that are pending, or in the batch being assimilated (a folder
   * moved aside, looked at after the new one at its name), read once per batch and folder: a
   * burst of saves that replace hundreds of files of one folder asks about each of them, and
   * reading all the others for each would cost the square of their number. (A path found by its
   * id is looked at again before it counts, since the batch itself gives paths new ids as it goes; a
   * path that becomes pending while the batch runs is not among them, and waits for the next.)
   */
  private async siblingIds(sp: PosixSpace, folder: string): Promise<Map<string, string[]>> {
    const memo = `${sp.id}/${folder}`;
    const known = this.siblings.get(memo);
    if (known) return known;
    const ids = new Map<string, string[]>();
    const root = `${sp.abs([])}/`;
    const seen = new Set<string>();
    const note = async (other: string) => {
      if (!other.startsWith(folder) || other.indexOf('/', folder.length) >= 0 || seen.has(other)) return;
      seen.add(other);
      const node = await this.host.probe(sp, other);
      if (!node) return;
      const paths = ids.get(node.rec.id);
      if (paths) paths.push(other);
      else ids.set(node.rec.id, [other]);
    };
    for (const abs of [...this.pending.keys()]) if (abs.startsWith(root)) await note(abs.slice(root.length));
    for (const other of this.batch) await note(other);
    this.siblings.set(memo, ids);
    return ids;
  }

  /** {@link siblingIds} of the batch being assimilated now. */
  private readonly siblings = new Map<string, Map<string, string[]>>();

  /** Paths of the batch being assimilated now. */
  private batch: readonly string[] = [];

  /** Checksums of a file, or undefined when it changed while it was read. */
  private async hash(abs: string, st: fs.Stats): Promise<Required<Checksums> | undefined> {
    const fh = await fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const before = await fh.stat();
      if (!unchanged(before, st)) return undefined;
      const big = st.size >= PARALLEL_HASH_BYTES;
      const acc = big ? new ParallelChecksums() : new ChecksumAccumulator();
      try {
        for await (const chunk of fh.createReadStream({ autoClose: false, highWaterMark: 1 << 20 })) {
          acc.update(chunk as Buffer);
          if (acc instanceof ParallelChecksums) await acc.drain();
        }
      } catch (err) {
        if (acc instanceof ParallelChecksums) acc.cancel();
        throw err;
      }
      const sums = await acc.digest();
      const after = await fh.stat();
      return unchanged(after, st) && after.ctimeMs === before.ctimeMs ? sums : undefined;
    } finally {
      await fh.close();
    }
  }

  /** Assimilate one node (lock held); the change to report, if any. */
  private async assimilate(
    sp: PosixSpace,
    c: Candidate,
    affected: Set<string>,
    /** Where a change this one implies goes first (a temp file's id retired). */
    before: ExternalChange[],
  ): Promise<ExternalChange | undefined> {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(sp.abs(c.segs));
    } catch {
      return undefined;
    }
    if (!unchanged(st, c.st)) {
      this.repend(sp, c.key, this.settleMs, false, c.was); // changed since vetted and hashed
      return undefined;
    }
    const parentSegs = c.segs.slice(0, -1);
    const parent = sp.recordHeld(parentSegs) ?? (await sp.assimilateHeld(parentSegs));
    let rec = sp.recordHeld(c.segs);
    let type: 'created' | 'updated' | 'moved' | undefined;
    let from: string | undefined;
    let fromParent: string | undefined;
    let copiedFrom: string | undefined;
    let dirty = false;
    let replaced = !rec && st.isFile() ? await sp.replacedHeld(c.segs, parent.id) : undefined;
    if (replaced && (await this.livesElsewhere(sp, replaced.id, c.key))) replaced = undefined;
    // What a node of a new identity displaced here (a folder replaced by a file, or by a folder
    // made anew; a file by a folder) is gone: announced deleted first, unless it lives on elsewhere.
    let displaced: Displaced | undefined;
    if (!replaced && (!rec || rec.ex === 1)) {
      if (!rec) displaced = await sp.displacedHeld(c.segs, parent.id);
      else {
        // (noted when a request met the node first: the index may have moved on since)
        displaced = sp.displaced.get(c.key);
        sp.displaced.delete(c.key);
        const entry = displaced && (await sp.index.read(displaced.id));
        if (displaced && (displaced.id === rec.id || !entry || !placedAt(entry, c.key, parent.id)))
          displaced = undefined;
      }
      if (displaced && (await this.livesElsewhere(sp, displaced.id, c.key))) displaced = undefined;
    }
    // What a scan found gone from here, with something else here now (replaced while nobody
    // watched: no sighting in memory says what it was, so it is retired, not taken over).
    if (!displaced && !replaced && c.was && c.was !== rec?.id && !sp.inTrash(c.was)) {
      const entry = await sp.index.read(c.was);
      if (entry && placedAt(entry, c.key, parent.id) && (await this.host.whereIs(sp, c.was)) === undefined)
        displaced = { id: c.was, parent: entry.parent };
    }
    if (displaced) {
      const kind = displaced.folder === undefined ? undefined : displaced.folder ? 'folder' : 'file';
      before.push(this.deletion(sp, displaced.id, displaced.parent, c.key, kind));
      await sp.index.remove(displaced.id);
      if (displaced.folder !== false) this.bereave(sp, displaced.id);
    }
    if (replaced) {
      // It replaced a known file there (an atomic replace): same id, new content.
      rec = replaced;
      delete rec.ex;
      type = 'updated';
      dirty = true;
    } else if (!rec) {
      rec = { id: randomUUID(), p: parent.id, bt: bornAt(st) };
      if (st.isDirectory()) rec.tm = nowUs();
      type = 'created';
      dirty = true;
      await sp.index.write(rec.id, parent.id, c.key);
    } else {
      const entry = await sp.index.read(rec.id);
      if (entry && entry.rel !== c.key) {
        const there = await this.host.probe(sp, entry.rel, rec.id);
        if (there && sameFile(there.st, st)) {
          // a hard link of the same file: one inode, one id
        } else if (there) {
          copiedFrom = rec.id;
          rec = await this.host.newIdentityHeld(sp, c.segs, rec, parent.id, st);
          type = 'created';
        } else if (rec.p !== parent.id || baseName(entry.rel) !== baseName(c.key)) {
          // A file seen while it was written next to a known one (a slow rsync's temp file), then
          // renamed over it: the known file's id stays, with what hangs on it; the temp's goes.
          const took =
            st.isFile() && rec.md !== 2 && rec.g !== 2 ? await sp.replacedHeld(c.segs, parent.id) : undefined;
          if (took && took.id !== rec.id && !(await this.livesElsewhere(sp, took.id, c.key))) {
            if (rec.ex === undefined) before.push(this.deletion(sp, rec.id, rec.p, entry.rel, 'file'));
            await sp.index.remove(rec.id);
            rec = { ...rec, id: took.id, p: parent.id };
            // It came to be when the file it replaced did, not when the temp file was made.
            if (took.bt !== undefined) rec.bt = took.bt;
            else delete rec.bt;
            if (took.md && !rec.md) rec.md = took.md;
            if (took.g && !rec.g) rec.g = took.g;
            delete rec.ex;
            type = 'updated';
            dirty = true;
          } else {
            type = 'moved';
            from = entry.rel;
            fromParent = rec.p;
          }
          affected.add(parentKeyOf(entry.rel));
        }
      }
      if (rec.p !== parent.id) {
        rec.p = parent.id;
        dirty = true;
        type ??= 'moved';
      }
      if (!entry || entry.rel !== c.key || entry.parent !== parent.id)
        await sp.index.write(rec.id, parent.id, c.key);
      if (rec.ex !== undefined) {
        if (type !== 'moved') type = rec.ex === 2 ? 'updated' : 'created';
        delete rec.ex;
        dirty = true;
      }
    }
    if (st.isFile() && !sp.checksumsCurrent(rec, st)) {
      if (!c.sums) {
        this.repend(sp, c.key, this.settleMs);
        return undefined;
      }
      // Touched but not changed (size, mtime and checksums as recorded: a chmod, a link, a rewrite
      // of the same bytes): confirmed again, with no event.
      const valid = checksumsValid(rec, st);
      const same = valid && sameChecksums(rec.ck!, c.sums);
      // The etag shown until now was made without a sha1 when size or mtime had moved: it stays
      // so (one change, not a second one once hashed). With both as they were, only the sha1
      // tells the new content apart.
      if (!valid) rec.en = 1;
      else if (!same) delete rec.en;
      rec.ck = c.sums;
      rec.ckm = st.mtimeMs;
      rec.cks = st.size;
      Object.assign(rec, sp.checksumsConfirmed());
      dirty = true;
      if (!same) type ??= 'updated';
    } else if (st.isFile() && dirty) rec = sp.confirmChecksums(rec, st);
    if (c.annotation?.metadata && Object.keys(c.annotation.metadata).length) {
      await this.host.mergeMetadataHeld(sp, c.segs, rec, c.annotation.metadata);
      dirty = true;
    }
    if (dirty) sp.writeHeld(c.segs, rec);
    sp.index.remember(rec.id, c.key);
    sp.index.noteShape(c.key, rec, st);
    const held = this.settling.get(rec.id);
    if (held?.space === sp.id && held.key === c.key) this.settling.delete(rec.id);
    if (!type) return undefined;
    affected.add(parentKeyOf(c.key));
    const after = fs.lstatSync(sp.abs(c.segs));
    const info = this.host.infoNow(sp, c.segs, after, rec);
    return this.changeOf(type, sp, info, {
      ...(from !== undefined && {
        from: {
          path: `/${from}`,
          ...(fromParent && {
            parentId: { storageId: this.host.storageId, spaceId: sp.id, opaqueId: fromParent },
          }),
        },
      }),
      ...(copiedFrom && {
        copiedFrom: { storageId: this.host.storageId, spaceId: sp.id, opaqueId: copiedFrom },
      }),
    });
  }

  private changeOf(
    type: ExternalChange['type'],
    sp: PosixSpace,
    info: ResourceInfo,
    extra: Partial<ExternalChange> = {},
  ): ExternalChange {
    return {
      type,
      storageId: this.host.storageId,
      spaceId: sp.id,
      resourceId: info.id,
      ...(info.parentId && { parentId: info.parentId }),
      path: info.path,
      kind: info.type,
      size: info.size,
      etag: info.etag,
      ...extra,
    };
  }

  /**
   * The ids that paths which disappeared had: the process's recent sightings first, then one pass
   * over the id index for the rest (its entries name each id's path).
   */
  private async idsOf(
    sp: PosixSpace,
    keys: string[],
    known?: ReadonlyMap<string, string>,
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const missing = new Set<string>();
    for (const k of keys) {
      const id = known?.get(k) ?? this.takeWas(sp, k) ?? sp.index.cachedAt(k);
      if (id) out.set(k, id);
      else missing.add(k);
    }
    if (!missing.size) return out;
    // A pass over the index costs in proportion to its size: at most one per twenty times what the
    // last one took (and per second); paths still unresolved wait for the next.
    const now = performance.now();
    if (now < this.nextSweep) {
      for (const k of missing) this.repend(sp, k, this.nextSweep - now);
      return out;
    }
    const t0 = performance.now();
    try {
      await this.sweepFor(sp, missing, out);
    } finally {
      const took = performance.now() - t0;
      this.nextSweep = performance.now() + Math.max(1000, took * 20);
    }
    return out;
  }

  private nextSweep = 0;

  /**
   * One pass over a space's id index for the ids that `missing` paths had: an entry names its
   * node's parent by id and its path as it was last written, which below a folder moved since
   * is the path before the move (a move rewrites the moved node's entry only). So an entry is
   * matched by its parent (the folder still there above the missing path) and its last name.
   */
  private async sweepFor(
    sp: PosixSpace,
    missing: ReadonlySet<string>,
    out: Map<string, string>,
  ): Promise<void> {
    const wanted = new Map<string, string>();
    for (const key of missing) {
      const parent = this.parentIdOf(sp, key);
      if (parent) wanted.set(`${parent}/${baseName(key)}`, key);
    }
    const byParent = new Set<string>();
    for await (const { id, parent, rel } of indexEntries(sp)) {
      const key = wanted.get(`${parent}/${baseName(rel)}`);
      if (key !== undefined) {
        // (where two entries match, one an orphan left behind, the one naming the path as it is wins)
        if (!byParent.has(key) || rel === key) out.set(key, id);
        byParent.add(key);
      } else if (missing.has(rel) && !byParent.has(rel)) {
        // The path as written, under a folder that is not the one there now (replaced, or new
        // and not assimilated yet): the deletion is checked against where the id is now.
        out.set(rel, id);
      }
    }
  }

  /** The id of the folder now holding `key` (the space root's for a key at the top), if there is one. */
  private parentIdOf(sp: PosixSpace, key: string): string | undefined {
    return idAt(sp, parentKeyOf(key));
  }

  /** Note a folder removed around Stowage: the entries of what was below it go (see {@link dropOrphans}). */
  private bereave(sp: PosixSpace, id: string): void {
    let e = this.bereaved.get(sp.id);
    if (!e) {
      e = { sp, ids: new Set() };
      this.bereaved.set(sp.id, e);
    }
    e.ids.add(id);
    if (this.orphanTimer || this.closed) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, this.nextSweep - performance.now()));
    this.orphanTimer = setTimeout(() => {
      this.orphanTimer = undefined;
      this.dropping = true;
      this.work = this.work
        .then(() => this.dropOrphans())
        .catch((err) => this.log('observer: dropping index entries failed', err))
        .finally(() => {
          this.dropping = false;
          this.wakeIdle();
        });
    }, wait);
  }

  /**
   * Remove the index entries of everything that was below folders removed around Stowage (their
   * own entries went when they were reported): entries whose parent is one of them, then whose
   * parent is one of those, pass after pass over the index until one finds nothing new.
   */
  private async dropOrphans(): Promise<void> {
    const t0 = performance.now();
    try {
      for (const [spaceId, { sp, ids }] of [...this.bereaved]) {
        this.bereaved.delete(spaceId);
        const below = new Set(ids);
        for (let more = true; more && !this.closed; ) {
          more = false;
          for await (const { id, parent } of indexEntries(sp)) {
            if (!below.has(parent) || below.has(id)) continue;
            below.add(id);
            more = true;
            await sp.index.remove(id);
          }
        }
      }
    } finally {
      const took = performance.now() - t0;
      this.nextSweep = performance.now() + Math.max(1000, took * 20);
    }
  }

  /** A path that disappeared (lock held): the deletion to report, if it was one. */
  private async forget(
    sp: PosixSpace,
    key: string,
    id: string,
    wasFolder: boolean,
  ): Promise<ExternalChange | undefined> {
    if (fs.existsSync(sp.abs(segsOf(key)))) return undefined; // back meanwhile: its own event follows
    // Its folder went too (deleted, or moved with it): that folder's own event tells.
    if (!fs.existsSync(sp.abs(segsOf(parentKeyOf(key))))) return undefined;
    // Alive elsewhere (moved, and already seen where it went): its entry or its parents' lead to
    // it. (Not the entry's path alone: below a folder moved since, entries name paths from before.)
    if ((await this.host.whereIs(sp, id)) !== undefined) return undefined;
    const entry = await sp.index.read(id);
    // Put in the trash by Stowage (which announced it), now or before.
    if (sp.inTrash(id)) return undefined;
    await sp.index.remove(id);
    return this.deletion(sp, id, entry?.parent, key, wasFolder ? 'folder' : undefined);
  }

  /** The change that announces `id`, last at `key`, as deleted. */
  private deletion(
    sp: PosixSpace,
    id: string,
    parentId: string | undefined,
    key: string,
    kind?: 'file' | 'folder',
  ): ExternalChange {
    const ref = (opaqueId: string) => ({ storageId: this.host.storageId, spaceId: sp.id, opaqueId });
    return {
      type: 'deleted',
      storageId: this.host.storageId,
      spaceId: sp.id,
      resourceId: ref(id),
      ...(parentId && { parentId: ref(parentId) }),
      path: `/${key}`,
      ...(kind && { kind }),
    };
  }

  /**
   * Recount folders whose content changed and pass the differences up (lock held). A folder whose
   * recount is owed but not yet allowed still gets a new tree time (etag), and is recounted later.
   */
  private async recount(sp: PosixSpace, affected: Set<string>): Promise<void> {
    const now = performance.now();
    const keys = new Set<string>();
    const exact = new Set<string>();
    for (const key of affected) {
      const segs = segsOf(key);
      try {
        if (!fs.lstatSync(sp.abs(segs)).isDirectory()) continue;
      } catch {
        continue;
      }
      const slot = `${sp.id}\0${key}`;
      const r = this.recounts.get(slot);
      if (r && r.next > now) {
        if (!r.owed) {
          r.owed = true;
          this.owedRecounts++;
          setTimeout(
            () => {
              this.work = this.work
                .then(() => this.recountOwed(sp, key))
                .catch((err) => this.log(`observer: recounting /${key} failed`, err))
                .finally(() => {
                  this.owedRecounts--;
                  this.wakeIdle();
                });
            },
            Math.ceil(r.next - now) + 1,
          ).unref();
        }
      } else exact.add(key);
      for (let s = segs; ; s = s.slice(0, -1)) {
        keys.add(keyOf(s));
        if (!s.length) break;
      }
    }
    const pendingDelta = new Map<string, number>();
    for (const key of [...keys].sort((a, b) => depth(b) - depth(a))) {
      const segs = segsOf(key);
      const rec = sp.recordHeld(segs) ?? (await sp.assimilateHeld(segs));
      const before = rec.ts;
      if (exact.has(key) || before === undefined) {
        const t0 = performance.now();
        rec.ts = await sp.treeSizeHeld(segs);
        const took = performance.now() - t0;
        this.recounts.set(`${sp.id}\0${key}`, { next: performance.now() + took * 10, owed: false });
        if (this.recounts.size > 10_000) this.recounts.delete(this.recounts.keys().next().value!);
      } else {
        rec.ts = Math.max(0, before + (pendingDelta.get(key) ?? 0));
      }
      rec.tm = nextTreeTime(rec.tm);
      sp.writeHeld(segs, rec);
      if (segs.length) {
        const pk = keyOf(segs.slice(0, -1));
        pendingDelta.set(pk, (pendingDelta.get(pk) ?? 0) + (rec.ts - (before ?? 0)));
      }
    }
  }

  /**
   * The recount a folder was owed (its content changed a moment after its last recount, so only
   * the sizes of its subfolders were passed up then): counted now, and the difference passed up.
   * Another change may have paid it already; a folder gone since owes nothing.
   */
  private async recountOwed(sp: PosixSpace, key: string): Promise<void> {
    if (this.closed) return;
    const r = this.recounts.get(`${sp.id}\0${key}`);
    if (!r?.owed) return;
    r.owed = false;
    r.next = 0;
    const affected = new Set([key]);
    await sp.commit(async (journal) => {
      journal.begin({ dirs: [segsOf(key)] });
      await this.recount(sp, affected);
    });
    this.reportStale(sp.id, [], affected);
  }

  /** Refuse what the hooks refused (to the trash), then hand every change out. */
  private async report(sp: PosixSpace, changes: ExternalChange[], rejected: Candidate[]): Promise<void> {
    for (const c of rejected) {
      try {
        const info = await this.host.reject(sp, c.segs);
        if (info) changes.push({ ...this.changeOf('trashed', sp, info), reason: c.rejected ?? 'refused' });
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND'))
          this.log(`observer: cannot move refused /${c.key} aside`, err);
      }
    }
    for (const ch of changes) {
      this.counts.changes++;
      try {
        this.opts.onChange(ch);
      } catch (err) {
        this.log('observer: a change listener failed', err);
      }
    }
  }

  // ---------------------------------------------------------------- scans

  /** Scan every space for changes (coalesced: one runs at a time, and one more if asked meanwhile). */
  rescan(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.scanning) {
      this.scanWanted ??= 'asked';
      return this.scanning;
    }
    this.scanWanted = undefined;
    this.scanning = (async () => {
      try {
        this.counts.scans++;
        if (this.tree.takeUnwatched() > 0) this.log('observer: some folders cannot be watched; scanning');
        for (const sp of await this.host.allSpaces()) {
          if (this.closed) return;
          try {
            await this.scanSpace(sp);
          } catch (err) {
            this.opts.onStale?.(sp.id); // it may have written part of its changes, unreported
            throw err;
          }
        }
      } finally {
        this.scanning = undefined;
        if (this.scanWanted !== undefined && !this.closed) void this.rescan();
        else this.wakeIdle();
      }
    })();
    return this.scanning;
  }

  /**
   * Walk one space: nodes whose ctime is older than the start of the last complete scan are
   * unchanged (any change of content, xattrs, name or links moves a ctime) and cost one lstat;
   * the rest go through {@link process}. Index entries below folders that changed name the nodes
   * that were deleted meanwhile.
   */
  private async scanSpace(sp: PosixSpace): Promise<void> {
    const started = Date.now();
    const lostBefore = this.counts.lost;
    const since = this.readScanned(sp);
    const threshold = since ? since - MARGIN_MS : Number.NEGATIVE_INFINITY;
    const changed: string[] = [];
    const changedDirs = new Set<string>();
    const flush = async () => {
      if (!changed.length) return;
      const keys = changed.splice(0, changed.length);
      await this.process(sp, keys, new Set());
    };
    const stack: string[][] = [[]];
    let n = 0;
    while (stack.length && !this.closed) {
      const segs = stack.pop()!;
      let names: fs.Dirent[];
      try {
        names = fs.readdirSync(sp.abs(segs), { withFileTypes: true });
      } catch {
        continue;
      }
      for (const d of names) {
        if (segs.length === 0 && d.name === RESERVED_ROOT_NAME) continue;
        if (!(d.isFile() || d.isDirectory())) continue;
        const child = [...segs, d.name];
        let st: fs.Stats;
        try {
          st = fs.lstatSync(sp.abs(child));
        } catch {
          continue;
        }
        if (st.ctimeMs >= threshold || st.mtimeMs >= threshold) {
          changed.push(keyOf(child));
          if (st.isDirectory()) changedDirs.add(keyOf(child));
        }
        if (st.isDirectory()) stack.push(child);
        if (++n % 1000 === 0) await new Promise<void>((r) => setImmediate(r));
      }
      if (changed.length >= SCAN_CHUNK) await flush();
    }
    await flush();
    if (this.closed) return;
    // The space root changed too when entries at the top were added or removed.
    try {
      const rst = fs.lstatSync(sp.root);
      if (rst.ctimeMs >= threshold || rst.mtimeMs >= threshold) changedDirs.add('');
    } catch {
      return;
    }
    // Deleted while nobody watched: index entries right below a changed folder whose node is gone.
    if (changedDirs.size) await this.sweepDeleted(sp, changedDirs);
    // What changed during the scan was reported by the watches (and the scan's own assimilation
    // moved ctimes): unless events may have been lost meanwhile, or some still wait to be looked
    // at (a crash now would lose them), the scan covers up to its end.
    const clean = this.counts.lost === lostBefore && this.pending.size === 0;
    this.writeScanned(sp, clean ? Date.now() : started);
  }

  /**
   * Report nodes of index entries right below `dirs` that are no longer there. An entry names its
   * parent by id, and the folder's path where it was written (stale below a folder moved since):
   * entries are taken by their parent's id and looked for under the folder's path now.
   */
  private async sweepDeleted(sp: PosixSpace, dirs: ReadonlySet<string>): Promise<void> {
    const byId = new Map<string, string>();
    for (const dir of dirs) {
      const id = idAt(sp, dir);
      if (id) byId.set(id, dir);
    }
    const gone = new Map<string, string>();
    for await (const { id, parent, rel } of indexEntries(sp)) {
      const dir = byId.get(parent);
      // (by the path as written when the folder there now is another: replaced while unwatched)
      const key =
        dir === undefined
          ? dirs.has(parentKeyOf(rel))
            ? rel
            : undefined
          : dir
            ? `${dir}/${baseName(rel)}`
            : baseName(rel);
      if (key !== undefined && !(await this.host.probe(sp, key, id))) gone.set(key, id);
    }
    for (let i = 0; i < gone.size; i += SCAN_CHUNK) {
      const part = [...gone].slice(i, i + SCAN_CHUNK);
      await this.process(
        sp,
        part.map(([k]) => k),
        new Set(),
        new Map(part),
      );
    }
  }

  private readScanned(sp: PosixSpace): number {
    const buf = sp.getRootXattr(XATTR_SCANNED);
    const n = buf ? Number(buf.toString()) : 0;
    return Number.isFinite(n) ? n : 0;
  }

  private writeScanned(sp: PosixSpace, at: number): void {
    try {
      sp.setRootXattr(XATTR_SCANNED, String(at));
    } catch (err) {
      this.log(`observer: cannot record the scan of ${sp.alias}`, err);
    }
  }
}
