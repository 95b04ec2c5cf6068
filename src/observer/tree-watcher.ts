/**
 * Recursive watching of a folder tree with inotify, one watch per folder, through Node's own
 * non-recursive `fs.watch` (libuv reads the kernel's queue on the event loop and calls back at once).
 *
 * Measured on this machine with 100,000 folders (bench/RESULTS.md, "Observer"): @parcel/watcher
 * delivers events in batches up to 500 ms late under steady activity and misses files written right
 * after their folder was created; Node's recursive `fs.watch` (Node 20) puts a watch on every file
 * as well as every folder and keeps a `Stats` of each (2.5x our memory, and trees with more files
 * than `fs.inotify.max_user_watches` cannot be watched at all). So the recursion is ours:
 *
 * - a folder that appears (made, moved in) is watched and then read, and everything found in it is
 *   reported: files written before its watch existed are never missed;
 * - a folder that disappears (removed, moved away) drops its watches, and its new place, if any, is
 *   watched from the event of the folder it moved into;
 * - the kernel drops events when its queue (`fs.inotify.max_queued_events`) fills, and libuv
 *   drops the overflow notice. The queue is read whole in one event-loop turn, so a turn that
 *   delivers nearly a full queue is treated as a possible overflow and reported ({@link onLost});
 * - a watch that cannot be set (the per-user watch limit, permissions) or fails is reported too:
 *   the caller then rescans instead of trusting silence.
 *
 * @module
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Options of a {@link TreeWatcher}. */
export interface TreeWatcherOptions {
  /** Folder whose whole tree is watched. */
  root: string;
  /** True for a folder that must not be watched (nor anything below it). */
  skip?: (abs: string) => boolean;
  /**
   * Something at `abs` may have changed (it may also be gone; `folderGone` when it was a watched
   * folder that disappeared; `inPlace` when it is a watched folder still there with the same
   * inode, so only its own attributes changed: changes below it are reported on their own).
   * Called often: keep it cheap.
   */
  onChange: (abs: string, folderGone?: boolean, inPlace?: boolean) => void;
  /** Events may have been lost (queue overflow, a watch that failed or could not be set). */
  onLost: (reason: string) => void;
}

interface Watched {
  w: fs.FSWatcher;
  ino: number;
  /**
   * Its birth time (0 where birth times are not real): a folder removed and made again (`rmdir d;
   * mkdir d`) often gets the same inode number back, and only this tells the two apart.
   */
  birth: number;
  /** Names of watched sub-folders (absent while there are none). */
  kids?: Set<string>;
}

let birthProbe: Promise<boolean> | undefined;

/**
 * Whether this process gets real birth times: without `statx` (old kernels, some sandboxes) libuv
 * reports the ctime as the birth time, which moves with every change in a folder. Probed once, on
 * a temporary folder: its birth time must stay put while its ctime moves.
 */
function birthTimesReliable(): Promise<boolean> {
  birthProbe ??= (async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-btime-'));
    try {
      const before = fs.lstatSync(dir);
      await new Promise((r) => setTimeout(r, 20)); // past the kernel's coarse clock tick
      fs.writeFileSync(path.join(dir, 'x'), '');
      const after = fs.lstatSync(dir);
      return (
        before.birthtimeMs !== 0 &&
        after.birthtimeMs === before.birthtimeMs &&
        after.ctimeMs !== before.ctimeMs
      );
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  })().catch(() => false);
  return birthProbe;
}

/** The kernel's inotify queue length (events beyond it are dropped). */
function maxQueuedEvents(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8').trim()) || 16384;
  } catch {
    return 16384;
  }
}

/** Folders read between two yields to the event loop while a tree is walked. */
const WALK_BATCH = 200;

/** A recursive inotify watcher (see the module comment). */
export class TreeWatcher {
  private readonly watched = new Map<string, Watched>();
  private readonly lostThreshold = Math.floor(maxQueuedEvents() * 0.9);
  private burst = 0;
  private closed = false;
  /** Folders that could not be watched since the last {@link takeUnwatched}. */
  private unwatched = 0;

  constructor(private readonly opts: TreeWatcherOptions) {}

  /** Folders watched now. */
  get size(): number {
    return this.watched.size;
  }

  /** Watch the whole tree (resolves once every folder present now is watched). */
  async start(): Promise<void> {
    this.births = await birthTimesReliable();
    await this.walk(this.opts.root, false);
  }

  /** Birth times tell a folder made again from the one before (see {@link Watched.birth}). */
  private births = false;

  /** A folder's birth time, when birth times are real (else 0: inodes alone tell folders apart). */
  private birthOf(st: fs.Stats): number {
    return this.births ? st.birthtimeMs : 0;
  }

  /** Whether a watched folder is the one now at its place (inode, and birth time when real). */
  private same(w: Watched, st: fs.Stats): boolean {
    return w.ino === st.ino && w.birth === this.birthOf(st);
  }

  /** Number of folders that could not be watched since the last call (and reset it). */
  takeUnwatched(): number {
    const n = this.unwatched;
    this.unwatched = 0;
    return n;
  }

  /** Stop watching everything. */
  close(): void {
    this.closed = true;
    for (const e of this.watched.values()) e.w.close();
    this.watched.clear();
  }

  /**
   * Watch a folder and everything below it; with `report`, report every entry found (a folder that
   * just appeared: what was written into it before its watch existed would go unseen otherwise).
   */
  private async walk(top: string, report: boolean): Promise<void> {
    const stack = [top];
    let n = 0;
    while (stack.length && !this.closed) {
      const dir = stack.pop()!;
      if (!this.add(dir)) continue;
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // gone meanwhile (its parent's event says so)
      }
      for (const d of entries) {
        const p = `${dir}/${d.name}`;
        if (d.isDirectory()) {
          if (!this.opts.skip?.(p)) {
            if (report) this.opts.onChange(p);
            stack.push(p);
          }
        } else if (report) this.opts.onChange(p);
      }
      if (++n % WALK_BATCH === 0) await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Put a watch on one folder; false when it is not there (or not a folder) any more. */
  private add(dir: string): boolean {
    if (this.closed) return false;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch {
      return false;
    }
    if (!st.isDirectory()) return false;
    const old = this.watched.get(dir);
    if (old) {
      if (this.same(old, st)) return true;
      this.drop(dir); // replaced by another folder of the same name
    }
    let w: fs.FSWatcher;
    try {
      w = fs.watch(dir, { persistent: false }, (_type, name) => this.event(dir, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      this.unwatched++;
      this.opts.onLost(`cannot watch ${dir}: ${code ?? String(err)}`);
      return false;
    }
    w.on('error', (err: NodeJS.ErrnoException) => {
      this.drop(dir);
      if (this.closed) return;
      this.opts.onLost(`watch of ${dir} failed: ${err.code ?? err.message}`);
      // Watch it again if it is still there (the caller's rescan covers the gap).
      void this.walk(dir, true);
    });
    this.watched.set(dir, { w, ino: st.ino, birth: this.birthOf(st) });
    const parent = this.watched.get(path.dirname(dir));
    if (parent && dir !== this.opts.root) {
      parent.kids ??= new Set();
      parent.kids.add(path.basename(dir));
    }
    return true;
  }

  /** Stop watching a folder and everything below it. */
  private drop(dir: string): void {
    const e = this.watched.get(dir);
    if (!e) return;
    this.watched.delete(dir);
    e.w.close();
    for (const k of e.kids ?? []) this.drop(`${dir}/${k}`);
    this.watched.get(path.dirname(dir))?.kids?.delete(path.basename(dir));
  }

  /** Events of this event-loop turn, by folder and name, looked at together at its end. */
  private queued = new Map<string, [string, string | null]>();

  private event(dir: string, name: string | Buffer | null): void {
    if (this.closed) return;
    const base =
      name === null || name === undefined ? null : typeof name === 'string' ? name : name.toString();
    // libuv reads the kernel's queue whole in one turn: a save makes several events (the file, its
    // folder's attributes seen from the folder and from its parent, the same above), and those of
    // one turn are looked at once each, with each path's lstat taken once.
    this.queued.set(base === null ? dir : `${dir}/\u0000${base}`, [dir, base]);
    if (this.burst++ === 0) setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.burst >= this.lostThreshold)
      this.opts.onLost(`inotify delivered ${this.burst} events at once: its queue may have overflowed`);
    this.burst = 0;
    const events = this.queued;
    this.queued = new Map();
    const stats = new Map<string, fs.Stats | null>();
    const lstat = (p: string): fs.Stats | undefined => {
      let st = stats.get(p);
      if (st === undefined) {
        try {
          st = fs.lstatSync(p);
        } catch {
          st = null; // gone
        }
        stats.set(p, st);
      }
      return st ?? undefined;
    };
    for (const [dir, name] of events.values()) {
      if (this.closed) return;
      this.one(dir, name, lstat);
    }
  }

  private one(dir: string, base: string | null, lstat: (p: string) => fs.Stats | undefined): void {
    const e = this.watched.get(dir);
    // Our folder itself removed or moved away (its own watch reports it; the parent's event too).
    const here = lstat(dir);
    if (!here?.isDirectory() || (e && !this.same(e, here))) {
      this.drop(dir);
      this.opts.onChange(dir, true);
      return;
    }
    // From here on the folder itself is still there: the one that was watched.
    const self = e !== undefined;
    if (base === null) {
      this.opts.onChange(dir, false, self);
      return;
    }
    const p = `${dir}/${base}`;
    const st = lstat(p);
    // libuv names an event of the watched folder itself (its attributes changed) by the folder's
    // own name: tell it from a child of the same name by whether such a child exists.
    if (!st && base === path.basename(dir)) {
      this.opts.onChange(dir, false, self);
      return;
    }
    const known = this.watched.get(p);
    this.opts.onChange(p, false, st?.isDirectory() === true && known !== undefined && this.same(known, st));
    if (st?.isDirectory()) {
      if ((!known || !this.same(known, st)) && !this.opts.skip?.(p)) {
        void this.walk(p, true).catch((err) => this.opts.onLost(`cannot watch ${p}: ${String(err)}`));
      }
    } else if (known) {
      this.drop(p);
      this.opts.onChange(p, true);
    }
  }
}
