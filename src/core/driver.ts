/**
 * The driver interface: a small required core plus named capabilities resolved once into a frozen
 * {@link Features} record. Callers test `driver.features.copy`, never the driver's kind.
 *
 * Drivers receive validated {@link NodeRef}s only (the provider did path safety) and return fresh
 * {@link ResourceInfo} from every mutation, so no caller needs a follow-up stat.
 *
 * @module
 */
import type { Annotation, PendingChange, StorageEvent } from './events.js';
import type { Grant, Grantee } from './permissions.js';
import type {
  CreateSpaceInput,
  FileVersion,
  ListOptions,
  Lock,
  LockOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  RecycleItem,
  ResourceId,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from './types.js';

/** A request body: a Node stream, any async iterable of bytes, or bytes/text already in memory. */
export type Body = AsyncIterable<Uint8Array | string> | Uint8Array | string;

/** Options shared by simple mutations. */
export interface MutationOptions extends LockOptions {
  signal?: AbortSignal;
}

/** Capability `copy`: server-side copy (new ids for the copies). */
export interface CopyFeature {
  copy(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo>;
}

/** Capability `metadata`: arbitrary key/value metadata (WebDAV dead properties, CS3 arbitrary metadata). */
export interface MetadataFeature {
  /** Set keys; other keys are kept. Values are strings; a key is 1-255 bytes, no NUL. */
  set(ref: NodeRef, values: Readonly<Record<string, string>>, opts?: MutationOptions): Promise<void>;
  /** Remove keys; missing keys are ignored. */
  unset(ref: NodeRef, keys: readonly string[], opts?: MutationOptions): Promise<void>;
  /**
   * Set and remove keys and, with the `mtime` capability, set a file's modification time, as one
   * change: all of it or none, also when the process dies half way (a PROPPATCH is all or
   * nothing). Refusals are those of `set`, `unset` and `mtime.set`, before anything changes.
   * Optional: without it, the provider makes the parts one after the other.
   */
  change?(ref: NodeRef, change: MetadataChange, opts?: MutationOptions): Promise<void>;
}

/** What {@link MetadataFeature.change} changes; absent parts stay. */
export interface MetadataChange {
  set?: Readonly<Record<string, string>>;
  unset?: readonly string[];
  /** ms since epoch; a folder is refused (FAILED_PRECONDITION, reason `is-folder`). */
  mtime?: number;
}

/**
 * Capability `favorites`: per-user marks on resources (ownCloud's favorites, `oc:favorite`). A mark
 * is one user's business: it says nothing about the resource to anybody else, and changes neither
 * its etag nor its metadata. It follows the resource by id through moves, renames, rewrites and a
 * stay in the trash. No authorisation at this level: the provider checks that the user may see the
 * resource.
 */
export interface FavoritesFeature {
  /** Mark (`on`) or unmark a resource for a user; marking twice or unmarking an unmarked one is fine. */
  set(user: string, id: ResourceId, on: boolean): Promise<void>;
  /**
   * What a user marked in this storage: opaque id -> space id. Ids of resources deleted since may
   * remain (the provider skips them). The same object comes back while the user's marks are
   * unchanged (callers may keep it to tell), and it must not be changed.
   */
  list(user: string): Promise<ReadonlyMap<string, string>>;
}

/**
 * Capability `mtime`: set a file's modification time without rewriting it (what rclone's
 * `touch`/sync, Windows' WebClient and CS3 `mtime` metadata ask for). The file's etag changes with
 * it, its folders' etags too; its content and checksums stay.
 */
export interface MtimeFeature {
  /**
   * Set a file's mtime (ms since epoch) and answer its info as it is now. A folder is refused
   * (FAILED_PRECONDITION, reason `is-folder`): a folder's mtime is the time of the last change
   * below it, which its etag follows.
   */
  set(ref: NodeRef, mtime: number, opts?: MutationOptions): Promise<ResourceInfo>;
}

/** Capability `spaces`: create, change and delete spaces (listing and reading are core). */
export interface SpacesFeature {
  create(input: CreateSpaceInput): Promise<Space>;
  update(spaceId: string, input: UpdateSpaceInput): Promise<Space>;
  /** Delete a space and everything in it. */
  delete(spaceId: string): Promise<void>;
}

/** A node and the grants that reach it from above. */
export interface Inspected {
  /** The node, with its own grants in `info.grants`. */
  info: ResourceInfo;
  /** Grants on each ancestor, from the space root down to the parent (empty for the root). */
  inherited: (readonly Grant[])[];
}

/** Capability `grants`: grants stored on nodes (the provider decides what they mean). */
export interface GrantsFeature {
  /** Grants set directly on a node. */
  list(ref: NodeRef): Promise<Grant[]>;
  /** Add a grant, or replace the one of the same grantee. */
  set(ref: NodeRef, grant: Grant, opts?: MutationOptions): Promise<void>;
  /** Remove the grant of a grantee; false when there was none. */
  remove(ref: NodeRef, grantee: Grantee, opts?: MutationOptions): Promise<boolean>;
  /** A node with its own grants, and the grants of its ancestors (drivers cache this). */
  inspect(ref: NodeRef, opts?: StatOptions): Promise<Inspected>;
}

/**
 * Capability `locks`: CS3 locks. Mutations of a locked resource (write, delete, move, metadata,
 * grants, version restore) fail with LOCKED unless they carry the lock id (ABORTED for a wrong one,
 * or for a lock id when there is no lock); drivers check this inside their commit. Expired locks
 * are gone.
 */
export interface LocksFeature {
  get(ref: NodeRef): Promise<Lock | undefined>;
  /** Lock a resource; LOCKED if another live lock is on it. */
  set(ref: NodeRef, lock: Lock, opts?: MutationOptions): Promise<Lock>;
  /** Extend (or change) a lock; the caller proves it holds it with its id (or `existingLockId`). */
  refresh(ref: NodeRef, lock: Lock, existingLockId?: string): Promise<Lock>;
  /** Remove a lock; the id must match (and, for a non-shared lock, `opts.actor` be its holder). */
  unlock(ref: NodeRef, lockId: string, opts?: MutationOptions): Promise<void>;
}

/** Capability `trash`: delete moves to the space's trash; items keep their ids when restored. */
export interface TrashFeature {
  /** Items of a space's trash, or (with `key`) the content of a deleted folder. */
  list(spaceId: string, opts?: { key?: string }): AsyncIterable<RecycleItem>;
  /** One item (or a node inside a deleted folder: `key/relative/path`); NOT_FOUND when absent. */
  get(spaceId: string, key: string): Promise<RecycleItem>;
  /** Put an item (or a node inside a deleted folder: `key/relative/path`) back, where it was or at `target`. */
  restore(spaceId: string, key: string, opts?: { target?: NodeRef } & MutationOptions): Promise<ResourceInfo>;
  /** Remove an item for good, or (no key) empty the trash. */
  purge(spaceId: string, key?: string): Promise<void>;
}

/** Capability `versions`: every overwrite keeps the previous content (but an empty one: no version). */
export interface VersionsFeature {
  /** Versions of a file, newest first. */
  list(ref: NodeRef): Promise<FileVersion[]>;
  /** The content of a version (ranges and conditions as in {@link Driver.read}). */
  read(ref: NodeRef, key: string, opts?: ReadOptions): Promise<ReadResult>;
  /** Make a version current; the current content becomes a version. The id stays. */
  restore(ref: NodeRef, key: string, opts?: MutationOptions): Promise<ResourceInfo>;
}

/**
 * Capability `quota`: the driver enforces each space's `quota` inside its commits, so concurrent
 * writers cannot overshoot it together, and fails early when a declared size does not fit.
 */
export interface QuotaFeature {
  readonly enforced: true;
  /**
   * Bytes the storage beneath a space can still take (a filesystem's free space for unprivileged
   * writers), whatever the space's quota says; undefined when the driver cannot tell.
   */
  free?(spaceId: string): Promise<number | undefined>;
}

/** A change made around Stowage, found and assimilated by a driver's observer. */
export type ExternalChange = Omit<StorageEvent, 'id' | 'at' | 'origin' | 'user'>;

/** Options of {@link WatchFeature.start}. */
export interface WatchOptions {
  /** Each change, once assimilated (ids, checksums, sizes and etags up to date). */
  onChange(change: ExternalChange): void;
  /**
   * Asked before a new or changed file, or a new folder, is assimilated. Throw to reject it (it is
   * moved to the space's trash, and announced as `trashed` with the reason); return metadata to set.
   */
  vet?(change: PendingChange): Promise<Annotation | undefined> | Annotation | undefined;
  /**
   * Something in a space may have changed: called for each batch of paths the observer looks at,
   * before it knows whether they hold a change it must assimilate (another process may have made
   * the change whole, ids and all), with those paths (from the space root, `a/b`) when only they
   * and what is below them may have changed; without a space when events were lost. `inPlace`:
   * those of the paths that are folders still in their place, of which only their own attributes
   * may have changed (a grant changed anywhere in the space makes the whole space stale). For caches.
   */
  onStale?(spaceId?: string, paths?: readonly string[], inPlace?: readonly string[]): void;
  /** Quiet time after the last event of a path before it is looked at (default 50 ms). */
  debounceMs?: number;
  /**
   * A file is assimilated once its size, mtime and ctime have been still for this long (default
   * 100 ms): a file still being written is not assimilated half way. Raise it for writers that
   * pause longer than that between writes.
   */
  settleMs?: number;
  /** Look for what changed while nobody watched before reporting `ready` (default true). */
  reconcile?: boolean;
  /** Also rescan every space this often, as a safety net (default 1 hour; 0 = never). */
  rescanIntervalMs?: number;
  /** Where failures of the observer are reported (default: the driver's log). */
  log?: (message: string, error?: unknown) => void;
}

/** Figures of a running observer. */
export interface WatchStats {
  /** Folders with a watch on them. */
  watchedFolders: number;
  /** Paths waiting to settle or be processed. */
  pending: number;
  /** Changes announced since the start. */
  changes: number;
  /** Full scans run (the start-up reconcile, rescans after lost events, periodic ones). */
  scans: number;
  /** Times events may have been lost (each one triggered a rescan). */
  lost: number;
}

/** A running observer. */
export interface Watch {
  /** Resolves once every folder is watched and the start-up reconcile is done. */
  readonly ready: Promise<void>;
  /** Scan every space for changes now (what a lost event would trigger). */
  rescan(): Promise<void>;
  /** Resolves when nothing is pending (tests and tools that wait for quiet). */
  idle(): Promise<void>;
  stats(): WatchStats;
  close(): Promise<void>;
}

/**
 * Capability `watch`: changes made around Stowage (scanners, rsync, admins writing into the tree)
 * are found, assimilated and reported; what changed while nobody watched is found at start.
 */
export interface WatchFeature {
  start(opts: WatchOptions): Watch;
}

/**
 * Everything beyond the core, by name. A missing key means the driver lacks the capability.
 * A later issue adds `resumable`.
 */
export interface Features {
  readonly copy?: CopyFeature;
  readonly metadata?: MetadataFeature;
  readonly favorites?: FavoritesFeature;
  readonly mtime?: MtimeFeature;
  readonly spaces?: SpacesFeature;
  readonly grants?: GrantsFeature;
  readonly locks?: LocksFeature;
  readonly trash?: TrashFeature;
  readonly versions?: VersionsFeature;
  readonly quota?: QuotaFeature;
  readonly watch?: WatchFeature;
}

/** Names of the capabilities in {@link Features}. */
export type FeatureName = keyof Features;

/** All capability names, for wrappers and test suites that must handle every one of them. */
export const FEATURE_NAMES: readonly FeatureName[] = [
  'copy',
  'metadata',
  'favorites',
  'mtime',
  'spaces',
  'grants',
  'locks',
  'trash',
  'versions',
  'quota',
  'watch',
];

/** A storage driver. */
export interface Driver {
  /** Human-readable kind (`posix`, `memory`, ...); for logs only. */
  readonly kind: string;
  /** The storage id this driver serves (CS3 `storage_id` / provider mount id). */
  readonly storageId: string;
  /** Frozen capability record. */
  readonly features: Features;

  /** Spaces visible in this storage (no authorisation at this level). */
  listSpaces(filter?: SpaceFilter): AsyncIterable<Space>;
  /** A space by id or alias; NOT_FOUND if there is none. */
  getSpace(idOrAlias: string): Promise<Space>;

  stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo>;
  /** Children of a folder, streamed in no particular order; FAILED_PRECONDITION (`not-folder`) on a file. */
  list(ref: NodeRef, opts?: ListOptions): AsyncIterable<ResourceInfo>;
  /** Content of a file with ranges and conditions; answers 304/412/416 without opening the content. */
  read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult>;
  /**
   * Create or replace a file from a stream. Atomic: readers see the old or the new content, and a
   * failed or aborted body leaves nothing. Keeps the id of a replaced file.
   */
  write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo>;
  /** Create a folder; the parent must exist (FAILED_PRECONDITION `parent-missing`). */
  mkdir(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo>;
  /** Delete a file or a folder with everything in it; returns what was deleted. */
  delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo>;
  /** Move or rename within one space; ids are kept. */
  move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo>;

  /** Release resources (file handles, timers). The driver is unusable afterwards. */
  close(): Promise<void>;
}
