/**
 * CS3 lock rules, shared by every driver so they all answer alike (drivers apply them inside their
 * commits, where the answer cannot go stale).
 *
 * - A mutation of a locked resource needs the lock id: none gives LOCKED, a wrong one ABORTED.
 * - A lock id on a resource that is not locked is ABORTED too (WOPI clients rely on it), for the
 *   resource the mutation is about; other resources it touches (a move's destination) only check
 *   their own lock.
 * - Deleting, moving or replacing a folder touches what is inside: a live lock on anything in it
 *   refuses the change (LOCKED) unless the request carries that lock's id, as its lock id or among
 *   its held lock ids (and, for a non-shared lock, comes from its holder).
 * - Expired locks are gone. A non-shared lock is its holder's: nobody else uses its id (to change
 *   the resource, or to re-lock, refresh or unlock it), even knowing it. A shared lock refreshed by
 *   someone else stays its holder's.
 *
 * @module
 */
import { StorageError } from './errors.js';
import type { Lock, LockType } from './types.js';

const TYPES: readonly LockType[] = ['shared', 'write', 'exclusive'];

/** The lock if it is still live. */
export function liveLock(lock: Lock | undefined, now = Date.now()): Lock | undefined {
  return lock && (lock.expires === undefined || lock.expires > now) ? { ...lock } : undefined;
}

/**
 * Check a mutation against a resource's lock. `primary` is true for the resource the mutation is
 * about (a lock id without a lock is then refused); `actor` is who mutates (undefined: the system).
 */
export function checkLockFor(
  lock: Lock | undefined,
  lockId: string | undefined,
  primary = true,
  actor?: string,
): void {
  const live = liveLock(lock);
  if (live) {
    if (!lockId) throw new StorageError('LOCKED', 'the resource is locked');
    if (lockId !== live.lockId)
      throw new StorageError('ABORTED', 'the lock id does not match the lock', { reason: 'condition' });
    if (heldByOther(live, actor)) throw new StorageError('LOCKED', 'the resource is locked by another user');
  } else if (lockId && primary) {
    throw new StorageError('ABORTED', 'the resource is not locked', { reason: 'condition' });
  }
}

/** Check that `lockId` (and `user`, for non-shared locks) may change the current lock. */
export function checkLockChange(current: Lock | undefined, lockId: string, user?: string): void {
  if (!current)
    throw new StorageError('FAILED_PRECONDITION', 'the resource is not locked', { reason: 'condition' });
  if (current.lockId !== lockId)
    throw new StorageError('ABORTED', 'the lock id does not match the lock', { reason: 'condition' });
  if (heldByOther(current, user)) throw new StorageError('LOCKED', 'the resource is locked by another user');
}

/**
 * Check a lock on something inside a folder that a delete, move or overwrite takes along: LOCKED
 * unless the request carries its id, as `lockId` (from its holder, for a non-shared lock) or
 * among `held` (from its holder, shared or not: see {@link LockOptions.heldLockIds}). `at` is the
 * locked member's space-relative path, which the error names.
 */
export function checkLockInside(
  lock: Lock | undefined,
  lockId: string | undefined,
  actor?: string,
  held?: readonly string[],
  at?: string,
): void {
  const live = liveLock(lock);
  if (!live) return;
  const byId = live.lockId === lockId && !heldByOther(live, actor);
  const byHeld = !!held?.includes(live.lockId) && !otherUsers(live, actor);
  if (!byId && !byHeld) {
    throw new StorageError('LOCKED', 'something inside the folder is locked', at === undefined ? {} : { at });
  }
}

/** A non-shared lock held by someone other than `user` (undefined: the system, which may). */
function heldByOther(lock: Lock, user: string | undefined): boolean {
  return lock.type !== 'shared' && otherUsers(lock, user);
}

/** A lock held by someone other than `user`, shared or not (undefined: the system, which may). */
function otherUsers(lock: Lock, user: string | undefined): boolean {
  return !!lock.user && !!user && lock.user !== user;
}

/**
 * The lock to store when `next` locks again or refreshes a resource whose live lock is `current`
 * (LOCKED or ABORTED when `next` may not; `existingLockId` is the id that proves it, when the
 * refresh changes the id). Someone else refreshing a shared lock only moves its expiry and id.
 */
export function lockAfter(current: Lock | undefined, next: Lock, existingLockId?: string): Lock {
  if (!current) return next;
  if (existingLockId === undefined && current.lockId !== next.lockId) {
    throw new StorageError('LOCKED', 'the resource is locked');
  }
  checkLockChange(current, existingLockId ?? next.lockId, next.user);
  if (!current.user || !next.user || current.user === next.user) return next;
  const { expires: _expires, lockId: _id, ...kept } = current;
  return { ...kept, lockId: next.lockId, ...(next.expires !== undefined && { expires: next.expires }) };
}

/** Validate a lock from a caller and stamp the holder. */
export function newLock(lock: Lock, actor?: string): Lock {
  if (
    !lock ||
    typeof lock.lockId !== 'string' ||
    !lock.lockId ||
    lock.lockId.length > 512 ||
    lock.lockId.includes('\0')
  ) {
    throw new StorageError('INVALID_ARGUMENT', 'a lock needs a lock id of 1-512 characters');
  }
  if (!TYPES.includes(lock.type))
    throw new StorageError('INVALID_ARGUMENT', `unknown lock type "${String(lock.type)}"`);
  if (lock.expires !== undefined && !Number.isFinite(lock.expires)) {
    throw new StorageError('INVALID_ARGUMENT', 'lock expiry must be milliseconds since epoch');
  }
  const user = lock.user ?? actor;
  return {
    lockId: lock.lockId,
    type: lock.type,
    ...(user && { user }),
    ...(lock.appName && { appName: String(lock.appName).slice(0, 256) }),
    ...(lock.expires !== undefined && { expires: lock.expires }),
  };
}

/**
 * A further shared lock of the same user on a resource that already holds one (kept with the
 * first: a resource has one lock holder, as in CS3; another user's shared lock is refused).
 */
export interface ExtraLock {
  /** Token. */
  t: string;
  /** Owner XML. */
  o?: string;
  /** Expiry, ms since epoch. */
  e: number;
}

/** What the WebDAV door keeps in a lock's appName: depth, owner, and further shared locks. */
export interface LockMeta {
  /** Taken through WebDAV (not by an app through CS3). */
  webdav: boolean;
  /**
   * A folder's lock of depth `infinity` guards everything below it through every door (see
   * {@link StorageProvider}); any WebDAV lock on a folder guards its members being created,
   * deleted or moved.
   */
  depth: '0' | 'infinity';
  owner: string;
  extra: ExtraLock[];
}

/**
 * Depth, owner and further shared locks of a lock taken through WebDAV, kept in its appName as
 * `webdav <0|i> <JSON>` (others: depth 0, no owner). The depth comes first, in a fixed place, so
 * nothing can push it out.
 */
export function lockMeta(lock: Lock): LockMeta {
  const m = /^webdav ([0i]) (.*)$/s.exec(lock.appName ?? '');
  if (!m) return { webdav: false, depth: '0', owner: '', extra: [] };
  const depth = m[1] === 'i' ? 'infinity' : '0';
  try {
    const j = JSON.parse(m[2]!) as { o?: string; x?: ExtraLock[] };
    const now = Date.now();
    return {
      webdav: true,
      depth,
      owner: typeof j.o === 'string' ? j.o : '',
      extra: Array.isArray(j.x) ? j.x.filter((x) => typeof x?.t === 'string' && x.e > now) : [],
    };
  } catch {
    return { webdav: true, depth, owner: '', extra: [] };
  }
}

/** Every token that proves a lock: its id, and those of the further shared locks it keeps. */
export function lockTokens(lock: Lock): string[] {
  return [lock.lockId, ...lockMeta(lock).extra.map((x) => x.t)];
}

/**
 * Whether a lock on a folder guards a change below it (`member`: the change creates, deletes or
 * moves one of the folder's own members). Only locks taken through WebDAV do: one of depth
 * infinity guards everything below, any other its members (RFC 4918 §7.4). A lock an app took
 * through CS3 or the TypeScript API guards its own node only, as CS3 providers have it.
 */
export function guardsBelow(lock: Lock, member: boolean): boolean {
  const meta = lockMeta(lock);
  return meta.webdav && (member || meta.depth === 'infinity');
}

/**
 * Check a change below or among the members of a folder that holds a lock taken through WebDAV
 * (`lock`; `member`: the change creates, deletes or moves one of the folder's own members). A
 * depth-infinity lock guards everything below; any other guards its members only. The request
 * proves it holds the lock by one of its tokens, as `lockId` or among `held` (and, for a
 * non-shared lock, by coming from its holder): LOCKED otherwise. Returns the token it used.
 */
export function checkLockAbove(
  lock: Lock | undefined,
  member: boolean,
  lockId: string | undefined,
  actor?: string,
  held?: readonly string[],
): string | undefined {
  const live = liveLock(lock);
  if (!live || !guardsBelow(live, member)) return undefined;
  const token = lockTokens(live).find((t) => t === lockId || held?.includes(t));
  // (a token among `held` counts from its holder only, shared lock or not, as inside)
  const other = token === lockId ? heldByOther(live, actor) : otherUsers(live, actor);
  if (!token || other) throw new StorageError('LOCKED', 'a folder above is locked');
  return token;
}
