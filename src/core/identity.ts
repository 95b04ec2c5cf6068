/**
 * Users and groups come from a pluggable identity source. The default is a static list (in code or
 * a JSON file). Passwords are kept as scrypt hashes; a plaintext `password` in a config is hashed
 * when loaded and never kept.
 *
 * @module
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { StorageError } from './errors.js';
import type { Principal } from './permissions.js';

const scrypt = promisify(scryptCb) as (
  pw: string,
  salt: Buffer,
  len: number,
  opts: object,
) => Promise<Buffer>;

/** A user. */
export interface User {
  /** Stable opaque id (CS3 `opaque_id`). */
  id: string;
  /** Login name; also the name of the personal space (`personal/<username>`). */
  username: string;
  displayName?: string;
  email?: string;
  /** Ids of the groups the user belongs to. */
  groups?: string[];
  /** Identity provider (CS3 `idp`). */
  idp?: string;
  /** May manage every space: create project spaces, disable, restore, delete, set quotas. */
  admin?: boolean;
  /** May create project spaces without being an admin. */
  createSpaces?: boolean;
}

/** A group. */
export interface Group {
  id: string;
  name: string;
}

/** Where users and groups come from. */
export interface IdentitySource {
  /** A user by id or username, or undefined. */
  getUser(idOrUsername: string): Promise<User | undefined>;
  /** A group by id, or undefined. */
  getGroup(id: string): Promise<Group | undefined>;
  /** The user whose password this is, or undefined (for HTTP Basic auth). */
  authenticate(username: string, password: string): Promise<User | undefined>;
}

/** A user as given to {@link StaticIdentitySource}: a password (hashed on load) or a hash. */
export interface StaticUser extends User {
  password?: string;
  /** `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`, see {@link hashPassword}. */
  passwordHash?: string;
}

const N = 16384;
const R = 8;
const P = 1;

/** Hash a password for storage. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, 32, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Check a password against a stored hash, in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const want = Buffer.from(hash, 'base64');
  const got = await scrypt(password, Buffer.from(salt, 'base64'), want.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 256 * Number(n) * Number(r) + 1024 * 1024,
  });
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Users and groups from a list (in code, or loaded from JSON). */
export class StaticIdentitySource implements IdentitySource {
  private readonly byId = new Map<string, User>();
  private readonly byName = new Map<string, User>();
  private readonly hashes = new Map<string, string>();
  private readonly groups = new Map<string, Group>();
  // Checked against when a username is unknown, so a miss costs as much as a hit.
  private readonly decoy: Promise<string> = hashPassword(randomBytes(12).toString('hex'));

  private constructor() {}

  /** Build a source; plaintext passwords are hashed now. */
  static async create(input: { users?: StaticUser[]; groups?: Group[] } = {}): Promise<StaticIdentitySource> {
    const src = new StaticIdentitySource();
    for (const g of input.groups ?? []) {
      if (!g.id || !g.name) throw new StorageError('INVALID_ARGUMENT', 'a group needs an id and a name');
      src.groups.set(g.id, { id: g.id, name: g.name });
    }
    for (const u of input.users ?? []) await src.add(u);
    return src;
  }

  /** Load `{ users: [...], groups: [...] }` from a JSON file. */
  static async fromFile(file: string): Promise<StaticIdentitySource> {
    let data: unknown;
    try {
      data = JSON.parse(await fs.readFile(file, 'utf8'));
    } catch (err) {
      throw new StorageError('INVALID_ARGUMENT', `cannot read users from ${file}: ${(err as Error).message}`);
    }
    return StaticIdentitySource.create(data as { users?: StaticUser[]; groups?: Group[] });
  }

  /** Add (or replace) a user. */
  async add(u: StaticUser): Promise<User> {
    if (!u?.id || !u.username)
      throw new StorageError('INVALID_ARGUMENT', 'a user needs an id and a username');
    const { password, passwordHash, ...user } = u;
    const existing = this.byId.get(user.id);
    if (existing) this.byName.delete(existing.username);
    const clean: User = { ...user, groups: [...(user.groups ?? [])] };
    this.byId.set(clean.id, clean);
    this.byName.set(clean.username, clean);
    if (passwordHash) this.hashes.set(clean.id, passwordHash);
    // An empty password is no password: the user signs in some other way (tokens), never with "".
    else if (password) this.hashes.set(clean.id, await hashPassword(password));
    return clean;
  }

  /** Remove a user (a person leaving). Their spaces and grants stay where they are. */
  remove(idOrUsername: string): boolean {
    const u = this.byId.get(idOrUsername) ?? this.byName.get(idOrUsername);
    if (!u) return false;
    this.byId.delete(u.id);
    this.byName.delete(u.username);
    this.hashes.delete(u.id);
    return true;
  }

  async getUser(idOrUsername: string): Promise<User | undefined> {
    return this.byId.get(idOrUsername) ?? this.byName.get(idOrUsername);
  }

  async getGroup(id: string): Promise<Group | undefined> {
    return this.groups.get(id);
  }

  async authenticate(username: string, password: string): Promise<User | undefined> {
    const u = this.byName.get(username);
    const hash = u ? this.hashes.get(u.id) : undefined;
    const ok = await verifyPassword(password, hash ?? (await this.decoy));
    return ok && u && hash ? u : undefined;
  }
}

/** The principal a user acts as. */
export function principalOf(user: User): Principal {
  return {
    userId: user.id,
    groups: user.groups ?? [],
    ...(user.admin && { admin: true }),
    ...(user.createSpaces && { createSpaces: true }),
  };
}
