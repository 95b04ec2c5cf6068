/**
 * String forms of ids and references, and path safety: the single place where client-supplied
 * paths are turned into validated segments.
 *
 * @module
 */
import { StorageError } from './errors.js';
import type { ResourceId } from './types.js';

/** Longest name (one path segment) in UTF-8 bytes; ext4, xfs and CephFS all stop at 255. */
export const MAX_NAME_BYTES = 255;
/** Longest relative path in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4000;
/** The name each driver may keep for itself at a space root; never reachable by clients. */
export const RESERVED_ROOT_NAME = '.stowage';

/** `storage$space!node`, the CS3 resource id string (OpenCloud's `storagespace` format). */
export function formatResourceId(id: ResourceId): string {
  return `${id.storageId}$${id.spaceId}!${id.opaqueId}`;
}

/**
 * Parse `storage$space!node`, `storage$space` (space root) or a bare `space`.
 * Throws INVALID_ARGUMENT for anything else.
 */
export function parseResourceId(s: string, defaultStorageId = ''): ResourceId {
  if (typeof s !== 'string' || s.length === 0 || s.length > 1024 || s.includes('\0') || s.includes('/')) {
    throw new StorageError('INVALID_ARGUMENT', 'invalid resource id', { reason: 'invalid-path' });
  }
  const dollar = s.indexOf('$');
  const storageId = dollar >= 0 ? s.slice(0, dollar) : defaultStorageId;
  const rest = dollar >= 0 ? s.slice(dollar + 1) : s;
  const bang = rest.indexOf('!');
  const spaceId = bang >= 0 ? rest.slice(0, bang) : rest;
  const opaqueId = bang >= 0 ? rest.slice(bang + 1) : spaceId;
  if (!spaceId || !opaqueId || opaqueId.includes('!') || spaceId.includes('$')) {
    throw new StorageError('INVALID_ARGUMENT', `invalid resource id "${s}"`, { reason: 'invalid-path' });
  }
  return { storageId, spaceId, opaqueId };
}

/** True when two ids name the same node (storage ids compared only when both are set). */
export function sameId(a: ResourceId | undefined, b: ResourceId | undefined): boolean {
  if (!a || !b) return false;
  if (a.storageId && b.storageId && a.storageId !== b.storageId) return false;
  return a.spaceId === b.spaceId && a.opaqueId === b.opaqueId;
}

const utf8 = new TextEncoder();

/**
 * Validate one name. Throws INVALID_ARGUMENT (reason `invalid-path` or `name-too-long`) for empty
 * names, `.`, `..`, `/`, NUL, ill-formed unicode, and names over {@link MAX_NAME_BYTES}.
 */
export function checkName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name === '.' || name === '..') {
    throw new StorageError('INVALID_ARGUMENT', `invalid name "${printable(name)}"`, {
      reason: 'invalid-path',
    });
  }
  if (name.includes('/') || name.includes('\0')) {
    throw new StorageError('INVALID_ARGUMENT', `invalid character in name "${printable(name)}"`, {
      reason: 'invalid-path',
    });
  }
  if (!name.isWellFormed()) {
    throw new StorageError('INVALID_ARGUMENT', 'name is not well-formed unicode', { reason: 'invalid-path' });
  }
  if (name.length > MAX_NAME_BYTES / 3 && utf8.encode(name).length > MAX_NAME_BYTES) {
    throw new StorageError('INVALID_ARGUMENT', `name longer than ${MAX_NAME_BYTES} bytes`, {
      reason: 'name-too-long',
    });
  }
  return name;
}

/**
 * Split a relative (or absolute) path into validated segments. Empty segments and `.` are dropped
 * (CS3 relative paths start with `./`); `..`, NUL, ill-formed unicode and over-long names or paths
 * are refused with INVALID_ARGUMENT. Names are kept byte-exact: NFC and NFD forms are different names.
 */
export function splitPath(path: string | undefined): string[] {
  if (path === undefined || path === '' || path === '/' || path === '.') return [];
  if (typeof path !== 'string') {
    throw new StorageError('INVALID_ARGUMENT', 'path must be a string', { reason: 'invalid-path' });
  }
  if (path.includes('\0')) {
    throw new StorageError('INVALID_ARGUMENT', 'path contains a NUL byte', { reason: 'invalid-path' });
  }
  if (path.length > MAX_PATH_BYTES / 3 && utf8.encode(path).length > MAX_PATH_BYTES) {
    throw new StorageError('INVALID_ARGUMENT', `path longer than ${MAX_PATH_BYTES} bytes`, {
      reason: 'name-too-long',
    });
  }
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      throw new StorageError('INVALID_ARGUMENT', 'path must not contain ".."', { reason: 'invalid-path' });
    }
    out.push(checkName(seg));
  }
  return out;
}

/** Refuse segments that would reach a driver's reserved folder at the space root. */
export function checkNotReserved(segments: readonly string[], atSpaceRoot: boolean): void {
  if (atSpaceRoot && segments[0] === RESERVED_ROOT_NAME) {
    throw new StorageError('INVALID_ARGUMENT', `"${RESERVED_ROOT_NAME}" is reserved at the space root`, {
      reason: 'reserved-name',
    });
  }
}

/** `/a/b` from segments (`/` for none). */
export function joinSegments(segments: readonly string[]): string {
  return segments.length === 0 ? '/' : `/${segments.join('/')}`;
}

/** Replace control characters for safe inclusion of a client string in a message. */
export function printable(s: unknown): string {
  const str = String(s);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  const clean = str.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 77)}...` : clean;
}

/**
 * Derive a path-safe slug from a display name for a project space alias: lowercase ASCII letters,
 * digits, `-`, `_` and `.`; anything else becomes `-`. Falls back to `space` if nothing is left.
 */
export function slugify(name: string): string {
  const s = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|-+$/g, '')
    .slice(0, 64);
  return s || 'space';
}
