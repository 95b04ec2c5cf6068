/**
 * The on-disk metadata format of the POSIX driver: one compact JSON record per node in the xattr
 * `user.stowage.n`, arbitrary metadata in `user.stowage.m` (or a sidecar when large).
 *
 * Record fields (short keys keep it well under ext4's ~3.5 KiB per inode):
 * - `id`   node id (UUID); a space root's id is the space id
 * - `p`    parent id (absent on a space root)
 * - `ck`   checksums `{sha1, md5, adler32}` (hex), valid only while the file's mtime and size are
 *          still `ckm` (ms) and `cks` (bytes): a file changed behind our back never shows stale sums
 * - `ckt`  when the checksums were last known to be the content's (wall clock, ms; local
 *          filesystems only): a file whose ctime is later than that, by more than the driver's slack,
 *          was touched since by something that did not rewrite the record (a same-size rewrite with
 *          its mtime put back, `touch -r`, `rsync -t`), and its checksums are not shown until hashed
 *          again. Stowage's own changes carry it forward under the commit lock
 * - `bt`   when the node came to be (ms): made through Stowage, or its birth time on the filesystem
 *          when first seen made around Stowage; carried across rewrites, moves and restores
 * - `ts`   tree size in bytes (folders); absent = not accounted yet, computed on first need
 * - `tm`   tree time in microseconds (folders), strictly increasing with every change below
 * - `md`   1 = arbitrary metadata inline in `user.stowage.m`, 2 = in the sidecar
 *          `<space>/.stowage/meta/<id:2>/<id>.json`
 * - `g`    1 = grants inline in `user.stowage.g`, 2 = in the sidecar `<id>.grants.json`
 * - `lk`   the CS3 lock: `{id, t: s|w|x, u?, a?, e?}` (lock id, type, user, app, expiry ms)
 * - `lb`   1 on a folder when something below it may carry a lock (set on every folder above a
 *          lock when it is set or moves in; cleared when a check finds none): a folder delete or
 *          move looks for locks inside only where this says so
 * - `ex`   1 on a node found around Stowage (written by a scanner, rsync, an admin) and given an id
 *          on sight, but not yet announced: the observer announces it as created and clears it;
 *          2 on a file that replaced a known one around Stowage (written elsewhere and renamed
 *          over it, as editors and rsync do) and took its id on sight: announced as updated
 * - `tr`   on a node in the trash: `{p, at, by?}` (original path, deletion time ms, user)
 * - `sp`   space properties (space roots only), and on the root also:
 *          `tts` bytes in the trash, `vts` bytes in versions (the grants version, bumped when grants
 *          change or folders move so that cached grant chains stay right across processes, is in
 *          its own xattr `user.stowage.v`)
 *
 * @module
 */
import type { Checksums, Lock, SpaceType, UserRef } from '../../core/types.js';

/** Prefix of every xattr Stowage writes. */
export const XATTR_PREFIX = 'user.stowage.';
/** The node record. */
export const XATTR_NODE = `${XATTR_PREFIX}n`;
/** Inline arbitrary metadata. */
export const XATTR_META = `${XATTR_PREFIX}m`;
/** Inline grants. */
export const XATTR_GRANTS = `${XATTR_PREFIX}g`;
/**
 * On a space root: the grants version, a decimal counter bumped whenever grants change or folders
 * move. Kept apart from the record so the check every authorised request makes reads a few bytes.
 */
export const XATTR_GRANTS_VERSION = `${XATTR_PREFIX}v`;

/** A lock as stored. */
export interface StoredLock {
  id: string;
  t: 's' | 'w' | 'x';
  u?: string;
  a?: string;
  e?: number;
}

/** Space properties kept on a space root. */
export interface SpaceProps {
  type: SpaceType;
  name: string;
  alias: string;
  owner?: UserRef;
  desc?: string;
  quota?: number;
  disabled?: boolean;
}

/** The node record, as stored. */
export interface NodeRecord {
  id: string;
  p?: string;
  ck?: Required<Checksums>;
  ckm?: number;
  cks?: number;
  ckt?: number;
  /**
   * The file's etag is made without its sha1: it was changed around Stowage (a new size or mtime),
   * and the etag shown before its checksums were computed stays the one after. Cleared by a
   * write through Stowage, and by a change around it that kept size and mtime (only the sha1
   * tells that one apart).
   */
  en?: 1;
  bt?: number;
  ts?: number;
  tm?: number;
  md?: 1 | 2;
  g?: 1 | 2;
  lk?: StoredLock;
  lb?: 1;
  ex?: 1 | 2;
  tr?: { p: string; at: number; by?: string };
  sp?: SpaceProps;
  tts?: number;
  vts?: number;
  /**
   * A modification time (ms) written with the rest of a change of properties and not yet set on
   * the file: a commit that died before setting it left it here, and its recovery sets it.
   */
  pm?: number;
}

const UUIDISH = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Parse a record; undefined when absent or unusable (it is then treated as a node never seen). */
export function decodeRecord(buf: Buffer | undefined): NodeRecord | undefined {
  if (!buf || buf.length === 0) return undefined;
  let r: unknown;
  try {
    r = JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!r || typeof r !== 'object') return undefined;
  const rec = r as NodeRecord;
  if (typeof rec.id !== 'string' || !UUIDISH.test(rec.id)) return undefined;
  if (rec.p !== undefined && (typeof rec.p !== 'string' || !UUIDISH.test(rec.p))) delete rec.p;
  if (rec.ts !== undefined && !(Number.isSafeInteger(rec.ts) && rec.ts >= 0)) delete rec.ts;
  if (rec.tm !== undefined && !Number.isSafeInteger(rec.tm)) delete rec.tm;
  if (rec.bt !== undefined && !Number.isSafeInteger(rec.bt)) delete rec.bt;
  return rec;
}

/** A lock from its stored form. */
export function lockOf(s: StoredLock | undefined): Lock | undefined {
  if (!s || typeof s.id !== 'string') return undefined;
  return {
    lockId: s.id,
    type: s.t === 's' ? 'shared' : s.t === 'w' ? 'write' : 'exclusive',
    ...(s.u && { user: s.u }),
    ...(s.a && { appName: s.a }),
    ...(typeof s.e === 'number' && { expires: s.e }),
  };
}

/** The stored form of a lock. */
export function storedLock(l: Lock): StoredLock {
  return {
    id: l.lockId,
    t: l.type === 'shared' ? 's' : l.type === 'write' ? 'w' : 'x',
    ...(l.user && { u: l.user }),
    ...(l.appName && { a: l.appName }),
    ...(l.expires !== undefined && { e: l.expires }),
  };
}

/** Are a file's recorded checksums still those of its content (mtime and size unchanged since)? */
export function checksumsValid(rec: NodeRecord | undefined, st: { mtimeMs: number; size: number }): boolean {
  return rec?.ck !== undefined && rec.ckm === st.mtimeMs && rec.cks === st.size;
}

/** Do two sets of checksums agree (all three algorithms)? */
export function sameChecksums(a: Required<Checksums>, b: Required<Checksums>): boolean {
  return a.sha1 === b.sha1 && a.md5 === b.md5 && a.adler32 === b.adler32;
}

/** How long after `ckt` the ctime may move by Stowage's own commit (its rename) by default, ms. */
export const CTIME_SLACK_MS = 2000;

/**
 * Was the file touched (its ctime moved) well after its checksums were last confirmed, by
 * something that did not rewrite its record? Its size and mtime may still match (a same-size
 * rewrite with the mtime put back), so the checksums cannot be trusted until hashed again.
 */
export function checksumsSuspect(
  rec: NodeRecord | undefined,
  st: { ctimeMs: number },
  slackMs: number,
): boolean {
  return rec?.ckt !== undefined && st.ctimeMs > rec.ckt + slackMs;
}

/** Checksums that may be shown: valid by size and mtime, and not suspect by ctime. */
export function checksumsCurrent(
  rec: NodeRecord | undefined,
  st: { mtimeMs: number; size: number; ctimeMs: number },
  slackMs: number,
): boolean {
  return checksumsValid(rec, st) && !checksumsSuspect(rec, st, slackMs);
}

/**
 * The record with its checksums confirmed now (a copy), when they are still current: what a
 * commit about to touch the file (rename it, set metadata, a lock) writes, so its own change is not
 * taken for one made around Stowage. A suspect record is returned as it is, and stays suspect.
 */
export function confirmChecksums(
  rec: NodeRecord,
  st: { mtimeMs: number; size: number; ctimeMs: number },
  slackMs: number,
): NodeRecord {
  return rec.ckt !== undefined && checksumsCurrent(rec, st, slackMs) ? { ...rec, ckt: Date.now() } : rec;
}

/**
 * When a node found made around Stowage came to be: its birth time where the filesystem keeps one
 * (statx), else its ctime (libuv reports that as the birth time without statx), in whole ms (cut, as `Date.now()` is).
 */
export function bornAt(st: { birthtimeMs: number; ctimeMs: number }): number {
  return Math.floor(st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs);
}

/** Serialise a record. */
export function encodeRecord(rec: NodeRecord): string {
  return JSON.stringify(rec);
}

/** Valid node and space ids (what we mint and what we accept back from disk and clients). */
export function isValidId(id: string): boolean {
  return UUIDISH.test(id);
}
