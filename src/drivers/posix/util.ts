/**
 * Small helpers of the POSIX driver.
 *
 * @module
 */
import fsp from 'node:fs/promises';

/**
 * Map an async iterable with bounded concurrency, yielding results in input order. `fn` may return
 * undefined to drop an item. Stops pulling input when the consumer stops.
 */
export async function* mapOrdered<T, R>(
  input: AsyncIterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<R | undefined>,
): AsyncGenerator<R> {
  const it = input[Symbol.asyncIterator]();
  const window: Promise<R | undefined>[] = [];
  let done = false;
  try {
    for (;;) {
      while (!done && window.length < concurrency) {
        const next = await it.next();
        if (next.done) {
          done = true;
          break;
        }
        const p = fn(next.value);
        p.catch(() => {}); // handled when awaited in order
        window.push(p);
      }
      const head = window.shift();
      if (head === undefined) return;
      const r = await head;
      if (r !== undefined) yield r;
    }
  } finally {
    await Promise.allSettled(window);
    if (!done) await it.return?.();
  }
}

/**
 * fsync of folders, coalesced: concurrent requests for the same folder share one fsync that
 * started after all of them were made.
 */
export class DirSyncer {
  private readonly state = new Map<string, { running: Promise<void>; queued?: Promise<void> }>();

  sync(dir: string): Promise<void> {
    const entry = this.state.get(dir);
    if (entry) {
      entry.queued ??= entry.running.then(
        () => this.run(dir),
        () => this.run(dir),
      );
      return entry.queued;
    }
    const fresh: { running: Promise<void>; queued?: Promise<void> } = { running: this.run(dir) };
    this.state.set(dir, fresh);
    const settle = (): void => {
      if (fresh.queued) {
        fresh.running = fresh.queued;
        fresh.queued = undefined;
        fresh.running.then(settle, settle);
      } else {
        this.state.delete(dir);
      }
    };
    fresh.running.then(settle, settle);
    return fresh.running;
  }

  private async run(dir: string): Promise<void> {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

/** Seconds for fs.utimes from milliseconds, nudged so libuv's truncation to microseconds lands exactly. */
export function toUtimeSeconds(ms: number): number {
  return ms / 1000 + 5e-7;
}

/** True for errno codes that mean "it is not there". */
export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * A path this long (bytes) is not gone deeper into by path: a name below it (at most 255 bytes)
 * still makes one the kernel takes (PATH_MAX, 4096 bytes), but a few more levels would not. A
 * tree deeper than that is made by moving a deep tree into another deep folder (rename takes
 * only the two folders' own paths).
 */
export const DEEP_PATH_BYTES = 3072;

/** Is `abs` too long a path to go deeper into (see {@link DEEP_PATH_BYTES})? */
export function tooDeep(abs: string): boolean {
  return abs.length > DEEP_PATH_BYTES / 3 && Buffer.byteLength(abs) > DEEP_PATH_BYTES;
}

/**
 * Remove a tree whatever its depth. `fs.rm` goes by path, and a path past PATH_MAX cannot be
 * named: a folder found too deep is first moved up to `aside()` (a fresh path next to the tree,
 * named so a crash leaves it to be removed at the next start), a tree of short paths of its own.
 */
export async function removeTree(abs: string, aside: () => string): Promise<void> {
  const trees = [abs];
  while (trees.length) {
    const tree = trees.pop()!;
    try {
      await fsp.rm(tree, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENAMETOOLONG') throw err;
      // (what went before the failure is gone; the rest is cut into trees of short paths)
      let moved = 0;
      const cut = async (dir: string): Promise<void> => {
        for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
          if (!entry.isDirectory()) continue;
          const p = `${dir}/${entry.name}`;
          if (tooDeep(p)) {
            const up = aside();
            await fsp.rename(p, up);
            trees.push(up);
            moved++;
          } else await cut(p);
        }
      };
      await cut(tree);
      if (!moved) throw err;
      trees.push(tree);
    }
  }
}
