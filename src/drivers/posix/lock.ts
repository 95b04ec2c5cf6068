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
 * A process that finds the lock taken waits by trying again every few ms (flock cannot be waited
 * for without tying up a thread), and says that it waits with a shared flock on `<lock>-wait`.
 * A release wakes them at once (it writes a byte to the wait file, which they watch), and a
 * process with commits back to back (an import, a busy server) lets them in after 10 ms of its
 * own: before, it took the lock again at once after each commit, and another process's writes
 * waited for seconds, up to the timeout. A waiter that leaves the lock free for 20 ms (stopped,
 * stalled) is not waited for again for a while (50 ms, doubling up to a second while it lasts).
 * The wait file exists only while some process waits (it gets the lock file's mode and owner);
 * otherwise a release costs one `access` more.
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
/** Longest pause between two tries of a process waiting for the lock, ms. */
const MAX_POLL_MS = 4;
/** How long a process that had its share of the lock lets waiters of other processes go first, at most, ms. */
const MAX_YIELD_MS = 200;
/** A commit that asks for the lock within this long after this process let go of it follows on, ms. */
const BACK_TO_BACK_MS = 1;
/** How long a process keeps the lock for commits back to back while others wait, ms. */
const BURST_MS = 10;
/** How long a yielding process waits for a waiter to take the free lock before it takes it back, ms. */
const YIELD_GRACE_MS = 20;
/** How long nobody is let in first after a waiter left the lock free, ms: doubled each time again. */
const MIN_STALLED_MS = 50;
/** The most that grows to, ms. */
const MAX_STALLED_MS = 1000;
/** What a release writes to the wait file to wake the waiters. */
const RING = Buffer.from('\n');

/** Serialises commits of one space within and across processes. */
export class CommitLock {
  private tail: Promise<void> = Promise.resolve();
  /** Commits of this process queued or running (0: the tail has settled). */
  private queued = 0;
  private closed = false;
  /** Where the intent is read (commits run one at a time). */
  private readonly intentBuf = Buffer.allocUnsafe(4096);

  /** Where processes waiting for the lock hold a shared flock (see the module's notes). */
  private readonly waitFile: string;
  /** When this process took the lock after a pause (its current run of commits back to back began). */
  private heldSince = Number.NEGATIVE_INFINITY;
  /** When this process last let go of the lock. */
  private releasedAt = Number.NEGATIVE_INFINITY;
  /** Whether the last look at the wait file found processes waiting. */
  private waitersSeen = false;
  /** Until when waiters are not let in first (one left the lock free: see acquire). */
  private stalledUntil = Number.NEGATIVE_INFINITY;
  /** How long that was, the last time (0 when the waiters came since). */
  private stalledFor = 0;

  constructor(
    private readonly native: Native,
    private readonly file: string,
    private readonly recover: (intent: Intent) => Promise<void>,
    private readonly timeoutMs = 60_000,
  ) {
    this.waitFile = `${file}-wait`;
  }

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
      try {
        if (fd !== undefined) {
          this.native.unlock(fd);
          fs.closeSync(fd);
          this.releasedAt = performance.now();
          // (not between the commits of a burst, whose next one takes the lock at once)
          if (this.queued <= 1 || this.releasedAt - this.heldSince >= BURST_MS) this.ring();
        }
      } finally {
        release();
      }
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
    const now = performance.now();
    const onward = now - this.releasedAt < BACK_TO_BACK_MS;
    // A run of commits back to back lets waiters in once it has had its share (each hand-over
    // costs a wake-up, so not at every commit), unless a waiter lately left the lock free.
    const yielding =
      onward &&
      now - this.heldSince >= BURST_MS &&
      this.waitersSeen &&
      now >= this.stalledUntil &&
      this.othersWaiting();
    if (!yielding && this.native.tryLock(fd, true)) {
      if (!onward) this.heldSince = now;
      return;
    }
    // Woken by a release (see ring), tried again every few ms besides.
    const bell = new Bell(this.waitFile);
    let waiting: number | undefined;
    try {
      if (yielding) {
        this.ring(); // (free now, and not ours)
        const start = performance.now();
        const until = start + Math.min(MAX_YIELD_MS, deadline - Date.now());
        for (let delay = 1; performance.now() < until; delay = Math.min(delay * 2, MAX_POLL_MS)) {
          if (!this.othersWaiting()) {
            this.stalledFor = 0; // (they came)
            break;
          }
          // A waiter that does not take the lock while it is free is stopped or stalled (SIGSTOP,
          // a debugger, a blocked event loop, or just slow): nobody is let in first for a while,
          // longer each time it happens again.
          if (performance.now() - start >= YIELD_GRACE_MS && this.native.tryLock(fd, true)) {
            this.stalledFor = Math.min(Math.max(2 * this.stalledFor, MIN_STALLED_MS), MAX_STALLED_MS);
            this.stalledUntil = performance.now() + this.stalledFor;
            this.heldSince = performance.now();
            return;
          }
          bell.arm();
          await bell.wait(delay);
        }
      }
      for (let delay = 1; ; delay = Math.min(delay * 2, MAX_POLL_MS)) {
        if (this.native.tryLock(fd, true)) {
          this.heldSince = performance.now();
          return;
        }
        waiting ??= this.announceWaiting(fd);
        // (a commit that has not begun does not hold up closing: as one queued after it)
        if (this.closed) throw new StorageError('UNAVAILABLE', 'driver is closed');
        if (Date.now() > deadline) {
          throw new StorageError(
            'UNAVAILABLE',
            `space is busy: commit lock not acquired within ${this.timeoutMs} ms`,
          );
        }
        bell.arm();
        await bell.wait(delay);
      }
    } finally {
      bell.close();
      if (waiting !== undefined) this.leaveWaiting(waiting);
    }
  }

  /**
   * Wake the processes waiting for the lock, if there are any: a byte written to the wait file,
   * which their watches see at once (instead of leaving the lock free until one tries again). A
   * wait file nobody holds (its last waiter died) goes. Never throws: waiters try again anyway.
   */
  private ring(): void {
    const fd = this.openWaitFile();
    if (fd === undefined) return;
    try {
      if (this.waitersIn(fd)) fs.writeSync(fd, RING, 0, 1, 0);
    } catch {
      // (a courtesy)
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Whether another process waits for the lock (holds its shared flock on the wait file). */
  private othersWaiting(): boolean {
    const fd = this.openWaitFile();
    if (fd === undefined) return false;
    try {
      return this.waitersIn(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Whether a process holds the wait file open as `fd` shared; when none does, it goes (under an
   * exclusive flock, so that no waiter is holding it). Remembered for {@link acquire}.
   */
  private waitersIn(fd: number): boolean {
    try {
      if (!this.native.tryLock(fd, true)) {
        this.waitersSeen = true;
        return true;
      }
      this.removeWaitFile();
      this.native.unlock(fd);
    } catch {
      // (flock refused: as if nobody waited)
    }
    this.waitersSeen = false;
    return false;
  }

  /**
   * The wait file opened for writing where this process may, else for reading; undefined when it
   * is not there (nobody waits: the common case costs this one `access`).
   */
  private openWaitFile(): number | undefined {
    if (!fs.existsSync(this.waitFile)) {
      this.waitersSeen = false;
      return undefined;
    }
    for (const flags of [fs.constants.O_RDWR, fs.constants.O_RDONLY]) {
      try {
        return fs.openSync(this.waitFile, flags | fs.constants.O_NOFOLLOW);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EACCES') return undefined;
      }
    }
    return undefined;
  }

  /**
   * Say that this process waits: a shared flock on the wait file, held until it has the lock.
   * The file gets the lock file's mode and owner (`lockFd`), so that every process that may
   * commit here may use it too. Undefined when that cannot be done (it then just waits).
   */
  private announceWaiting(lockFd: number): number | undefined {
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = fs.openSync(
          this.waitFile,
          fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
          0o600,
        );
      } catch {
        return undefined;
      }
      try {
        // Refused while someone holds it exclusively to remove it; a file removed meanwhile is
        // one nobody looks at any more.
        if (this.native.tryLock(fd, false) && fs.fstatSync(fd).nlink > 0) {
          this.likeLockFile(fd, lockFd);
          return fd;
        }
      } catch {
        // (as if refused)
      }
      fs.closeSync(fd);
    }
    return undefined;
  }

  /** Give the wait file the lock file's permissions and owner, where this process may. */
  private likeLockFile(fd: number, lockFd: number): void {
    try {
      const want = fs.fstatSync(lockFd);
      const have = fs.fstatSync(fd);
      if ((have.mode & 0o777) !== (want.mode & 0o777)) fs.fchmodSync(fd, want.mode & 0o777);
      if (have.uid !== want.uid || have.gid !== want.gid) fs.fchownSync(fd, want.uid, want.gid);
    } catch {
      // (not its owner, or not root: left as it is)
    }
  }

  /** Stop waiting (the lock is ours, or given up): the last waiter out removes the wait file. */
  private leaveWaiting(fd: number): void {
    // (its shared flock turned exclusive, which only works when no other process holds one)
    this.waitersIn(fd);
    try {
      this.native.unlock(fd);
    } catch {
      // (closing lets go of it all the same)
    }
    fs.closeSync(fd);
  }

  /** Remove the wait file, its exclusive flock held (so no process is waiting on it). */
  private removeWaitFile(): void {
    try {
      fs.unlinkSync(this.waitFile);
    } catch {
      // (gone already)
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

  /**
   * Wait for running commits; later calls fail with UNAVAILABLE, and so do those still waiting for
   * another process to let go of the lock.
   */
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

/**
 * Naps of a process waiting for the lock, cut short when the wait file changes (a release). Without
 * a watch (the file is not there yet, inotify's limit is reached, a filesystem shared by several
 * machines where a release elsewhere makes no local event) a nap is just its time.
 */
class Bell {
  private watcher: fs.FSWatcher | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly file: string) {
    this.arm();
  }

  /** Watch the file, if not done yet and it is there. */
  arm(): void {
    if (this.watcher) return;
    try {
      this.watcher = fs.watch(this.file, { persistent: false }, (event) => {
        // (removed or replaced: a new file is watched at the next nap, if there is one)
        if (event === 'rename') this.close();
        else this.wake?.();
      });
      this.watcher.on('error', () => this.close());
    } catch {
      this.watcher = undefined;
    }
  }

  /** Sleep `ms`, or until the file changes. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.wake?.();
  }
}
