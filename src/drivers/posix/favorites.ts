/**
 * Favorites of the POSIX driver: per user, one folder `<root>/.stowage/favorites/<user>/` holding
 * one symlink per marked resource, named `<space id>!<opaque id>` (both percent-encoded). Marking
 * and unmarking are one `symlink` or `unlink` each: atomic, and safe between processes without a
 * lock. Reading a user's marks is one `readdir`, kept until the folder's mtime moves.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import fsp from 'node:fs/promises';
import { StorageError } from '../../core/errors.js';
import type { ResourceId } from '../../core/types.js';
import { isMissing } from './util.js';

/** What a link points at: nothing is read from it, it only says what it is to a human. */
const LINK_TEXT = 'stowage-favorite';

/**
 * How long after a folder's last change its mtime is not trusted to show the next one: another
 * process's change in the same clock tick of the filesystem would leave it as it was (git's "racy"
 * index entries, the same problem).
 */
const RACY_MS = 2000;

const NONE: ReadonlyMap<string, string> = new Map();

/** A user id as a folder name: as it is when plainly safe, else `~` and its sha256. */
export function userFolderName(user: string): string {
  if (/^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}$/.test(user)) return user;
  return `~${createHash('sha256').update(user).digest('hex')}`;
}

/** An id part as part of a file name: percent-encoded, with `.` and `!` too (never `.`/`..`, never the separator). */
function enc(s: string): string {
  return encodeURIComponent(s).replace(/[!.*'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function entryName(id: ResourceId): string {
  if (!id.spaceId || !id.opaqueId || id.spaceId.includes('\0') || id.opaqueId.includes('\0'))
    throw new StorageError('INVALID_ARGUMENT', 'invalid resource id');
  const name = `${enc(id.spaceId)}!${enc(id.opaqueId)}`;
  if (Buffer.byteLength(name) > 255)
    throw new StorageError('INVALID_ARGUMENT', 'resource id too long to mark as a favorite', {
      reason: 'name-too-long',
    });
  return name;
}

/** The ids an entry's name stands for; undefined for anything not written by {@link entryName}. */
function parseEntry(name: string): { spaceId: string; opaqueId: string } | undefined {
  const bang = name.indexOf('!');
  if (bang <= 0) return undefined;
  try {
    const id = {
      spaceId: decodeURIComponent(name.slice(0, bang)),
      opaqueId: decodeURIComponent(name.slice(bang + 1)),
    };
    // (a stray file, or one spelled differently from how marks are named, is not one)
    return entryName({ storageId: '', ...id }) === name ? id : undefined;
  } catch {
    return undefined;
  }
}

/** The favorites folders of one storage root. */
export class PosixFavorites {
  private readonly kept = new Map<
    string,
    { ino: bigint; mtimeNs: bigint; trusted: boolean; marks: ReadonlyMap<string, string> }
  >();

  constructor(
    private readonly root: string,
    private readonly durable: boolean,
    private readonly syncDir: (dir: string) => Promise<void>,
  ) {}

  private dir(user: string): string {
    if (!user || user.includes('\0')) throw new StorageError('INVALID_ARGUMENT', 'invalid user id');
    return `${this.root}/.stowage/favorites/${userFolderName(user)}`;
  }

  async set(user: string, id: ResourceId, on: boolean): Promise<void> {
    try {
      await this.setImpl(user, id, on);
    } catch (err) {
      // (not the resource's fault, nor the caller's: something else where the marks are kept)
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR')
        throw new StorageError('INTERNAL', `the favorites of ${user} cannot be kept: not a folder on disk`, {
          cause: err,
        });
      throw err;
    }
  }

  private async setImpl(user: string, id: ResourceId, on: boolean): Promise<void> {
    const dir = this.dir(user);
    const file = `${dir}/${entryName(id)}`;
    this.kept.delete(user);
    if (on) {
      try {
        await fsp.symlink(LINK_TEXT, file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return;
        if (code !== 'ENOENT') throw err;
        // (who marked what is for Stowage to tell, not for other accounts on the machine)
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        if (this.durable) {
          await this.syncDir(`${this.root}/.stowage`);
          await this.syncDir(`${this.root}/.stowage/favorites`);
        }
        await fsp.symlink(LINK_TEXT, file).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
      }
    } else {
      try {
        await fsp.unlink(file);
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
    }
    if (this.durable) await this.syncDir(dir);
  }

  /** Drop every user's marks of a space's resources (the space is gone). */
  forgetSpace(spaceId: string): Promise<void> {
    const prefix = `${enc(spaceId)}!`;
    return this.drop((names) => names.filter((n) => n.startsWith(prefix)));
  }

  /**
   * Drop every user's marks of resources gone for good (purged from the trash, deleted where
   * there is none, found missing by `fsck`).
   */
  async forget(spaceId: string, ids: ReadonlySet<string>): Promise<void> {
    const wanted = new Set<string>();
    for (const id of ids) {
      try {
        wanted.add(entryName({ storageId: '', spaceId, opaqueId: id }));
      } catch {
        // (an id no mark can have)
      }
    }
    if (wanted.size) await this.drop((names) => names.filter((n) => wanted.has(n)));
  }

  /** Unlink, in every user's folder, the marks `pick` chooses from its names. */
  private async drop(pick: (names: string[]) => string[]): Promise<void> {
    const top = `${this.root}/.stowage/favorites`;
    const users = await fsp.readdir(top).catch((err) => (isMissing(err) ? [] : Promise.reject(err)));
    for (const u of users) {
      const gone = pick(await fsp.readdir(`${top}/${u}`).catch(() => [] as string[]));
      for (const n of gone) await fsp.unlink(`${top}/${u}/${n}`).catch(() => {});
      if (gone.length && this.durable) await this.syncDir(`${top}/${u}`);
    }
    this.kept.clear();
  }

  /** Every user's marks of one space, as stored (for `fsck`). */
  async *marksOf(spaceId: string): AsyncGenerator<{ opaqueId: string; file: string }> {
    const top = `${this.root}/.stowage/favorites`;
    const users = await fsp.readdir(top).catch((err) => (isMissing(err) ? [] : Promise.reject(err)));
    for (const u of users) {
      for (const name of await fsp.readdir(`${top}/${u}`).catch(() => [] as string[])) {
        const id = parseEntry(name);
        if (id?.spaceId === spaceId) yield { opaqueId: id.opaqueId, file: `${top}/${u}/${name}` };
      }
    }
  }

  async list(user: string): Promise<ReadonlyMap<string, string>> {
    const dir = this.dir(user);
    let st: BigIntStats;
    try {
      st = await fsp.stat(dir, { bigint: true });
    } catch (err) {
      if (isMissing(err)) {
        this.kept.delete(user);
        return NONE;
      }
      throw err;
    }
    const k = this.kept.get(user);
    if (k?.trusted && k.ino === st.ino && k.mtimeNs === st.mtimeNs) return k.marks;
    const readAt = Date.now();
    const marks = new Map<string, string>();
    for (const name of await fsp.readdir(dir).catch((err) => (isMissing(err) ? [] : Promise.reject(err)))) {
      const id = parseEntry(name);
      if (id) marks.set(id.opaqueId, id.spaceId);
    }
    // Same marks as the kept ones: hand back the same object (callers tell changes by identity).
    const same = k && k.marks.size === marks.size && [...marks].every(([o, s]) => k.marks.get(o) === s);
    const out = same ? k.marks : marks;
    const trusted = readAt - Number(st.mtimeNs / 1_000_000n) > RACY_MS;
    this.kept.set(user, { ino: st.ino, mtimeNs: st.mtimeNs, trusted, marks: out });
    if (this.kept.size > 10_000) this.kept.delete(this.kept.keys().next().value!);
    return out;
  }
}
