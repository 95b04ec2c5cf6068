/**
 * The storage model: ids, references, resource info, spaces, field masks.
 * CS3-shaped, but plain TypeScript: no protobuf or HTTP types here.
 *
 * @module
 */
import type { Grant } from './permissions.js';

/** CS3 `ResourceId`: a node inside a space inside a storage. For a space root, `opaqueId === spaceId`. */
export interface ResourceId {
  readonly storageId: string;
  readonly spaceId: string;
  readonly opaqueId: string;
}

/**
 * A reference, as CS3 has it: a resource id, optionally followed by a path relative to it, or an
 * absolute path in the provider's namespace (`/<space alias>/<path>`, e.g. `/project/demo/a.txt`).
 * `space` addresses a space root by id or alias; it is a convenience of the TypeScript API.
 */
export interface Reference {
  readonly resourceId?: ResourceId | string;
  readonly space?: string;
  readonly path?: string;
}

/** What callers pass: a {@link Reference} or its string form (`storage$space!node/rel/path` or `/alias/path`). */
export type Ref = Reference | string;

/**
 * A reference after the provider resolved and validated it: start at `nodeId` (or the space root),
 * then descend `segments`. Segments are non-empty, never `.`/`..`, contain no `/` or NUL, and are at
 * most 255 UTF-8 bytes. Drivers receive only this form.
 */
export interface NodeRef {
  readonly spaceId: string;
  readonly nodeId?: string;
  readonly segments: readonly string[];
}

/** Resource type. `folder` is CS3's CONTAINER. */
export type ResourceType = 'file' | 'folder';

/** Content checksums as lowercase hex. */
export interface Checksums {
  sha1?: string;
  md5?: string;
  adler32?: string;
}

/** Checksum algorithm names. */
export type ChecksumAlgorithm = keyof Checksums;

/** The checksum algorithms every writing driver computes while streaming. */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['sha1', 'md5', 'adler32'];

/** CS3 lock types. */
export type LockType = 'shared' | 'write' | 'exclusive';

/** A CS3 lock on a resource. */
export interface Lock {
  lockId: string;
  type: LockType;
  user?: string;
  appName?: string;
  /** Milliseconds since epoch; absent = no expiry. */
  expires?: number;
}

/** CS3 `ResourcePermissions`, as booleans. */
export interface Permissions {
  addGrant: boolean;
  createContainer: boolean;
  delete: boolean;
  getPath: boolean;
  getQuota: boolean;
  initiateFileDownload: boolean;
  initiateFileUpload: boolean;
  listGrants: boolean;
  listContainer: boolean;
  listFileVersions: boolean;
  listRecycle: boolean;
  move: boolean;
  removeGrant: boolean;
  purgeRecycle: boolean;
  restoreFileVersion: boolean;
  restoreRecycleItem: boolean;
  stat: boolean;
  updateGrant: boolean;
  denyGrant: boolean;
}

/** All permissions granted (what a space owner or an unauthenticated embedded caller has). */
export const ALL_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  addGrant: true,
  createContainer: true,
  delete: true,
  getPath: true,
  getQuota: true,
  initiateFileDownload: true,
  initiateFileUpload: true,
  listGrants: true,
  listContainer: true,
  listFileVersions: true,
  listRecycle: true,
  move: true,
  removeGrant: true,
  purgeRecycle: true,
  restoreFileVersion: true,
  restoreRecycleItem: true,
  stat: true,
  updateGrant: true,
  denyGrant: true,
});

/** Everything Stowage knows about one resource. */
export interface ResourceInfo {
  id: ResourceId;
  /** Absent for a space root. */
  parentId?: ResourceId;
  /** Path relative to the space root, starting with `/` (`/` for the root itself). */
  path: string;
  /** Base name; the space name for a space root. */
  name: string;
  type: ResourceType;
  /** Bytes: the content length of a file, the tree size of a folder. */
  size: number;
  /** Milliseconds since epoch; for folders the tree modification time (changes when anything below changes). */
  mtime: number;
  /**
   * Milliseconds since epoch when the resource came to be: made through Stowage, or first seen when
   * made around it (its birth time on the filesystem). Kept when its content is replaced, when it
   * moves, and when it is restored from the trash or a version; a copy is a new resource. Absent
   * when the driver does not know (see each driver's Limits).
   */
  created?: number;
  /**
   * Files: milliseconds since epoch by the storage's clock when the content or the time last
   * changed, at least (a driver may give a later time, never an earlier one). `mtime` may be set to
   * any time (a sync client keeps its file's), so a date condition (If-Modified-Since, an If-Range
   * date) holds only if nothing changed after it by this time either. Absent when unknown.
   */
  changed?: number;
  /** Opaque entity tag without quotes. Changes when content (files) or anything below (folders) changes. */
  etag: string;
  mimeType: string;
  /** Present when known and valid for the current content (never stale). */
  checksums?: Checksums;
  permissions?: Permissions;
  /** Arbitrary metadata: only the keys asked for (see {@link StatOptions.metadataKeys}). */
  metadata?: Record<string, string>;
  lock?: Lock;
  /** @internal Names this file has (hard links), when more than one: a change under one name shows under all. */
  links?: number;
  /** Grants set directly on this node (only with the `grants` field). */
  grants?: Grant[];
  /**
   * Whether the session's user marked this resource as a favorite (ownCloud's `oc:favorite`).
   * Only with the `favorite` field, for a session (see `StorageProvider.as`), on a storage with the
   * `favorites` capability.
   */
  favorite?: boolean;
}

/** Optional parts of {@link ResourceInfo} a caller can ask for; the rest is always there. */
export type Field =
  | 'parentId'
  | 'checksums'
  | 'mimeType'
  | 'permissions'
  | 'lock'
  | 'metadata'
  | 'grants'
  | 'favorite';

/** The fields returned when a caller does not say. Metadata is only read when keys are asked for. */
export const DEFAULT_FIELDS: readonly Field[] = ['parentId', 'checksums', 'mimeType', 'permissions', 'lock'];

/** Options for reads of resource info (stat, list). */
export interface StatOptions {
  /** Optional fields wanted; default {@link DEFAULT_FIELDS}. Drivers skip I/O for fields not asked for. */
  fields?: readonly Field[];
  /** Arbitrary metadata keys to return; `'*'` for all. Implies the `metadata` field. */
  metadataKeys?: readonly string[] | '*';
  signal?: AbortSignal;
  /**
   * Filled in by the provider once the stat or listing is done: `until` is when the same answer
   * could come out differently without anybody changing anything (the earliest expiry of a grant it
   * depended on; `Infinity` when none). For caches of listings; drivers ignore it.
   */
  validity?: { until: number };
}

/** Options for a listing. */
export interface ListOptions extends StatOptions {}

/** Conditions of an HTTP-style conditional request. Etags are compared without quotes; `'*'` matches anything. */
export interface Conditions {
  ifMatch?: readonly string[] | '*';
  ifNoneMatch?: readonly string[] | '*';
  /** Milliseconds since epoch. */
  ifModifiedSince?: number;
  ifUnmodifiedSince?: number;
}

/** A byte range; `end` inclusive. Negative `start` without `end` means a suffix ("last N bytes"). */
export interface ByteRange {
  start?: number;
  end?: number;
  /** Length of a suffix range (`bytes=-N`). */
  suffix?: number;
}

/** Options for {@link Driver.read}. */
export interface ReadOptions extends StatOptions {
  range?: ByteRange;
  conditions?: Conditions;
  /** If-Range: serve the range only if the etag still matches, else the whole body. */
  ifRange?: string;
}

/**
 * The answer to a read. `status` follows HTTP: 200 whole body, 206 range, 304 not modified,
 * 412 precondition failed, 416 range not satisfiable. The body is only opened for 200/206.
 */
export interface ReadResult {
  status: 200 | 206 | 304 | 412 | 416;
  info: ResourceInfo;
  body?: NodeJS.ReadableStream & AsyncIterable<Uint8Array>;
  /** For 206: the served range, inclusive. */
  range?: { start: number; end: number };
  /**
   * When the bytes are those of a local file: its open handle and the span `body` would stream
   * (inclusive). A caller that copies them itself (HTTP responses: a few reused buffers instead of
   * a fresh one per chunk, ~25% less CPU) reads the handle and must not read `body`; either way it
   * destroys `body` when done, which closes the handle.
   */
  file?: { handle: import('node:fs/promises').FileHandle; start: number; end: number };
  /**
   * When the driver already holds the whole span (small local files): its bytes, which `body`
   * streams too. A caller that sends these need not read or destroy `body`.
   */
  bytes?: Uint8Array;
}

/** Options of mutations that a lock on the resource guards. */
export interface LockOptions {
  /** The lock id the caller holds; required when the resource is locked. */
  lockId?: string;
  /**
   * Ids of locks on things inside a folder that the caller holds too, for a delete, move or
   * overwrite of the folder that takes them along (a WebDAV client submits one token per locked
   * member in its `If` header). They count for nothing else, and only from the lock's holder,
   * shared lock or not: a WebDAV lock token is its creator's (RFC 4918 §6.4), and another user's
   * token read from a lock discovery proves nothing. (A shared lock's id as `lockId` is anyone's
   * with write access, as CS3 has it.)
   */
  heldLockIds?: readonly string[];
  /**
   * Who does it (user id; undefined = the system). Drivers record it where they keep such facts
   * (trash, locks, grants) and refuse a non-shared lock's id from anyone but its holder.
   */
  actor?: string;
}

/** Options for {@link Driver.write}. */
export interface WriteOptions extends LockOptions {
  /**
   * The upload this write completes (data plane, TUS, chunked uploads): the write is announced as
   * `upload.finished` too, with the upload's id as the event's `key` when it has one.
   */
  upload?: { id?: string };
  /** Declared length; a body of another length fails with INVALID_ARGUMENT and leaves nothing. */
  size?: number;
  /** Client-supplied modification time (ms since epoch), kept as the file's mtime. */
  mtime?: number;
  /** Expected checksums (hex, any case); a mismatch fails and leaves nothing. */
  checksums?: Checksums;
  conditions?: Conditions;
  signal?: AbortSignal;
}

/** Options for {@link Driver.move} and copy. */
export interface MoveOptions extends LockOptions {
  /** Replace an existing destination (default false: ALREADY_EXISTS). */
  overwrite?: boolean;
  /**
   * The lock id held on the destination being replaced, when it differs from `lockId` (a locked
   * file moved over another locked file). Default: `lockId`.
   */
  targetLockId?: string;
  /**
   * The modification time (ms since epoch) a file gets where it lands, set in the same step as
   * the move or copy: a crash leaves either both done or neither, and no other change to the file
   * can come in between (what a WebDAV `X-OC-Mtime` on MOVE or COPY asks for). Files only: a
   * folder is refused (FAILED_PRECONDITION, reason `is-folder`) before anything changes. Needs the
   * driver's `mtime` capability (otherwise UNIMPLEMENTED); refused as `mtime.set` refuses a time
   * (INVALID_ARGUMENT `time-out-of-range`, PERMISSION_DENIED `not-owner`), before anything changes.
   */
  mtime?: number;
  /**
   * With `mtime`: a time the storage cannot set (no `mtime` capability, out of range, a file of
   * another owner) is left out instead of refused, and the move or copy goes through without it
   * (what a WebDAV door wants: it says `X-OC-Mtime: accepted` only when the answered info has the
   * time). A folder is still refused.
   */
  mtimeBestEffort?: boolean;
  signal?: AbortSignal;
}

/** Options of a copy. */
export interface CopyOptions extends MoveOptions {
  /**
   * Copy a folder without its content: a new empty folder with the original's metadata (a WebDAV
   * COPY with `Depth: 0`, RFC 4918 §9.8.3). Files are copied whole either way.
   */
  shallow?: boolean;
}

/** Space types Stowage knows. */
export type SpaceType = 'personal' | 'project';

/** A user as Stowage sees it (the identity source maps to this). */
export interface UserRef {
  /** Stable opaque id. */
  id: string;
  /** Identity provider (CS3 `idp`). */
  idp?: string;
  /** Login name. */
  username?: string;
  displayName?: string;
}

/** A storage space: a tree with its own root, quota and (later) members. */
export interface Space {
  /** Space id; the root node's opaque id equals it. */
  id: string;
  storageId: string;
  type: SpaceType;
  /** Display name. */
  name: string;
  /** Stable path-safe alias: `personal/<username>` or `project/<slug>`; the absolute-path namespace uses it. */
  alias: string;
  description?: string;
  owner?: UserRef;
  /** Quota in bytes; absent = unlimited. */
  quota?: number;
  root: ResourceId;
  /** Bytes used: the tree size of the root, plus trash and versions (what the quota limits). */
  used: number;
  /** `used`, broken down. */
  usage?: { files: number; trash: number; versions: number };
  /** Tree mtime of the root, ms since epoch. */
  mtime: number;
  etag: string;
  disabled?: boolean;
}

/** Input to create a space. */
export interface CreateSpaceInput {
  type: SpaceType;
  name: string;
  /** Path-safe alias; derived from the name (project) or owner username (personal) when absent. */
  alias?: string;
  owner?: UserRef;
  description?: string;
  quota?: number;
  /** Use this id instead of minting one (migrations). */
  id?: string;
}

/** Fields of a space that can change. `null` clears. */
export interface UpdateSpaceInput {
  name?: string;
  description?: string | null;
  quota?: number | null;
  disabled?: boolean;
}

/** An item in a space's trash. */
export interface RecycleItem {
  /** Key to restore or purge it: the id of the deleted node (plus `/relative/path` inside a deleted folder). */
  key: string;
  /** The deleted node's id (kept when restored). */
  id: ResourceId;
  type: ResourceType;
  /** Path in the space before deletion, starting with `/`. */
  path: string;
  size: number;
  /** Deletion time, ms since epoch. */
  deleted: number;
  /** Who deleted it (user id), when known. */
  deletedBy?: string;
  /** The folder it was in (for an item inside a deleted folder: that folder). */
  parentId?: ResourceId;
  /**
   * Grants set on the node itself when it was deleted (so a trash listing shows a user only what
   * they could see before). Providers hand it out only to those who may list grants.
   */
  grants?: Grant[];
}

/** A previous content of a file. */
export interface FileVersion {
  /** Key to read or restore it. */
  key: string;
  size: number;
  /** The version's modification time, ms since epoch. */
  mtime: number;
  etag: string;
  checksums?: Checksums;
}

/** Filter for space listings. */
export interface SpaceFilter {
  type?: SpaceType;
  id?: string;
  ownerId?: string;
  includeDisabled?: boolean;
}
