/**
 * One space of the POSIX driver: its folder, hidden internals, id index and commit lock, and the
 * operations that run while the commit lock is held (record writes, assimilation, propagation,
 * crash repair).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { StorageError } from '../../core/errors.js';
import { nextTreeTime, nowUs } from '../../core/etag.js';
import type { Grant } from '../../core/permissions.js';
import { RESERVED_ROOT_NAME } from '../../core/refs.js';
import { IdIndex, type IndexEntry, type PathCache } from './ids.js';
import { CommitLock, type Intent, type Journal, type RunOptions } from './lock.js';
import type { Native } from './native.js';
import {
  bornAt,
  checksumsCurrent,
  checksumsSuspect,
  confirmChecksums,
  decodeRecord,
  encodeRecord,
  type NodeRecord,
  type SpaceProps,
  XATTR_GRANTS,
  XATTR_GRANTS_VERSION,
  XATTR_META,
  XATTR_NODE,
} from './record.js';
import { isMissing, toUtimeSeconds } from './util.js';

/** Records younger than this (by ctime) are not cached (see PosixSpace.recordFor). */
const SETTLED_MS = 1000;
/**
 * Records cached in the process: ~0.9 KiB of heap each with its decoded copy (measured under a
 * soak), so ~45 MiB when full. A listing made anew of a folder of up to this many entries finds them all.
 */
const MAX_CACHED_RECORDS = 50_000;
/** When full, the oldest this many go (a Map keeps its insertion order), not all at once. */
const EVICTED_RECORDS = 5_000;

/**
 * Raw records by device and inode, valid while the inode's ctime is the one seen: any change of
 * a file's xattrs or content (by anyone: this process, another, a tool around Stowage) moves its
 * ctime. Only records whose ctime is at least {@link SETTLED_MS} old are kept, so a change within
 * the filesystem's timestamp granularity can never hide behind an equal ctime. Raw bytes are kept
 * and decoded per use (callers may change the record they get); readers that only look (a listing)
 * share one decoded, frozen copy. One cache for the process: the key names the inode whatever
 * space or driver reads it.
 */
const recCache = new Map<string, CachedRecord>();

/**
 * Forget the record cached for an inode leaving the tree (into the trash or the versions, where
 * its ctime moved, so the entry could never be used again, yet would stay until evicted).
 */
export function forgetCachedRecord(st: { dev: number; ino: number }): void {
  recCache.delete(`${st.dev}:${st.ino}`);
}

/** @internal How many records the process has cached (tests). */
export function cachedRecordCount(): number {
  return recCache.size;
}

interface CachedRecord {
  ctime: number;
  buf: Buffer | undefined;
  /** Decoded once for readers that do not change it (null: no valid record). */
  shared?: Readonly<NodeRecord> | null;
}

/** Freeze a record and the objects in it, so a shared copy cannot be changed by mistake. */
function freezeRecord(rec: NodeRecord | undefined): Readonly<NodeRecord> | undefined {
  if (!rec) return undefined;
  for (const v of Object.values(rec)) if (v && typeof v === 'object') Object.freeze(v);
  return Object.freeze(rec);
}

/**
 * Records a commit has read under the lock, by key, so it reads each once: only folders the commit
 * has not replaced or moved since, and changed only through {@link PosixSpace.writeHeld}.
 */
export type HeldRecords = Map<string, NodeRecord>;

/** A node displaced at its path by another of a new identity (see PosixSpace.displacedHeld). */
export interface Displaced {
  id: string;
  /** Its parent's id, as the index had it. */
  parent: string;
  /** Whether it was a folder (unknown when only the index placed it there). */
  folder?: boolean;
}

/**
 * Does an index entry place its node at `key`, under the folder `parentId` there now? By its
 * path, or by its parent and name: below a folder moved since, entries keep the path from before
 * (a move rewrites the moved node's entry only).
 */
export function placedAt(entry: IndexEntry, key: string, parentId: string): boolean {
  if (entry.rel === key) return true;
  return (
    entry.parent === parentId &&
    entry.rel.slice(entry.rel.lastIndexOf('/') + 1) === key.slice(key.lastIndexOf('/') + 1)
  );
}

/** Driver-wide settings a space needs. */
export interface SpaceEnv {
  native: Native;
  /** Where ids were last seen, shared by all spaces of the driver. */
  cache: PathCache;
  /** Unique per driver instance; names its temp files so others can tell live ones from dead. */
  owner: string;
  lockTimeoutMs: number;
  /** Whether metadata calls may be synchronous (the driver's `syncMetadata`, set once it is open). */
  syncMetadata(): boolean;
  /** How long after a record's `ckt` its file's ctime may move before its checksums are suspect, ms. */
  ctimeSlackMs: number;
  /** Remove a tree moved into the space's tmp folder (index entries and sidecars included). */
  discard(space: PosixSpace, tmpName: string): Promise<void>;
  /** Whether an observer watches the driver's tree (so a file removed around Stowage is seen gone). */
  watched(): boolean;
}

/** Key of a path inside a space: segments joined with `/` (`''` for the root). */
export function keyOf(segs: readonly string[]): string {
  return segs.join('/');
}

/** Key of the parent of a key. */
export function parentKeyOf(key: string): string {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? '' : key.slice(0, slash);
}

/** Same inode: two names (hard links) of one file. */
export function sameFile(a: fs.Stats, b: fs.Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

/** Segments of a key. */
export function segsOf(key: string): string[] {
  return key === '' ? [] : key.split('/');
}

/** A space on disk. */
export class PosixSpace {
  readonly internal: string;
  readonly tmp: string;
  readonly metaDir: string;
  readonly trashDir: string;
  readonly versionsDir: string;
  /** Grants of the folders along a path, per parent path, valid while the root's `gv` is unchanged. */
  readonly chains = new Map<string, { gv: number; chain: Grant[][]; at: number }>();
  /**
   * Folders found reached without a symlink (every folder from the space root down a real
   * folder), by key: their inode and when (ms, performance.now()). See the driver's `checkReal`.
   */
  readonly realDirs = new Map<string, { ino: number; at: number }>();
  readonly index: IdIndex;
  readonly lock: CommitLock;
  /** Time of the last full id scan, and the one running. */
  lastScan = 0;
  scanning: Promise<void> | undefined;
  /** Ids a full scan did not find, with the time of that scan. */
  readonly missing = new Map<string, number>();
  private cleaned: Promise<void> | undefined;
  private readied: Promise<void> | undefined;

  constructor(
    private readonly env: SpaceEnv,
    readonly id: string,
    readonly alias: string,
    readonly root: string,
    public props: SpaceProps,
  ) {
    this.internal = `${root}/${RESERVED_ROOT_NAME}`;
    this.tmp = `${this.internal}/tmp`;
    this.metaDir = `${this.internal}/meta`;
    this.trashDir = `${this.internal}/trash`;
    this.versionsDir = `${this.internal}/versions`;
    this.index = new IdIndex(`${this.internal}/ids`, env.cache, id, env.syncMetadata);
    this.lock = new CommitLock(
      env.native,
      `${this.internal}/lock`,
      (i) => this.recover(i),
      env.lockTimeoutMs,
    );
  }

  /** Absolute path of a node. */
  abs(segs: readonly string[]): string {
    return segs.length === 0 ? this.root : `${this.root}/${segs.join('/')}`;
  }

  /**
   * A fresh name in the space's tmp folder. Uploads and copies carry the owner; hold the liveness
   * lock ({@link holdLive}) before creating one, so other processes can tell live ones from dead.
   */
  tmpName(prefix: 'up' | 'cp' | 'rm' | 'old'): string {
    return prefix === 'rm' || prefix === 'old'
      ? `${prefix}-${randomUUID()}`
      : `${prefix}-${this.env.owner}-${randomUUID()}`;
  }

  private liveFd: number | undefined;
  private liveUsers = 0;
  private liveTimer: NodeJS.Timeout | undefined;

  /**
   * Hold this driver's liveness lock on the space (`tmp/live-<owner>`) while temp files exist. The
   * lock is released a few seconds after the last holder, so idle spaces keep no descriptor open.
   * Returns the release function.
   */
  async holdLive(): Promise<() => void> {
    this.liveUsers++;
    clearTimeout(this.liveTimer);
    try {
      await this.ensureLiveFd();
    } catch (err) {
      this.liveUsers--;
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.liveUsers === 0) this.liveTimer = setTimeout(() => this.dropLive(), 5000).unref();
    };
  }

  private async ensureLiveFd(): Promise<void> {
    const file = `${this.tmp}/live-${this.env.owner}`;
    for (let attempt = 0; ; attempt++) {
      if (this.liveFd !== undefined) {
        // Still the linked file? (an admin or a cleaner may have removed it)
        try {
          if (fs.fstatSync(this.liveFd).ino === fs.statSync(file).ino) return;
        } catch {
          // removed: reopen below
        }
        fs.closeSync(this.liveFd);
        this.liveFd = undefined;
      }
      fs.mkdirSync(this.tmp, { recursive: true });
      const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      // Another process may be probing it (or just concluded we were dead and is removing it).
      if (this.env.native.tryLock(fd, true)) {
        try {
          if (fs.fstatSync(fd).ino === fs.statSync(file).ino) {
            this.liveFd = fd;
            return;
          }
        } catch {
          // unlinked meanwhile
        }
      }
      fs.closeSync(fd);
      if (attempt > 100)
        throw new StorageError('UNAVAILABLE', 'could not take the liveness lock of the space');
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Release the liveness lock (idle, or driver close). */
  dropLive(): void {
    clearTimeout(this.liveTimer);
    if (this.liveFd === undefined || this.liveUsers > 0) return;
    fs.closeSync(this.liveFd);
    this.liveFd = undefined;
    fs.rmSync(`${this.tmp}/live-${this.env.owner}`, { force: true });
  }

  /** Sidecar file of a node's grants (when they do not fit in an xattr). */
  grantsSidecar(id: string): string {
    return `${this.metaDir}/${id.slice(0, 2)}/${id}.grants.json`;
  }

  /** Sidecar file of a node's metadata. */
  sidecar(id: string): string {
    return `${this.metaDir}/${id.slice(0, 2)}/${id}.json`;
  }

  /**
   * First use in this process: take the commit lock once, which repairs a commit a dead process left
   * half done, before anything is read.
   */
  ready(): Promise<void> {
    this.readied ??= this.lock
      .run(async () => {})
      .catch((err) => {
        this.readied = undefined;
        throw err;
      });
    return this.readied;
  }

  /** Clean the tmp folder once per process (dead uploads, unfinished deletions). */
  ensureClean(): Promise<void> {
    this.cleaned ??= this.cleanTmp().catch(() => {
      this.cleaned = undefined;
    });
    return this.cleaned;
  }

  private async cleanTmp(): Promise<void> {
    // Listed under the lock, after any dead commit was repaired: no intent refers to what we find.
    const names = await this.lock.run(async () => {
      try {
        return await fsp.readdir(this.tmp);
      } catch (err) {
        if (isMissing(err)) return [];
        throw err;
      }
    });
    for (const name of names) {
      if (name.startsWith('rm-') || name.startsWith('old-')) {
        await this.env.discard(this, name);
        continue;
      }
      const m = /^(live|up|cp)-([0-9a-f]+)(?:-|$)/.exec(name);
      if (!m || m[2] === this.env.owner || this.alive(m[2]!)) continue;
      if (m[1] === 'live') await fsp.rm(`${this.tmp}/${name}`, { force: true });
      else await this.env.discard(this, name);
    }
  }

  /** Does the driver instance `owner` still hold its liveness lock on this space? */
  private alive(owner: string): boolean {
    let fd: number;
    try {
      fd = fs.openSync(`${this.tmp}/live-${owner}`, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch {
      return false;
    }
    try {
      if (this.env.native.tryLock(fd, true)) {
        this.env.native.unlock(fd);
        return false;
      }
      return true;
    } finally {
      fs.closeSync(fd);
    }
  }

  // ------------------------------------------------------------------ records (any time)

  /** Read a node's record (async; no lock needed: xattr writes replace values atomically). */
  async record(segs: readonly string[]): Promise<NodeRecord | undefined> {
    return decodeRecord(await this.env.native.getxattr(this.abs(segs), XATTR_NODE));
  }

  /**
   * The space's grants version, read synchronously and without the lock (xattr writes replace values
   * atomically). Every authorised request checks it; the root is always in the kernel's cache, and a
   * 2 µs syscall is cheaper than the thread hand-off of an asynchronous one.
   */
  grantsVersion(): number {
    // A request racing a grant change can see the old grants at any granularity; reusing a check
    // for up to 1 ms stays within that race (changes made by this process are seen at once).
    const now = performance.now();
    if (now - this.gvAt < 1) return this.gv;
    const buf = this.env.native.getxattrSync(this.root, XATTR_GRANTS_VERSION);
    this.gv = buf ? Number(buf.toString()) || 0 : 0;
    this.gvAt = now;
    return this.gv;
  }

  private gv = 0;
  private gvAt = Number.NEGATIVE_INFINITY;

  /**
   * Bump the grants version (lock held). `announced`: the change that calls for it is announced
   * by an event with its paths (a grant set, a folder moved or removed), so caches fed by events
   * need not treat the bump as a change of unknown extent (see {@link announcedSince}).
   */
  bumpGrantsVersionHeld(announced = false): void {
    const buf = this.env.native.getxattrSync(this.root, XATTR_GRANTS_VERSION);
    this.gv = (buf ? Number(buf.toString()) || 0 : 0) + 1;
    this.env.native.setxattrSync(this.root, XATTR_GRANTS_VERSION, String(this.gv));
    this.gvAt = performance.now();
    if (announced) {
      this.announcedGv.add(this.gv);
      if (this.announcedGv.size > 1000) this.announcedGv.delete(this.announcedGv.values().next().value!);
    }
  }

  /** Grants versions this process bumped to for changes it announced. */
  private readonly announcedGv = new Set<number>();

  /** Whether every bump of the grants version after `seen`, up to `now`, was one this process announced. */
  announcedSince(seen: number, now: number): boolean {
    if (now < seen || now - seen > 1000) return false;
    for (let v = seen + 1; v <= now; v++) if (!this.announcedGv.has(v)) return false;
    return true;
  }

  /**
   * `{ ckt: now }` for a record whose checksums were just computed, where the ctime can tell that a
   * file was touched since (a local filesystem, whose clock is this machine's); else nothing, and
   * the checksums are judged by size and mtime alone.
   */
  checksumsConfirmed(): { ckt?: number } {
    return this.env.syncMetadata() ? { ckt: Date.now() } : {};
  }

  /** Checksums that may be shown (see {@link checksumsCurrent}). */
  checksumsCurrent(rec: NodeRecord | undefined, st: fs.Stats): boolean {
    return checksumsCurrent(rec, st, this.env.ctimeSlackMs);
  }

  /** Checksums that match by size and mtime but were touched since (see {@link checksumsSuspect}). */
  checksumsSuspect(rec: NodeRecord | undefined, st: fs.Stats): boolean {
    return checksumsSuspect(rec, st, this.env.ctimeSlackMs);
  }

  /** The record confirmed now, for a commit about to touch its file (see {@link confirmChecksums}). */
  confirmChecksums(rec: NodeRecord, st: fs.Stats): NodeRecord {
    return confirmChecksums(rec, st, this.env.ctimeSlackMs);
  }

  /** An xattr of the space root (raw), or undefined. */
  getRootXattr(name: string): Buffer | undefined {
    return this.env.native.getxattrSync(this.root, name);
  }

  /** Set an xattr of the space root. */
  setRootXattr(name: string, value: string): void {
    this.env.native.setxattrSync(this.root, name, value);
  }

  // ------------------------------------------------------------------ held: only under this.lock

  /** Read a record while holding the lock. */
  recordHeld(segs: readonly string[]): NodeRecord | undefined {
    return decodeRecord(this.env.native.getxattrSync(this.abs(segs), XATTR_NODE));
  }

  /** A node's record given its fresh lstat (synchronous; see {@link recCache}). */
  recordFor(segs: readonly string[], st: fs.Stats): NodeRecord | undefined {
    return decodeRecord(this.rawRecordFor(segs, st).buf);
  }

  /**
   * The same, shared and frozen: for readers that only look at it (a listing's entries), who
   * then skip decoding it again while the inode's ctime stays.
   */
  recordForRead(segs: readonly string[], st: fs.Stats): Readonly<NodeRecord> | undefined {
    const c = this.rawRecordFor(segs, st);
    if (c.shared === undefined) c.shared = freezeRecord(decodeRecord(c.buf)) ?? null;
    return c.shared ?? undefined;
  }

  private rawRecordFor(segs: readonly string[], st: fs.Stats): CachedRecord {
    const key = `${st.dev}:${st.ino}`;
    const hit = recCache.get(key);
    if (hit && hit.ctime === st.ctimeMs) return hit;
    const c: CachedRecord = {
      ctime: st.ctimeMs,
      buf: this.env.native.getxattrSync(this.abs(segs), XATTR_NODE),
    };
    if (Date.now() - st.ctimeMs > SETTLED_MS) {
      // (one that changed goes last, as a new one)
      if (hit) recCache.delete(key);
      else if (recCache.size >= MAX_CACHED_RECORDS) {
        let n = EVICTED_RECORDS;
        for (const k of recCache.keys()) {
          recCache.delete(k);
          if (--n === 0) break;
        }
      }
      recCache.set(key, c);
    }
    return c;
  }

  /** Write a record while holding the lock. */
  writeHeld(segs: readonly string[], rec: NodeRecord): void {
    this.env.native.setxattrSync(this.abs(segs), XATTR_NODE, encodeRecord(rec));
  }

  /**
   * Give a node that has no record (written around Stowage) an id, assimilating its parents first.
   * Returns the record (an existing one if another writer got there first).
   */
  async assimilateHeld(segs: readonly string[]): Promise<NodeRecord> {
    const abs = this.abs(segs);
    const st = await fsp.lstat(abs);
    if (st.isSymbolicLink() || !(st.isFile() || st.isDirectory())) {
      throw new StorageError('NOT_FOUND', 'not a file or folder', { reason: 'symlink' });
    }
    const existing = this.recordHeld(segs);
    if (existing) return existing;
    if (segs.length === 0) {
      throw new StorageError('INTERNAL', `space root ${this.alias} has lost its record; run stowage fsck`);
    }
    const parentSegs = segs.slice(0, -1);
    const parent = this.recordHeld(parentSegs) ?? (await this.assimilateHeld(parentSegs));
    const adopted = st.isFile() ? await this.replacedHeld(segs, parent.id) : undefined;
    const rec: NodeRecord = adopted ?? { id: randomUUID(), p: parent.id, bt: bornAt(st), ex: 1 };
    if (st.isDirectory()) rec.tm = nowUs();
    const key = keyOf(segs);
    if (adopted) this.index.remember(rec.id, key);
    else {
      // What it displaced is for the observer to retire (it announces this node too).
      const prior = await this.displacedHeld(segs, parent.id);
      if (prior) {
        if (this.displaced.size >= 10_000) this.displaced.clear();
        this.displaced.set(key, prior);
      }
      await this.index.write(rec.id, parent.id, key);
    }
    this.writeHeld(segs, rec);
    return rec;
  }

  /**
   * Nodes displaced at a path by one a request met first and gave a new identity (see
   * {@link displacedHeld}), by path: the observer retires them when it looks at the new node.
   */
  readonly displaced = new Map<string, Displaced>();

  /**
   * The node a new one without a record at `segs` displaced around Stowage, when it does not take
   * its identity over: a folder replaced by a file or by another folder, a file by a folder (or by
   * a file that could not take over). It is the plain file or folder this process last saw at that
   * path, if the index still places it there and it is not in the trash. Only while an observer
   * watches, which announces it deleted: without one, an old sighting says nothing about what
   * happened since. Lock held.
   */
  async displacedHeld(segs: readonly string[], parentId: string): Promise<Displaced | undefined> {
    if (!this.env.watched()) return undefined;
    const key = keyOf(segs);
    const last = this.index.lastShapeAt(key);
    if (!last) return undefined;
    const entry = await this.index.read(last.id);
    if (!entry || !placedAt(entry, key, parentId) || this.inTrash(last.id)) return undefined;
    return { id: last.id, parent: entry.parent, folder: last.folder };
  }

  /** Whether the node `id` is at the top of the trash (deleted through Stowage, not purged). */
  inTrash(id: string): boolean {
    return fs.existsSync(`${this.trashDir}/${id}`);
  }

  /**
   * The identity a file without a record at `segs` takes over when it replaced a known file there
   * around Stowage (written elsewhere and renamed over it, as editors and rsync do: the old inode
   * took its record along). It is the id this process last saw at that path, if that was a plain
   * file (not a folder, not one of several hard links), the index still places it there under
   * `parentId`, and it is not in the trash. Only while an observer watches: a file removed around
   * Stowage is then seen gone, and its id retired, before another made later at its name could
   * take it (without one, `rm` and a new file an hour later look like a replace). What is kept
   * under the id (its versions, sidecar metadata and grants, shares naming it) carries over, and
   * what lived only in the old inode's xattrs (inline metadata and grants, a lock) is gone with
   * it. Lock held.
   */
  async replacedHeld(segs: readonly string[], parentId: string): Promise<NodeRecord | undefined> {
    if (!this.env.watched()) return undefined;
    const key = keyOf(segs);
    const last = this.index.plainFileAt(key);
    if (last === undefined) return undefined;
    const { id, bt } = last;
    const entry = await this.index.read(id);
    if (!entry || entry.parent !== parentId || !placedAt(entry, key, parentId)) return undefined;
    if (this.inTrash(id)) return undefined;
    const rec: NodeRecord = { id, p: parentId, ...(bt !== undefined && { bt }), ex: 2 };
    if (fs.existsSync(this.sidecar(id))) rec.md = 2;
    if (fs.existsSync(this.grantsSidecar(id))) rec.g = 2;
    return rec;
  }

  /**
   * Apply size deltas to folders and all their ancestors, bumping tree times. `changes` maps
   * folder keys to the size change directly inside them. Folders without a tree size are computed
   * from scratch (which already includes the change) and pass their whole size upwards.
   */
  async propagateHeld(changes: ReadonlyMap<string, number>, seen?: HeldRecords): Promise<void> {
    const keys = new Set<string>();
    for (const key of changes.keys()) {
      const segs = segsOf(key);
      for (let i = segs.length; i >= 0; i--) keys.add(keyOf(segs.slice(0, i)));
    }
    // Bottom-up: each folder passes what it changed by to its parent.
    const pending = new Map(changes);
    for (const key of [...keys].sort((a, b) => depth(b) - depth(a))) {
      const segs = segsOf(key);
      const delta = pending.get(key) ?? 0;
      const rec = seen?.get(key) ?? this.recordHeld(segs) ?? (await this.assimilateHeld(segs));
      let up: number;
      if (rec.ts === undefined || rec.ts + delta < 0) {
        // Never accounted (its parent never counted it), or drifted: recount from disk.
        const before = rec.ts;
        rec.ts = await this.treeSizeHeld(segs);
        up = before === undefined ? rec.ts : rec.ts - before;
      } else {
        rec.ts += delta;
        up = delta;
      }
      rec.tm = nextTreeTime(rec.tm);
      this.writeHeld(segs, rec);
      if (segs.length > 0) {
        const parentKey = keyOf(segs.slice(0, -1));
        pending.set(parentKey, (pending.get(parentKey) ?? 0) + up);
      }
    }
  }

  /**
   * Size of a subtree from what is on disk, storing tree sizes of folders below that had none.
   * Files count with their size, folders with their (accounted) tree size; symlinks, other file
   * types and the space's internal folder count nothing.
   */
  async treeSizeHeld(segs: readonly string[]): Promise<number> {
    let total = 0;
    let dir: fs.Dir;
    try {
      dir = await fsp.opendir(this.abs(segs), { bufferSize: 256 });
    } catch (err) {
      if (isMissing(err)) return 0;
      throw err;
    }
    for await (const d of dir) {
      if (segs.length === 0 && d.name === RESERVED_ROOT_NAME) continue;
      if (d.isSymbolicLink()) continue;
      const child = [...segs, d.name];
      let st: fs.Stats;
      try {
        st = await fsp.lstat(this.abs(child));
      } catch {
        continue;
      }
      if (st.isFile()) total += st.size;
      else if (st.isDirectory()) {
        let rec = this.recordHeld(child);
        if (!rec) rec = await this.assimilateHeld(child);
        if (rec.ts === undefined) {
          rec.ts = await this.treeSizeHeld(child);
          rec.tm ??= nowUs();
          this.writeHeld(child, rec);
        }
        total += rec.ts;
      }
    }
    return total;
  }

  /**
   * Undo half-done replaces of an intent: put nodes moved aside back where they are still missing;
   * a file set aside as a second name of itself (a hard link) but never replaced loses that name.
   */
  async undoHeld(intent: Intent): Promise<void> {
    for (const u of intent.undo ?? []) {
      const from = `${this.internal}/${u.from.join('/')}`;
      const there = await fsp.lstat(this.abs(u.to)).catch((err) => {
        if (!isMissing(err)) throw err;
        return undefined;
      });
      let back = false;
      if (there) {
        const aside = await fsp.lstat(from).catch(() => undefined);
        if (!aside?.isFile() || aside.ino !== there.ino || aside.dev !== there.dev) continue;
        await fsp.unlink(from).catch((err) => {
          if (!isMissing(err)) throw err;
        });
        back = true;
      } else {
        back = await fsp.rename(from, this.abs(u.to)).then(
          () => true,
          (e) => {
            if (!isMissing(e)) throw e;
            return false;
          },
        );
      }
      // A node put aside into the trash carries trash facts: back in the tree, it drops them.
      const rec = back ? this.recordHeld(u.to) : undefined;
      if (rec?.tr) {
        delete rec.tr;
        this.writeHeld(u.to, rec);
      }
    }
  }

  /**
   * Set the modification time a change of properties wrote into a file's record (`pm`) on the
   * file, and drop it from the record (lock held). The commit that wrote it passes the file it
   * opened before (and whether its checksums were current then: they are carried to the new time);
   * a recovery opens the file here and judges the checksums now. A file replaced or gone meanwhile
   * keeps its own time; one whose time cannot be set (no longer its owner's, a read-only mount)
   * too, for a recovery that failed for it would hold every later commit back.
   */
  async finishTimeHeld(
    segs: readonly string[],
    sync: boolean,
    opened?: { fh: fsp.FileHandle; st: fs.Stats; current: boolean },
  ): Promise<void> {
    const rec = opened ? this.recordHeld(segs) : this.recordIfThere(segs);
    if (rec?.pm === undefined) return;
    const mtime = rec.pm;
    delete rec.pm;
    let fh = opened?.fh;
    let st = opened?.st;
    try {
      if (!fh || !st) {
        st = await fsp.lstat(this.abs(segs));
        if (!st.isFile()) {
          this.writeHeld(segs, rec);
          return;
        }
        fh = await fsp.open(
          this.abs(segs),
          fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
        );
      }
      const now = await fh.stat();
      if (!sameFile(now, st)) {
        this.writeHeld(segs, rec);
        return;
      }
      // Rewritten around Stowage since it was looked at: the checksums stay behind, so the change is seen.
      const unchanged = now.mtimeMs === st.mtimeMs && now.size === st.size;
      const current = opened ? opened.current : this.checksumsCurrent(rec, st);
      const t = toUtimeSeconds(mtime);
      try {
        await fh.utimes(t, t);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EPERM' && code !== 'EACCES' && code !== 'EROFS') throw err;
        this.writeHeld(segs, rec);
        if (!opened) return;
        throw new StorageError('PERMISSION_DENIED', "only the file's owner may set its time here", {
          reason: 'not-owner',
          cause: err,
        });
      }
      const after = await fh.stat();
      if (sync) await fh.sync();
      if (current && unchanged) {
        rec.ckm = after.mtimeMs;
        Object.assign(rec, this.checksumsConfirmed());
      }
      this.writeHeld(segs, rec);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    } finally {
      if (!opened) await fh?.close();
    }
  }

  /** A node's record, or undefined when the node is gone (lock held). */
  private recordIfThere(segs: readonly string[]): NodeRecord | undefined {
    try {
      return this.recordHeld(segs);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /**
   * Undo half-done replaces, fix moved nodes, recompute the tree sizes a dead commit may have left
   * wrong, and invalidate every process's cached grant chains.
   */
  private async recover(intent: Intent): Promise<void> {
    await this.undoHeld(intent);
    for (const segs of intent.untimed ?? []) {
      const rec = this.recordIfThere(segs);
      if (rec?.pm === undefined) continue;
      delete rec.pm;
      this.writeHeld(segs, rec);
    }
    for (const segs of intent.times ?? []) await this.finishTimeHeld(segs, true);
    if (intent.totals) await this.recountTotalsHeld();
    for (const n of intent.nodes ?? []) {
      let rec: NodeRecord | undefined;
      try {
        rec = this.recordHeld(n.at);
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      if (rec?.id !== n.id || n.at.length === 0) continue;
      const parentSegs = n.at.slice(0, -1);
      const parent = this.recordHeld(parentSegs) ?? (await this.assimilateHeld(parentSegs));
      if (rec.p !== parent.id || rec.tr) {
        rec.p = parent.id;
        delete rec.tr; // a node restored from the trash
        this.writeHeld(n.at, rec);
      }
      await this.index.write(n.id, parent.id, keyOf(n.at));
    }
    const keys = new Set<string>();
    for (const d of intent.dirs) for (let i = d.length; i >= 0; i--) keys.add(keyOf(d.slice(0, i)));
    const ordered = [...keys].sort((a, b) => depth(b) - depth(a));
    for (const key of ordered) {
      const segs = segsOf(key);
      let rec: NodeRecord | undefined;
      try {
        rec = this.recordHeld(segs) ?? (await this.assimilateHeld(segs));
      } catch (err) {
        if (isMissing(err) || StorageError.is(err, 'NOT_FOUND')) continue;
        throw err;
      }
      rec.ts = await this.treeSizeHeld(segs);
      rec.tm = nextTreeTime(rec.tm);
      this.writeHeld(segs, rec);
    }
    // A dead commit may have changed grants or moved a folder without telling other processes:
    // make them all drop their cached grant chains.
    this.bumpGrantsVersionHeld();
  }

  /**
   * Ids of every node in the trash. Their index entries are kept (stale until restored: a restored
   * folder's children are then found through their parent's entry).
   */
  async trashIds(): Promise<Set<string>> {
    const ids = new Set<string>();
    const walk = async (p: string): Promise<void> => {
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st || !(st.isFile() || st.isDirectory())) return;
      const rec = decodeRecord(await this.env.native.getxattr(p, XATTR_NODE).catch(() => undefined));
      if (rec) ids.add(rec.id);
      if (st.isDirectory())
        for (const name of await fsp.readdir(p).catch(() => [] as string[])) await walk(`${p}/${name}`);
    };
    for (const name of await fsp.readdir(this.trashDir).catch(() => [] as string[]))
      await walk(`${this.trashDir}/${name}`);
    return ids;
  }

  /** Bytes in the trash and in versions, counted from disk. */
  async countTotals(opts?: { fix?: boolean }): Promise<{ tts: number; vts: number }> {
    let tts = 0;
    for (const name of await fsp.readdir(this.trashDir).catch(() => [] as string[])) {
      const p = `${this.trashDir}/${name}`;
      const st = await fsp.lstat(p).catch(() => undefined);
      if (st?.isFile()) tts += st.size;
      else if (st?.isDirectory()) tts += await this.trashedTreeSize(p, opts?.fix === true);
    }
    return { tts, vts: await sizeOfTree(this.versionsDir) };
  }

  /**
   * Bytes of a folder in the trash, from the disk (a crash may have left the sizes recorded inside
   * it wrong); with `fix`, the folders' records are corrected on the way (lock held).
   */
  private async trashedTreeSize(dir: string, fix: boolean): Promise<number> {
    let total = 0;
    const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => [] as fs.Dirent[]);
    for (const e of entries) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) total += await this.trashedTreeSize(p, fix);
      else if (e.isFile()) total += (await fsp.lstat(p).catch(() => ({ size: 0 }))).size;
    }
    if (fix) {
      const rec = decodeRecord(await this.env.native.getxattr(dir, XATTR_NODE).catch(() => undefined));
      if (rec && rec.ts !== total) {
        rec.ts = total;
        this.env.native.setxattrSync(dir, XATTR_NODE, encodeRecord(rec));
      }
    }
    return total;
  }

  /** Recount trash and version bytes into the root record (crash repair). */
  async recountTotalsHeld(): Promise<void> {
    const { tts, vts } = await this.countTotals({ fix: true });
    const root = this.recordHeld([]);
    if (!root) return;
    root.tts = tts;
    root.vts = vts;
    this.writeHeld([], root);
    this.bumpGrantsVersionHeld();
  }

  /**
   * Change the root's trash and version byte counts, and bump the grants version when grants or
   * the shape of the tree changed. Call after {@link propagateHeld} (which also writes the root).
   */
  adjustRootHeld(change: { tts?: number; vts?: number; gv?: boolean }): void {
    if (change.gv) this.bumpGrantsVersionHeld(true);
    if (!change.tts && !change.vts) return;
    const root = this.recordHeld([]);
    if (!root) return;
    if (change.tts) root.tts = Math.max(0, (root.tts ?? 0) + change.tts);
    if (change.vts) root.vts = Math.max(0, (root.vts ?? 0) + change.vts);
    this.writeHeld([], root);
  }

  /** Bytes counted against the quota (live tree, trash, versions), and the quota, from the root record. */
  usageHeld(seen?: HeldRecords): { used: number; quota: number | undefined } {
    let root = seen?.get('');
    if (!root) {
      root = this.recordHeld([]);
      if (root) seen?.set('', root);
    }
    return {
      used: (root?.ts ?? 0) + (root?.tts ?? 0) + (root?.vts ?? 0),
      quota: root?.sp?.quota,
    };
  }

  /** INSUFFICIENT_STORAGE when `delta` more bytes do not fit (lock held: exact). */
  checkQuotaHeld(delta: number, seen?: HeldRecords): void {
    if (delta <= 0) return;
    const { used, quota } = this.usageHeld(seen);
    if (quota !== undefined && used + delta > quota) {
      throw new StorageError('INSUFFICIENT_STORAGE', `space quota of ${quota} bytes exceeded`);
    }
  }

  /** Run `fn` under the commit lock. */
  commit<T>(fn: (journal: Journal) => Promise<T>, opts?: RunOptions): Promise<T> {
    return this.lock.run(fn, opts);
  }

  /** Read a node's grants document as stored (inline or sidecar), if it has one. */
  readGrantsDocument(abs: string, rec: NodeRecord): Promise<Buffer | undefined> {
    return this.readDocument(abs, XATTR_GRANTS, this.grantsSidecar(rec.id), rec.g, (r) => r.g);
  }

  /** Read a node's arbitrary metadata (inline or sidecar). */
  async readMetadata(segs: readonly string[], rec: NodeRecord): Promise<Record<string, string>> {
    if (!rec.md) return {};
    const abs = this.abs(segs);
    return parseMetadata(await this.readDocument(abs, XATTR_META, this.sidecar(rec.id), rec.md, (r) => r.md));
  }

  /**
   * Read a node's JSON document (metadata, grants) where its record says it is: inline (1) or in
   * its sidecar (2). A writer that moved it between our read of the record and now rewrote the
   * record before dropping the old copy, so when the document is missing the record is read again
   * and followed once. Errors other than "missing" are thrown, never read as "nothing".
   */
  async readDocument(
    abs: string,
    xattr: string,
    sidecar: string,
    flag: 1 | 2 | undefined,
    flagOf: (rec: NodeRecord) => 1 | 2 | undefined,
  ): Promise<Buffer | undefined> {
    const at = async (f: 1 | 2 | undefined): Promise<Buffer | undefined> => {
      if (f === 1) return this.env.native.getxattr(abs, xattr);
      if (f !== 2) return undefined;
      try {
        return await fsp.readFile(sidecar);
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    };
    const first = await at(flag);
    if (first !== undefined || flag === undefined) return first;
    const fresh = decodeRecord(await this.env.native.getxattr(abs, XATTR_NODE));
    const now = fresh ? flagOf(fresh) : undefined;
    return now === flag ? undefined : at(now);
  }
}

/** Sum of the sizes of the files below a folder (0 when missing). */
async function sizeOfTree(dir: string): Promise<number> {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isDirectory()) total += await sizeOfTree(`${dir}/${e.name}`);
    else if (e.isFile()) total += (await fsp.lstat(`${dir}/${e.name}`).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** Number of segments of a key. */
export function depth(key: string): number {
  if (key === '') return 0;
  let n = 1;
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) === 47) n++;
  return n;
}

/** Parse stored metadata; anything unusable reads as empty. */
export function parseMetadata(buf: Buffer | undefined): Record<string, string> {
  if (!buf || buf.length === 0) return {};
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>))
      if (typeof val === 'string') out[k] = val;
    return out;
  } catch {
    return {};
  }
}
