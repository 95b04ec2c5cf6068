/**
 * The id -> path index of one space: a cache, never the truth. Each entry is a symlink
 * `<space>/.stowage/ids/<id:2>/<id>` whose target text is `<parent id>/<path from the space root>`
 * (never followed, only read with readlink). Lookups are one readlink, flat in the number of files;
 * writers replace entries atomically (symlink + rename), so several processes share it safely.
 * An in-process LRU in front saves even the readlink. Every hit is verified by the caller against the
 * id stored on the node itself; stale entries fall back to the parent's entry, then to a scan.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';

/** What an entry says about an id. */
export interface IndexEntry {
  parent: string;
  /** Path from the space root, segments joined with `/`. */
  rel: string;
}

/**
 * Where ids were last seen, for every space of a process: one cache with one bound, so memory does
 * not grow with the number of spaces. Entries live in scopes (a space in one generation), so a
 * lookup hashes only the id, and a scope is dropped whole when its space forgets everything. When
 * full, the oldest entry of the least recently written scope goes (a refresh on every read cost more than it saved
 * in listings of large folders).
 */
export class PathCache<V = string> {
  private readonly scopes = new Map<string, Map<string, V>>();
  private size = 0;
  constructor(private readonly max = 200_000) {}

  get(scope: string, key: string): V | undefined {
    return this.scopes.get(scope)?.get(key);
  }

  set(scope: string, key: string, value: V): void {
    let m = this.scopes.get(scope);
    if (!m) {
      m = new Map();
      this.scopes.set(scope, m);
    }
    const had = m.get(key);
    if (had === value) return;
    if (had === undefined) {
      this.size++;
      // The scope written to last goes last: eviction takes from the least recently written.
      this.scopes.delete(scope);
      this.scopes.set(scope, m);
    } else m.delete(key);
    m.set(key, value);
    while (this.size > this.max) this.evictOne();
  }

  delete(scope: string, key: string): void {
    const m = this.scopes.get(scope);
    if (!m?.delete(key)) return;
    this.size--;
    if (m.size === 0) this.scopes.delete(scope);
  }

  /** Forget a scope whole. */
  drop(scope: string): void {
    const m = this.scopes.get(scope);
    if (!m) return;
    this.size -= m.size;
    this.scopes.delete(scope);
  }

  private evictOne(): void {
    const first = this.scopes.entries().next().value;
    if (!first) return;
    const [scope, m] = first;
    const oldest = m.keys().next().value;
    if (oldest !== undefined) this.delete(scope, oldest);
    else this.scopes.delete(scope);
  }
}

/**
 * The same facts read backwards (path -> id), for the observer: a node removed around Stowage is
 * named by its path alone, and the id it had is found here when it was seen recently. Bounded like
 * {@link PathCache}; every answer is checked against the forward entry.
 */
export const seenAt = new PathCache();

/** What was last seen at a path (see {@link shapeAt}). */
interface Shape {
  readonly id: string;
  readonly folder: boolean;
  /** A file's creation time, when its record has one. */
  readonly bt: number | undefined;
}

/**
 * Paths last seen holding a plain file (one name) or a folder, with its id (and a file's creation
 * time): what a file renamed over a plain file may take over (see PosixSpace.replacedHeld), and
 * what a node of a new identity made there displaced (PosixSpace.displacedHeld). A hard link seen
 * there last leaves no entry (its id lives on under its other names).
 */
export const shapeAt = new PathCache<Shape>();

let generations = 0;

/** The per-space id index. */
export class IdIndex {
  /** Bumped to forget everything this space has in the shared cache at once; never reused. */
  private generation = ++generations;
  /** This space in this generation, as a scope of the caches. */
  private scope: string;

  constructor(
    readonly dir: string,
    private readonly cache: PathCache,
    private readonly spaceId: string,
    /** Whether to use synchronous syscalls (local filesystems: faster than a thread-pool hop). */
    private readonly sync: () => boolean = () => false,
  ) {
    this.scope = `${spaceId}:${this.generation}`;
  }

  private file(id: string): string {
    return `${this.dir}/${id.slice(0, 2)}/${id}`;
  }

  /** The path last seen for `id` in this process, if any. */
  cached(id: string): string | undefined {
    return this.cache.get(this.scope, id);
  }

  /** Remember where `id` was seen (memory only). */
  remember(id: string, rel: string): void {
    this.cache.set(this.scope, id, rel);
    seenAt.set(this.scope, rel, id);
  }

  /** The id last seen at `rel` in this process, if that is still where it was seen last. */
  cachedAt(rel: string): string | undefined {
    const id = seenAt.get(this.scope, rel);
    return id !== undefined && this.cached(id) === rel ? id : undefined;
  }

  /**
   * Note what was seen at `rel` (memory only): a plain file (`st` a file with one link) or a
   * folder is remembered with its id, and a file with its creation time too (what a file renamed
   * over it takes over with the id); anything else clears what was remembered there.
   */
  noteShape(
    rel: string,
    rec: { readonly id: string; readonly bt?: number },
    st: { isFile(): boolean; isDirectory(): boolean; nlink: number },
  ): void {
    const folder = st.isDirectory();
    if (!folder && !(st.isFile() && st.nlink === 1)) {
      shapeAt.delete(this.scope, rel);
      return;
    }
    const bt = folder ? undefined : rec.bt;
    // Listings note every entry each time: what is already noted costs a lookup, not an object.
    const had = shapeAt.get(this.scope, rel);
    if (had && had.id === rec.id && had.folder === folder && had.bt === bt) return;
    shapeAt.set(this.scope, rel, { id: rec.id, folder, bt });
  }

  /**
   * The plain file or folder last seen at `rel`, if its id is still the one last seen there (a
   * later sighting elsewhere, or of another id there, voids it).
   */
  lastShapeAt(rel: string): Shape | undefined {
    const v = shapeAt.get(this.scope, rel);
    return v !== undefined && this.cachedAt(rel) === v.id ? v : undefined;
  }

  /** The plain file last seen at `rel` (its id, and creation time when known), if its id is still the one last seen there. */
  plainFileAt(rel: string): Shape | undefined {
    const last = this.lastShapeAt(rel);
    return last && !last.folder ? last : undefined;
  }

  /** Forget `id` in memory. */
  forget(id: string): void {
    this.cache.delete(this.scope, id);
  }

  /** Forget everything in memory for this space (after a folder moved, paths below it are stale). */
  forgetAll(): void {
    this.cache.drop(this.scope);
    seenAt.drop(this.scope);
    shapeAt.drop(this.scope);
    this.generation = ++generations;
    this.scope = `${this.spaceId}:${this.generation}`;
  }

  /** Read the persisted entry. */
  async read(id: string): Promise<IndexEntry | undefined> {
    let target: string;
    try {
      target = await fsp.readlink(this.file(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const slash = target.indexOf('/');
    if (slash <= 0) return undefined;
    return { parent: target.slice(0, slash), rel: target.slice(slash + 1) };
  }

  /** Persist `id -> (parent, rel)`, replacing any previous entry atomically. */
  async write(id: string, parent: string, rel: string): Promise<void> {
    const target = `${parent}/${rel}`;
    this.remember(id, rel);
    const file = this.file(id);
    const shard = `${this.dir}/${id.slice(0, 2)}`;
    const sync = this.sync();
    const symlink = sync ? async (t: string, p: string) => fs.symlinkSync(t, p) : fsp.symlink;
    const rename = sync ? async (a: string, b: string) => fs.renameSync(a, b) : fsp.rename;
    // A new entry is one symlink (created whole or not at all); replacing one goes through a
    // temporary link renamed over it.
    let tmp: string | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        if (tmp === undefined) await symlink(target, file);
        else {
          await symlink(target, tmp);
          await rename(tmp, file);
        }
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' && tmp === undefined) {
          tmp = `${shard}/.tmp-${randomBytes(6).toString('hex')}`;
          continue;
        }
        if (code === 'ENOENT' && attempt < 2) {
          if (sync) fs.mkdirSync(shard, { recursive: true });
          else await fsp.mkdir(shard, { recursive: true });
          continue;
        }
        if (tmp !== undefined) await fsp.unlink(tmp).catch(() => {});
        throw err;
      }
    }
  }

  /** Remove the entry (memory and disk). */
  async remove(id: string): Promise<void> {
    this.forget(id);
    await fsp.unlink(this.file(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** Every persisted id with its entry file's mtime (for garbage collection after a full scan). */
  async *entries(): AsyncGenerator<{ id: string; mtimeMs: number }> {
    let shards: string[];
    try {
      shards = await fsp.readdir(this.dir);
    } catch {
      return;
    }
    for (const shard of shards) {
      let names: string[];
      try {
        names = await fsp.readdir(`${this.dir}/${shard}`);
      } catch {
        continue;
      }
      for (const name of names) {
        if (name.startsWith('.tmp-')) continue;
        try {
          const st = await fsp.lstat(`${this.dir}/${shard}/${name}`);
          yield { id: name, mtimeMs: st.mtimeMs };
        } catch {
          // removed meanwhile
        }
      }
    }
  }
}
