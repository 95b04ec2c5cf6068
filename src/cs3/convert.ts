/**
 * Stowage's model <-> CS3 messages, both ways: the server answers with these, the client driver
 * reads them back. What CS3 has no field for travels in `opaque` under `stowage.*` keys (and
 * OpenCloud's own keys where it has one: `md5`, `adler32`, `spaceAlias`, `trashed`, ...).
 *
 * @module
 */

import { codeToCs3, type ErrorCode, ErrorCodes, type ErrorReason, StorageError } from '../core/errors.js';
import { type Grant, type Grantee, noPermissions, PERMISSION_NAMES } from '../core/permissions.js';
import { formatResourceId } from '../core/refs.js';
import type {
  Checksums,
  FileVersion,
  Lock,
  Permissions,
  RecycleItem,
  ResourceId,
  ResourceInfo,
  Space,
} from '../core/types.js';
import { quoteEtag } from '../http/common.js';
import { Code } from './gen/cs3/rpc/v1beta1/code.js';
import type { Status } from './gen/cs3/rpc/v1beta1/status.js';
import * as P from './gen/cs3/storage/provider/v1beta1/resources.js';
import type { Opaque, Timestamp } from './gen/cs3/types/v1beta1/types.js';

/**
 * The arbitrary-metadata key under which CS3 clients (Reva's ocdav, as its local storage takes it)
 * ask for, set and unset the user's own favorite mark: "1" or "0". Not stored as metadata.
 */
export const OC_FAVORITE = 'http://owncloud.org/ns/favorite';

// ------------------------------------------------------------------ status

const OK: Status = Object.freeze({ code: Code.CODE_OK, message: '', trace: '', targetUri: '' }) as Status;

/** An OK status (one shared frozen object). */
export function ok(): Status {
  return OK;
}

/** A status for an error: its CS3 code, its message, and Stowage's reason in `InnerError`. */
export function errorStatus(err: unknown): Status {
  const e =
    err instanceof StorageError ? err : new StorageError('INTERNAL', 'internal error', { cause: err }); // details stay in the server log
  return {
    code: codeToCs3[e.code],
    message: e.message,
    trace: '',
    targetUri: '',
    ...(e.reason && { InnerError: { decoder: 'plain', value: Buffer.from(e.reason) } }),
  };
}

const FROM_CS3: Readonly<Record<number, ErrorCode>> = Object.freeze({
  ...Object.fromEntries(ErrorCodes.map((c) => [codeToCs3[c], c])),
  [Code.CODE_UNKNOWN]: 'INTERNAL',
  [Code.CODE_INVALID]: 'INTERNAL',
  [Code.CODE_DEADLINE_EXCEEDED]: 'UNAVAILABLE',
  [Code.CODE_RESOURCE_EXHAUSTED]: 'UNAVAILABLE',
  [Code.CODE_OUT_OF_RANGE]: 'INVALID_ARGUMENT',
  [Code.CODE_DATA_LOSS]: 'INTERNAL',
  [Code.CODE_REDIRECTION]: 'UNIMPLEMENTED',
});

/** Throw the StorageError a non-OK status stands for. */
export function checkStatus(status: Status | undefined, what: string): void {
  if (!status) throw new StorageError('INTERNAL', `${what}: the server sent no status`);
  if (status.code === Code.CODE_OK) return;
  const code = FROM_CS3[status.code] ?? 'INTERNAL';
  const reason = status.InnerError?.value.length
    ? (status.InnerError.value.toString() as ErrorReason)
    : undefined;
  throw new StorageError(code, status.message || `${what} failed`, reason ? { reason } : {});
}

// ------------------------------------------------------------------ opaque, time

/** Build an Opaque from plain values (strings as `plain`, everything else as `json`). */
export function opaque(values: Record<string, unknown>): Opaque | undefined {
  const map: Opaque['map'] = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    map[k] =
      typeof v === 'string'
        ? { decoder: 'plain', value: Buffer.from(v) }
        : { decoder: 'json', value: Buffer.from(JSON.stringify(v)) };
  }
  return Object.keys(map).length ? { map } : undefined;
}

/** A plain opaque value as a string. */
export function opaqueString(o: Opaque | undefined, key: string): string | undefined {
  const e = o?.map[key];
  return e ? e.value.toString('utf8') : undefined;
}

/** A json opaque value, parsed (undefined when absent or not JSON). */
export function opaqueJson<T>(o: Opaque | undefined, key: string): T | undefined {
  const s = opaqueString(o, key);
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s) as T;
  } catch {
    return undefined;
  }
}

/** Milliseconds since epoch -> CS3 Timestamp (unsigned). */
export function toTimestamp(ms: number): Timestamp {
  const t = Math.max(0, ms);
  const seconds = Math.floor(t / 1000);
  return { seconds, nanos: Math.min(999_999_999, Math.round((t - seconds * 1000) * 1e6)) };
}

/** CS3 Timestamp -> milliseconds since epoch. */
export function fromTimestamp(t: Timestamp | undefined): number | undefined {
  return t ? t.seconds * 1000 + t.nanos / 1e6 : undefined;
}

// ------------------------------------------------------------------ ids, references

export function toResourceId(id: ResourceId): P.ResourceId {
  return { storageId: id.storageId, spaceId: id.spaceId, opaqueId: id.opaqueId };
}

export function fromResourceId(id: P.ResourceId | undefined): ResourceId | undefined {
  return id ? { storageId: id.storageId, spaceId: id.spaceId, opaqueId: id.opaqueId } : undefined;
}

/** Strip the quotes (and a weak prefix) of an etag from the wire. */
export function unquoteEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

// ------------------------------------------------------------------ permissions, grants, locks

export function toPermissions(p: Permissions): P.ResourcePermissions {
  return { ...p };
}

export function fromPermissions(p: P.ResourcePermissions | undefined): Permissions {
  const out = noPermissions();
  if (p) for (const n of PERMISSION_NAMES) out[n] = !!p[n];
  return out;
}

export function toGrantee(g: Grantee): P.Grantee {
  return g.type === 'group'
    ? { type: P.GranteeType.GRANTEE_TYPE_GROUP, groupId: { idp: '', opaqueId: g.id, type: 1 } }
    : { type: P.GranteeType.GRANTEE_TYPE_USER, userId: userId(g.id) };
}

export function fromGrantee(g: P.Grantee | undefined): Grantee {
  if (g?.type === P.GranteeType.GRANTEE_TYPE_GROUP && g.groupId?.opaqueId) {
    return { type: 'group', id: g.groupId.opaqueId };
  }
  if (g?.type === P.GranteeType.GRANTEE_TYPE_USER && g.userId?.opaqueId) {
    return { type: 'user', id: g.userId.opaqueId };
  }
  throw new StorageError('INVALID_ARGUMENT', 'a grantee needs a type and a user or group id');
}

function userId(id: string): P.Grant['creator'] & object {
  return { idp: '', opaqueId: id, type: 1, tenantId: '', externalIdentities: [] };
}

/** A grant on the wire; a deny grant is an all-false permission set (as OpenCloud's). */
export function toGrant(g: Grant): P.Grant {
  return {
    grantee: toGrantee(g.grantee),
    permissions: toPermissions(g.deny ? noPermissions() : g.permissions),
    ...(g.creator && { creator: userId(g.creator) }),
    ...(g.expires !== undefined && { expiration: toTimestamp(g.expires) }),
  };
}

export function fromGrant(g: P.Grant | undefined): Grant {
  if (!g) throw new StorageError('INVALID_ARGUMENT', 'a grant is required');
  const permissions = fromPermissions(g.permissions);
  const out: Grant = { grantee: fromGrantee(g.grantee), permissions };
  if (!PERMISSION_NAMES.some((n) => permissions[n])) out.deny = true;
  if (g.creator?.opaqueId) out.creator = g.creator.opaqueId;
  const exp = fromTimestamp(g.expiration);
  if (exp) out.expires = exp;
  return out;
}

const LOCK_TYPES: Readonly<Record<Lock['type'], P.LockType>> = {
  shared: P.LockType.LOCK_TYPE_SHARED,
  write: P.LockType.LOCK_TYPE_WRITE,
  exclusive: P.LockType.LOCK_TYPE_EXCL,
};

export function toLock(l: Lock): P.Lock {
  return {
    lockId: l.lockId,
    type: LOCK_TYPES[l.type],
    appName: l.appName ?? '',
    ...(l.user && { user: userId(l.user) }),
    ...(l.expires !== undefined && { expiration: toTimestamp(l.expires) }),
  };
}

export function fromLock(l: P.Lock | undefined): Lock | undefined {
  if (!l?.lockId) return undefined;
  const type =
    l.type === P.LockType.LOCK_TYPE_SHARED
      ? 'shared'
      : l.type === P.LockType.LOCK_TYPE_WRITE
        ? 'write'
        : 'exclusive';
  const out: Lock = { lockId: l.lockId, type };
  if (l.user?.opaqueId) out.user = l.user.opaqueId;
  if (l.appName) out.appName = l.appName;
  const exp = fromTimestamp(l.expiration);
  if (exp) out.expires = exp;
  return out;
}

/** A lock from a request, which must name a type and an id. */
export function lockFromRequest(l: P.Lock | undefined): Lock {
  if (!l?.lockId) throw new StorageError('INVALID_ARGUMENT', 'a lock needs a lock id');
  if (!(l.type in [0, 1, 2, 3]) || l.type === P.LockType.LOCK_TYPE_INVALID) {
    throw new StorageError('INVALID_ARGUMENT', 'a lock needs a type');
  }
  return fromLock(l)!;
}

// ------------------------------------------------------------------ resource info

/** How paths are written in an answer: relative to the space root (`./a`), or absolute (`/alias/a`). */
export type PathStyle = { relative: true } | { relative: false; alias: string };

/** A Stowage ResourceInfo as CS3 sends it. */
export function toCs3Info(info: ResourceInfo, style: PathStyle): P.ResourceInfo {
  const checksums = info.checksums;
  const path = style.relative
    ? info.path === '/'
      ? '.'
      : `.${info.path}`
    : `/${style.alias}${info.path === '/' ? '' : info.path}`;
  const extra: Record<string, unknown> = {};
  if (checksums?.md5) extra.md5 = checksums.md5;
  if (checksums?.adler32) extra.adler32 = checksums.adler32;
  if (info.lock) extra.lock = JSON.stringify(info.lock); // OpenCloud's key
  if (info.grants) extra['stowage.grants'] = info.grants;
  extra['stowage.mtime'] = String(info.mtime);
  if (info.created !== undefined) extra['stowage.created'] = String(info.created);
  return {
    opaque: opaque(extra),
    type: info.type === 'folder' ? P.ResourceType.RESOURCE_TYPE_CONTAINER : P.ResourceType.RESOURCE_TYPE_FILE,
    id: toResourceId(info.id),
    ...(checksums?.sha1 && {
      checksum: { type: P.ResourceChecksumType.RESOURCE_CHECKSUM_TYPE_SHA1, sum: checksums.sha1 },
    }),
    etag: quoteEtag(info.etag),
    mimeType: info.mimeType,
    mtime: toTimestamp(info.mtime),
    path,
    ...(info.permissions && { permissionSet: toPermissions(info.permissions) }),
    size: info.size,
    target: '',
    ...((info.metadata || info.favorite !== undefined) && {
      arbitraryMetadata: {
        metadata: {
          ...info.metadata,
          // (the user's own mark, where it was asked for by its key: see OC_FAVORITE)
          ...(info.favorite !== undefined && { [OC_FAVORITE]: info.favorite ? '1' : '0' }),
        },
      },
    }),
    ...(info.lock && { lock: toLock(info.lock) }),
    advisoryLocks: [],
    ...(info.parentId && { parentId: toResourceId(info.parentId) }),
    name: info.name,
  };
}

/** A CS3 ResourceInfo back to Stowage's (paths are taken relative to the space root). */
export function fromCs3Info(i: P.ResourceInfo | undefined): ResourceInfo {
  if (!i?.id) throw new StorageError('INTERNAL', 'the server sent a resource without an id');
  const id = fromResourceId(i.id)!;
  let path = i.path;
  if (path === '.' || path === '') path = '/';
  else if (path.startsWith('./')) path = path.slice(1);
  const checksums: Checksums = {};
  if (i.checksum?.type === P.ResourceChecksumType.RESOURCE_CHECKSUM_TYPE_SHA1 && i.checksum.sum) {
    checksums.sha1 = i.checksum.sum.toLowerCase();
  }
  const md5 = opaqueString(i.opaque, 'md5');
  const adler32 = opaqueString(i.opaque, 'adler32');
  if (md5) checksums.md5 = md5;
  if (adler32) checksums.adler32 = adler32;
  const mtime = Number(opaqueString(i.opaque, 'stowage.mtime') ?? Number.NaN);
  const out: ResourceInfo = {
    id,
    path,
    name: i.name,
    type: i.type === P.ResourceType.RESOURCE_TYPE_CONTAINER ? 'folder' : 'file',
    size: i.size,
    mtime: Number.isFinite(mtime) ? mtime : (fromTimestamp(i.mtime) ?? 0),
    etag: unquoteEtag(i.etag),
    mimeType: i.mimeType,
  };
  const created = Number(opaqueString(i.opaque, 'stowage.created') ?? Number.NaN);
  if (Number.isFinite(created)) out.created = created;
  if (i.parentId) out.parentId = fromResourceId(i.parentId)!;
  if (Object.keys(checksums).length) out.checksums = checksums;
  if (i.permissionSet) out.permissions = fromPermissions(i.permissionSet);
  if (i.arbitraryMetadata) out.metadata = { ...i.arbitraryMetadata.metadata };
  const lock = fromLock(i.lock);
  if (lock) out.lock = lock;
  const grants = opaqueJson<Grant[]>(i.opaque, 'stowage.grants');
  if (grants) out.grants = grants;
  return out;
}

// ------------------------------------------------------------------ versions, trash

export function toCs3Version(v: FileVersion): P.FileVersion {
  return {
    opaque: opaque({
      'stowage.mtime': String(v.mtime),
      ...(v.checksums && { 'stowage.checksums': v.checksums }),
    }),
    key: v.key,
    size: v.size,
    mtime: Math.floor(v.mtime / 1000),
    etag: quoteEtag(v.etag),
  };
}

export function fromCs3Version(v: P.FileVersion): FileVersion {
  const ms = Number(opaqueString(v.opaque, 'stowage.mtime') ?? Number.NaN);
  const out: FileVersion = {
    key: v.key,
    size: v.size,
    mtime: Number.isFinite(ms) ? ms : v.mtime * 1000,
    etag: unquoteEtag(v.etag),
  };
  const checksums = opaqueJson<Checksums>(v.opaque, 'stowage.checksums');
  if (checksums) out.checksums = checksums;
  return out;
}

/** A trash item; its original location is a reference relative to the space root. */
export function toCs3RecycleItem(item: RecycleItem, root: ResourceId): P.RecycleItem {
  return {
    opaque: opaque({
      'stowage.id': formatResourceId(item.id),
      ...(item.parentId && { 'stowage.parent': formatResourceId(item.parentId) }),
      ...(item.deletedBy && { 'stowage.deleted_by': item.deletedBy }),
      ...(item.grants && { 'stowage.grants': item.grants }),
      'stowage.deleted': String(item.deleted),
    }),
    type: item.type === 'folder' ? P.ResourceType.RESOURCE_TYPE_CONTAINER : P.ResourceType.RESOURCE_TYPE_FILE,
    key: item.key,
    ref: { resourceId: toResourceId(root), path: `.${item.path}` },
    size: item.size,
    deletionTime: toTimestamp(item.deleted),
  };
}

// ------------------------------------------------------------------ spaces

/** A space as CS3 sends it; ids are `<storage>$<space>!<space>` strings, as OpenCloud's. */
export function toCs3Space(s: Space, permissions?: Permissions): P.StorageSpace {
  return {
    opaque: opaque({
      spaceAlias: s.alias,
      etag: quoteEtag(s.etag),
      'quota.used': String(s.used),
      ...(s.quota !== undefined && {
        'quota.total': String(s.quota),
        'quota.remaining': String(Math.max(0, s.quota - s.used)),
      }),
      ...(s.description !== undefined && { description: s.description }),
      ...(s.disabled && { trashed: 'trashed' }),
      ...(s.usage && { 'stowage.usage': s.usage }),
      'stowage.mtime': String(s.mtime),
    }),
    id: { opaqueId: formatResourceId(s.root) },
    ...(s.owner && {
      owner: {
        id: { idp: s.owner.idp ?? '', opaqueId: s.owner.id, type: 1, tenantId: '', externalIdentities: [] },
        username: s.owner.username ?? '',
        mail: '',
        mailVerified: false,
        displayName: s.owner.displayName ?? '',
        groups: [],
        uidNumber: 0,
        gidNumber: 0,
        status: 0,
      },
    }),
    root: toResourceId(s.root),
    name: s.name,
    ...(s.quota !== undefined && {
      quota: {
        quotaMaxBytes: s.quota,
        quotaMaxFiles: 0,
        remainingBytes: Math.max(0, s.quota - s.used),
        remainingFiles: 0,
      },
    }),
    spaceType: s.type,
    mtime: toTimestamp(s.mtime),
    hasTrashedItems: (s.usage?.trash ?? 0) > 0,
    description: s.description ?? '',
    thumbnailId: '',
    readmeId: '',
    ...(permissions && { permissionSet: toPermissions(permissions) }),
  };
}

export function fromCs3Space(s: P.StorageSpace | undefined): Space {
  if (!s?.root) throw new StorageError('INTERNAL', 'the server sent a space without a root');
  const root = fromResourceId(s.root)!;
  const used = Number(opaqueString(s.opaque, 'quota.used') ?? 0);
  const mtime = Number(opaqueString(s.opaque, 'stowage.mtime') ?? Number.NaN);
  const out: Space = {
    id: root.spaceId,
    storageId: root.storageId,
    type: s.spaceType === 'personal' ? 'personal' : 'project',
    name: s.name,
    alias: opaqueString(s.opaque, 'spaceAlias') ?? `${s.spaceType}/${root.spaceId}`,
    root,
    used,
    mtime: Number.isFinite(mtime) ? mtime : (fromTimestamp(s.mtime) ?? 0),
    etag: unquoteEtag(opaqueString(s.opaque, 'etag') ?? ''),
  };
  const description = opaqueString(s.opaque, 'description');
  if (description !== undefined) out.description = description;
  if (s.owner?.id?.opaqueId) {
    out.owner = {
      id: s.owner.id.opaqueId,
      ...(s.owner.id.idp && { idp: s.owner.id.idp }),
      ...(s.owner.username && { username: s.owner.username }),
      ...(s.owner.displayName && { displayName: s.owner.displayName }),
    };
  }
  const total = opaqueString(s.opaque, 'quota.total');
  if (total !== undefined) out.quota = Number(total);
  const usage = opaqueJson<Space['usage']>(s.opaque, 'stowage.usage');
  if (usage) out.usage = usage;
  if (opaqueString(s.opaque, 'trashed')) out.disabled = true;
  return out;
}
