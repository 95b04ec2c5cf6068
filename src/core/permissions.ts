/**
 * Grants, roles and effective permissions: the one place where who-may-do-what is decided, so every
 * driver and every door answers alike.
 *
 * Semantics:
 * - A grant gives a user or a group a set of CS3 permissions on a node; it applies to the node and
 *   everything below it (inherited downwards).
 * - The effective permissions of a principal on a node are the union of its allow grants (its own
 *   and its groups') on the node and every ancestor up to the space root.
 * - A deny grant for the principal (or one of its groups) on the node or an ancestor removes every
 *   permission there and below, whatever else is granted.
 * - Expired grants count for nothing.
 * - The owner of a personal space holds every permission in it.
 *
 * @module
 */
import { StorageError } from './errors.js';
import type { Permissions } from './types.js';

/** Names of the CS3 permissions (keys of {@link Permissions}). */
export type PermissionName = keyof Permissions;

/**
 * One letter per permission, for compact storage (`getfattr` shows e.g. `"p":"splrvq"`).
 */
export const PERMISSION_LETTERS: Readonly<Record<PermissionName, string>> = Object.freeze({
  stat: 's',
  getPath: 'p',
  listContainer: 'l',
  initiateFileDownload: 'r',
  initiateFileUpload: 'w',
  createContainer: 'c',
  delete: 'd',
  move: 'm',
  listFileVersions: 'v',
  restoreFileVersion: 'V',
  listRecycle: 't',
  restoreRecycleItem: 'T',
  purgeRecycle: 'P',
  getQuota: 'q',
  listGrants: 'g',
  addGrant: 'G',
  updateGrant: 'u',
  removeGrant: 'R',
  denyGrant: 'D',
});

const LETTER_TO_NAME = new Map(
  Object.entries(PERMISSION_LETTERS).map(([name, letter]) => [letter, name as PermissionName]),
);

/** All permission names. */
export const PERMISSION_NAMES = Object.keys(PERMISSION_LETTERS) as PermissionName[];

/** Roles: named permission sets (CS3 style), from least to most. */
export const ROLES = {
  /** See and download; list versions. */
  viewer: 'splrvq',
  /** Drop files in, see nothing else (a file-drop folder). */
  uploader: 'swc',
  /** Viewer, plus upload, create, delete, move, restore versions and trash items. */
  editor: 'splrwcdmvVtTq',
  /** Everything, including sharing (grants), purging the trash and managing the space. */
  manager: 'splrwcdmvVtTPqgGuRD',
} as const;

/** A role name. */
export type Role = keyof typeof ROLES;

/** Who a grant is for. */
export interface Grantee {
  type: 'user' | 'group';
  /** The user's or group's opaque id. */
  id: string;
}

/** A grant on a node. */
export interface Grant {
  grantee: Grantee;
  /** What is allowed; ignored for a deny grant. */
  permissions: Permissions;
  /** A deny grant: no permission at all for the grantee here and below. */
  deny?: boolean;
  /** Milliseconds since epoch; absent = never expires. */
  expires?: number;
  /** Who created it (user id). */
  creator?: string;
}

/** The permissions of a role. */
export function roleToPermissions(role: Role): Permissions {
  return fromLetters(ROLES[role]);
}

/** The best-fitting role name for a permission set, or `custom`. */
export function permissionsToRole(p: Permissions): Role | 'custom' | 'none' {
  const letters = toLetters(p);
  if (!letters) return 'none';
  for (const [role, l] of Object.entries(ROLES)) if (letters === sortLetters(l)) return role as Role;
  return 'custom';
}

function sortLetters(s: string): string {
  const order = Object.values(PERMISSION_LETTERS).join('');
  return [...s].sort((a, b) => order.indexOf(a) - order.indexOf(b)).join('');
}

/** No permission at all. */
export function noPermissions(): Permissions {
  return fromLetters('');
}

/** Every permission. */
export function allPermissions(): Permissions {
  return fromLetters(Object.values(PERMISSION_LETTERS).join(''));
}

/** Permissions from their letters (unknown letters refused). */
export function fromLetters(letters: string): Permissions {
  const p = {} as Permissions;
  for (const n of PERMISSION_NAMES) p[n] = false;
  for (const ch of letters) {
    const name = LETTER_TO_NAME.get(ch);
    if (!name) throw new StorageError('INVALID_ARGUMENT', `unknown permission letter "${ch}"`);
    p[name] = true;
  }
  return p;
}

/** Letters of a permission set, in canonical order. */
export function toLetters(p: Partial<Permissions>): string {
  let s = '';
  for (const n of PERMISSION_NAMES) if (p[n]) s += PERMISSION_LETTERS[n];
  return s;
}

/** True when `a` holds every permission of `b`. */
export function includesAll(a: Permissions, b: Permissions): boolean {
  return PERMISSION_NAMES.every((n) => a[n] || !b[n]);
}

/** Key of a grantee: `u:<id>` or `g:<id>`. */
export function granteeKey(g: Grantee): string {
  return `${g.type === 'group' ? 'g' : 'u'}:${g.id}`;
}

/** Check a grant from a caller: known grantee type, non-empty id, permissions object, sane expiry. */
export function checkGrant(g: Grant): Grant {
  if (
    !g ||
    typeof g !== 'object' ||
    !g.grantee ||
    (g.grantee.type !== 'user' && g.grantee.type !== 'group')
  ) {
    throw new StorageError('INVALID_ARGUMENT', 'a grant needs a grantee of type user or group');
  }
  if (
    typeof g.grantee.id !== 'string' ||
    !g.grantee.id ||
    g.grantee.id.length > 256 ||
    g.grantee.id.includes('\0')
  ) {
    throw new StorageError('INVALID_ARGUMENT', 'a grantee needs an id');
  }
  if (g.expires !== undefined && !Number.isFinite(g.expires)) {
    throw new StorageError('INVALID_ARGUMENT', 'grant expiry must be milliseconds since epoch');
  }
  const permissions = g.deny ? noPermissions() : fromLetters(toLetters(g.permissions ?? {}));
  if (!g.deny && !toLetters(permissions)) {
    throw new StorageError(
      'INVALID_ARGUMENT',
      'an allow grant needs at least one permission (use deny or remove instead)',
    );
  }
  return {
    grantee: { type: g.grantee.type, id: g.grantee.id },
    permissions,
    ...(g.deny && { deny: true }),
    ...(g.expires !== undefined && { expires: g.expires }),
    ...(g.creator && { creator: g.creator }),
  };
}

/** Compact form stored by drivers: `{k, id, p, d?, e?, c?}`. */
export interface StoredGrant {
  k: 'u' | 'g';
  id: string;
  p: string;
  d?: 1;
  e?: number;
  c?: string;
}

export function encodeGrant(g: Grant): StoredGrant {
  return {
    k: g.grantee.type === 'group' ? 'g' : 'u',
    id: g.grantee.id,
    p: g.deny ? '' : toLetters(g.permissions),
    ...(g.deny && { d: 1 as const }),
    ...(g.expires !== undefined && { e: g.expires }),
    ...(g.creator && { c: g.creator }),
  };
}

export function decodeGrant(s: StoredGrant): Grant | undefined {
  try {
    if (!s || (s.k !== 'u' && s.k !== 'g') || typeof s.id !== 'string') return undefined;
    return {
      grantee: { type: s.k === 'g' ? 'group' : 'user', id: s.id },
      permissions: s.d ? noPermissions() : fromLetters(String(s.p ?? '')),
      ...(s.d && { deny: true }),
      ...(typeof s.e === 'number' && { expires: s.e }),
      ...(typeof s.c === 'string' && { creator: s.c }),
    };
  } catch {
    return undefined;
  }
}

/** Who is asking: a user id and the ids of its groups. */
export interface Principal {
  userId: string;
  groups: readonly string[];
  /** May manage every space (create project spaces, disable, delete, set quotas). */
  admin?: boolean;
  /** May create project spaces. */
  createSpaces?: boolean;
}

/**
 * Effective permissions along a path: `chain` holds the grants of each node from the space root
 * down to the node itself. `owner` is true when the principal owns the (personal) space.
 */
export function effectivePermissions(
  principal: Principal,
  chain: readonly (readonly Grant[] | undefined)[],
  owner = false,
  now = Date.now(),
): Permissions {
  if (owner) return allPermissions();
  const keys = new Set<string>([`u:${principal.userId}`, ...principal.groups.map((g) => `g:${g}`)]);
  const allowed = noPermissions();
  for (const grants of chain) {
    if (!grants) continue;
    for (const g of grants) {
      if (!keys.has(granteeKey(g.grantee))) continue;
      if (g.expires !== undefined && g.expires <= now) continue;
      if (g.deny) return noPermissions();
      for (const n of PERMISSION_NAMES) if (g.permissions[n]) allowed[n] = true;
    }
  }
  return allowed;
}
