/**
 * The per-space commit lock: an in-process queue plus `flock` on `<space>/.stowage/lock`, so commits
 * are serialised across every process on the machine (and across CephFS clients, where flock is
 * cluster-wide). Only the short metadata commit runs under it; bodies stream outside.
 *
 * The lock file doubles as a one-entry intent journal: before a commit's first mutation it records
 * which folders the commit touches (and how to undo a half-done replace). The next holder of the lock
 * finds a leftover intent only if the previous holder died mid-commit, and repairs exactly those
 * folders. Since the lock is exclusive there is never more than one intent.
 *
 * @module
 */
import fs from 'node:fs';
import { StorageError } from '../../core/errors.js';
import type { Native } from './native.js';

/** What a commit is about to change, so that a crash can be repaired. Paths are space-relative segments. */
export interface Intent {
  /** Folders whose tree size (and their ancestors') must be recomputed after a crash. */
  dirs: string[][];
  /** Renames to undo when their destination is still missing (a replace that moved the old node aside). */
  undo?: { from: string[]; to: string[] }[];
}

/** Handle passed to a commit: record the intent before the first mutation. */
export interface Journal {
  begin(intent: Intent): void;
}

const MAX_INTENT = 1 << 20;

/** Serialises commits of one space within and across processes. */
export class CommitLock {
  private fd: number | undefined;
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly native: Native,
    private readonly file: string,
    private readonly recover: (intent: Intent) => Promise<void>,
    private readonly timeoutMs = 60_000,
  ) {}

  /** Run `fn` holding the lock. If `fn` fails after recording an intent, the intent is repaired at once. */
  async run<T>(fn: (journal: Journal) => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => {
      release = r;
    });
    await prev;
    try {
      if (this.closed) throw new StorageError('UNAVAILABLE', 'driver is closed');
      const fd = this.open();
      await this.acquire(fd);
      try {
        const leftover = this.readIntent(fd);
        if (leftover) {
          await this.recover(leftover);
          this.writeIntent(fd, undefined);
        }
        let active: Intent | undefined;
        const journal: Journal = {
          begin: (intent) => {
            active = intent;
            this.writeIntent(fd, intent);
          },
        };
        try {
          return await fn(journal);
        } catch (err) {
          if (active) await this.recover(active);
          throw err;
        } finally {
          if (active) this.writeIntent(fd, undefined);
        }
      } finally {
        this.native.unlock(fd);
      }
    } finally {
      release();
    }
  }

  private open(): number {
    this.fd ??= fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    return this.fd;
  }

  private async acquire(fd: number): Promise<void> {
    if (this.native.tryLock(fd, true)) return;
    const deadline = Date.now() + this.timeoutMs;
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
    const buf = Buffer.alloc(4096);
    let n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n === 0 || buf[0] === 0x0a) return undefined;
    let data = buf.subarray(0, n);
    while (!data.includes(0x0a) && n === 4096 && data.length < MAX_INTENT) {
      const more = Buffer.alloc(65536);
      n = fs.readSync(fd, more, 0, more.length, data.length);
      if (n === 0) break;
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

  /** Wait for running commits, then release the lock file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}
