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
