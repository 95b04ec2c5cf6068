/**
 * The per-space commit lock: an in-process queue plus `flock` on `<space>/.stowage/lock`, so commits
 * are serialised across every process on the machine (and across CephFS clients, where flock is
 * cluster-wide). Only the short metadata commit runs under it; bodies stream outside.
 *
 * The lock file doubles as a one-entry intent journal: before a commit's first mutation it records
 * which folders the commit touches (and how to undo a half-done replace). The next holder of the lock
 * finds a leftover intent only if the previous holder died mid-commit, and repairs exactly those
 * folders. Since the lock is exclusive there is never more than one intent. An intent whose repair
 * fails stays on disk: it is never silently dropped.
 *
 * The lock file is opened for each commit and closed after it, so a process serving thousands of
 * spaces holds no file descriptors for idle ones.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { StorageError } from '../../core/errors.js';
import type { Native } from './native.js';

/** What a commit is about to change, so that a crash can be repaired. Paths are space-relative segments. */
export interface Intent {
  /** Folders whose tree size (and their ancestors') must be recomputed after a crash. */
  dirs: string[][];
  /**
   * Renames to undo when their destination is still missing (a replace that moved the old node
   * aside). `from` is relative to the space's internal folder (`tmp/…`, `trash/…`, `versions/…`).
   */
  undo?: { from: string[]; to: string[] }[];
  /** Recount the bytes in trash and versions (the commit moved some in or out). */
  totals?: boolean;
  /** Nodes that may have moved: if the node at `at` carries `id`, its parent id and index entry are rewritten. */
  nodes?: { id: string; at: string[] }[];
  /** Files whose record may hold a modification time not set on them yet (`pm`): it is set. */
  times?: string[][];
  /**
   * Files whose record may hold a modification time (`pm`) of a change that did not happen (a
   * move that never renamed the file): it is dropped. Handled before `times`.
   */
  untimed?: string[][];
}

/** Handle passed to a commit: record the intent before the first mutation. */
export interface Journal {
  begin(intent: Intent): void;
  /** A dead commit's intent that was not repaired (only with `recover: false`). */
  readonly leftover?: Intent;
  /** Drop the leftover intent once the caller repaired what it covers. */
  clearLeftover(): void;
}

/** Options of {@link CommitLock.run}. */
export interface RunOptions {
  /** Repair a dead commit's intent before `fn` (default true). False hands it to `fn` instead. */
  recover?: boolean;
}

const MAX_INTENT = 1 << 20;

/** Serialises commits of one space within and across processes. */
export class CommitLock {
  private tail: Promise<void> = Promise.resolve();
  /** Commits of this process queued or running (0: the tail has settled). */
  private queued = 0;
  private closed = false;
  /** Where the intent is read (commits run one at a time). */
  private readonly intentBuf = Buffer.allocUnsafe(4096);

  constructor(
    private readonly native: Native,
    private readonly file: string,
    private readonly recover: (intent: Intent) => Promise<void>,
    private readonly timeoutMs = 60_000,
  ) {}

  /** Run `fn` holding the lock. If `fn` fails after recording an intent, the intent is repaired at once. */
  async run<T>(fn: (journal: Journal) => Promise<T>, opts: RunOptions = {}): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    const prev = this.tail;
    const idle = this.queued++ === 0;
    let released = false;
    let settle!: () => void;
    this.tail = new Promise((r) => {
      settle = r;
    });
    const release = () => {
      if (released) return;
      released = true;
      this.queued--;
      settle();
    };
    try {
      // (nothing before us: no timer to set and clear)
      await (idle ? prev : waitUntil(prev, deadline));
    } catch (err) {
      // Give up our place, but only after those before us are done, so the queue stays ordered.
      void prev.then(release, release);
      throw err;
    }
    let fd: number | undefined;
    try {
      if (this.closed) throw new StorageError('UNAVAILABLE', 'driver is closed');
      fd = this.open();
      await this.acquire(fd, deadline);
      let leftover = this.readIntent(fd);
      if (leftover && opts.recover !== false) {
        try {
          await this.recover(leftover);
        } catch (err) {
          throw new StorageError(
            'UNAVAILABLE',
            `a commit that died half way could not be repaired (${(err as Error).message}); run stowage fsck --repair`,
            { cause: err },
          );
        }
        this.writeIntent(fd, undefined);
        leftover = undefined;
      }
      let active: Intent | undefined;
      let keep = false;
      const openFd = fd;
      const journal: Journal = {
        begin: (intent) => {
          active = intent;
          this.writeIntent(openFd, intent);
        },
        ...(leftover && { leftover }),
        clearLeftover: () => {
          if (!active) this.writeIntent(openFd, undefined);
        },
      };
      try {
        return await fn(journal);
      } catch (err) {
        if (active) {
          try {
            await this.recover(active);
          } catch {
            keep = true; // the next holder (or fsck) tries again
          }
        }
        throw err;
      } finally {
        if (active && !keep) this.writeIntent(fd, undefined);
      }
    } finally {
      if (fd !== undefined) {
        this.native.unlock(fd);
        fs.closeSync(fd);
      }
      release();
    }
  }

  private open(): number {
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT;
    try {
      return fs.openSync(this.file, flags, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The folder holding the lock was removed around us (an admin cleaning up): recreate it.
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      return fs.openSync(this.file, flags, 0o600);
    }
  }

  private async acquire(fd: number, deadline: number): Promise<void> {
    if (this.native.tryLock(fd, true)) return;
    let delay = 1;
    for (;;) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.native.tryLock(fd, true)) return;
      if (Date.now() > deadline) {
        throw new StorageError(
          'UNAVAILABLE',
          `space is busy: commit lock not acquired within ${this.timeoutMs} ms`,
        );
      }
      delay = Math.min(delay * 2, 25);
    }
  }

  private readIntent(fd: number): Intent | undefined {
    const buf = this.intentBuf;
    let n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n === 0 || buf[0] === 0x0a) return undefined;
    let data = Buffer.from(buf.subarray(0, n));
    while (!data.includes(0x0a) && n > 0 && data.length < MAX_INTENT) {
      const more = Buffer.alloc(65536);
      n = fs.readSync(fd, more, 0, more.length, data.length);
      data = Buffer.concat([data, more.subarray(0, n)]);
    }
    const end = data.indexOf(0x0a);
    try {
      const intent = JSON.parse(data.subarray(0, end < 0 ? data.length : end).toString('utf8')) as Intent;
      return Array.isArray(intent.dirs) ? intent : undefined;
    } catch {
      return undefined;
    }
  }

  private writeIntent(fd: number, intent: Intent | undefined): void {
    const buf = Buffer.from(intent ? `${JSON.stringify(intent)}\n` : '\n', 'utf8');
    fs.writeSync(fd, buf, 0, buf.length, 0);
  }

  /** Wait for running commits; later calls fail with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
  }
}

async function waitUntil(p: Promise<void>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StorageError('UNAVAILABLE', 'space is busy: too many commits queued in this process')),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
