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
import fsp from 'node:fs/promises';

/** What an entry says about an id. */
export interface IndexEntry {
  parent: string;
  /** Path from the space root, segments joined with `/`. */
  rel: string;
}

/** The per-space id index. */
export class IdIndex {
  private readonly lru = new Map<string, string>();

  constructor(
    readonly dir: string,
    private readonly max = 100_000,
  ) {}

  private file(id: string): string {
    return `${this.dir}/${id.slice(0, 2)}/${id}`;
  }

  /**
   * The path last seen for `id` in this process, if any. Eviction is by insertion order (a refresh on
   * every read cost more than it saved in listings of large folders).
   */
  cached(id: string): string | undefined {
    return this.lru.get(id);
  }

  /** Remember where `id` was seen (memory only). */
  remember(id: string, rel: string): void {
    if (this.lru.get(id) === rel) return;
    this.lru.delete(id);
    this.lru.set(id, rel);
    if (this.lru.size > this.max) {
      const oldest = this.lru.keys().next().value;
      if (oldest !== undefined) this.lru.delete(oldest);
    }
  }

  /** Forget `id` in memory. */
  forget(id: string): void {
    this.lru.delete(id);
  }

  /** Forget everything in memory (after a folder move, cached paths below it are stale). */
  forgetAll(): void {
    this.lru.clear();
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
    const tmp = `${this.dir}/${id.slice(0, 2)}/.tmp-${randomBytes(6).toString('hex')}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.symlink(target, tmp);
        await fsp.rename(tmp, file);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && attempt === 0) {
          await fsp.mkdir(`${this.dir}/${id.slice(0, 2)}`, { recursive: true });
          continue;
        }
        await fsp.unlink(tmp).catch(() => {});
        throw err;
      }
    }
  }

  /** Remove the entry (memory and disk). */
  async remove(id: string): Promise<void> {
    this.lru.delete(id);
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
