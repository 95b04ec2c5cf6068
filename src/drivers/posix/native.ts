/**
 * The two native bindings the POSIX driver needs, loaded lazily so that users of the memory driver
 * never need a compiler: `fs-xattr` (extended attributes, real errno) and `fs-ext` (flock).
 *
 * @module
 */
import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { StorageError } from '../../core/errors.js';

/** Extended attributes and advisory locks. */
export interface Native {
  getxattr(path: string, name: string): Promise<Buffer | undefined>;
  getxattrSync(path: string, name: string): Buffer | undefined;
  setxattr(path: string, name: string, value: Buffer | string): Promise<void>;
  setxattrSync(path: string, name: string, value: Buffer | string): void;
  removexattr(path: string, name: string): Promise<void>;
  removexattrSync(path: string, name: string): void;
  listxattr(path: string): Promise<string[]>;
  /** Non-blocking flock; returns false when another holder has it. */
  tryLock(fd: number, exclusive: boolean): boolean;
  unlock(fd: number): void;
}

/**
 * The synchronous calls of `fs-xattr`. Its asynchronous ones (0.4.0, the latest) never delete
 * their N-API async work nor free what they read: each call leaks for good (~0.7 KB of heap and
 * ~9 KB of RSS per request under load, found by a soak). They are not used: see {@link XattrPool}.
 */
interface FsXattr {
  getAttributeSync(path: string, attr: string): Buffer;
  setAttributeSync(path: string, attr: string, value: Buffer | string): void;
  removeAttributeSync(path: string, attr: string): void;
  listAttributesSync(path: string): string[];
}

/** What a worker of {@link XattrPool} is asked. */
type XattrCall =
  | { op: 'get'; path: string; name: string }
  | { op: 'set'; path: string; name: string; value: Uint8Array | string }
  | { op: 'remove'; path: string; name: string }
  | { op: 'list'; path: string };

/**
 * The worker's code: the synchronous calls of `fs-xattr` (its URL given as workerData), off the
 * main thread. A value read is taken once two reads in a row agree (see getxattrSync).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { isUtf8 } = require('node:buffer');
import(workerData.xattr).then((x) => {
  const whole = (v) => !v.includes(0) && isUtf8(v);
  // (read twice: a value made shorter between the two calls of one read keeps stray bytes after
  // it, which two reads in a row almost never share)
  const get = (path, name) => {
    for (let tries = 1; ; tries++) {
      try {
        const v = x.getAttributeSync(path, name);
        if (tries >= 100 || (whole(v) && v.equals(x.getAttributeSync(path, name)))) return v;
      } catch (err) {
        if (err.code !== 'ERANGE' || tries >= 100) throw err;
      }
    }
  };
  parentPort.on('message', ({ id, call }) => {
    try {
      let value;
      if (call.op === 'get') value = get(call.path, call.name);
      else if (call.op === 'set') x.setAttributeSync(call.path, call.name, typeof call.value === 'string' ? call.value : Buffer.from(call.value));
      else if (call.op === 'remove') x.removeAttributeSync(call.path, call.name);
      else value = x.listAttributesSync(call.path);
      parentPort.postMessage({ id, value });
    } catch (err) {
      parentPort.postMessage({ id, error: { message: err.message, code: err.code, errno: err.errno } });
    }
  });
  parentPort.postMessage({ ready: true });
});
`;

/** A worker of {@link XattrPool}, and the ids of the calls it has not answered yet. */
interface Slot {
  w: Worker;
  waiting: Set<number>;
}

/**
 * Asynchronous xattr calls for filesystems where a call may wait (a network filesystem): the
 * synchronous calls of `fs-xattr` on a few worker threads, each call to the one with the fewest
 * waiting. (On a local filesystem the driver makes them on the main thread: a few µs each.)
 */
class XattrPool {
  private readonly workers: Slot[] = [];
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(
    private readonly url: string,
    private readonly size = 4,
  ) {}

  call<T>(call: XattrCall): Promise<T> {
    const slot = this.pick();
    const id = this.next++;
    slot.waiting.add(id);
    if (slot.waiting.size === 1) slot.w.ref();
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        slot.waiting.delete(id);
        if (slot.waiting.size === 0) slot.w.unref(); // (an idle pool keeps no process alive)
      };
      this.calls.set(id, {
        resolve: (v) => {
          done();
          resolve(v as T);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      slot.w.postMessage({ id, call });
    });
  }

  private pick(): Slot {
    let best = this.workers.find((x) => x.waiting.size === 0);
    if (!best && this.workers.length < this.size) best = this.spawn();
    best ??= this.workers.reduce((a, b) => (b.waiting.size < a.waiting.size ? b : a));
    return best;
  }

  private spawn(): Slot {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { xattr: this.url } });
    const slot: Slot = { w, waiting: new Set() };
    w.unref();
    w.on('message', (m: { id?: number; value?: unknown; error?: { message: string; code?: string } }) => {
      if (m.id === undefined) return;
      const c = this.calls.get(m.id);
      if (!c) return;
      this.calls.delete(m.id);
      if (m.error) c.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else
        c.resolve(
          m.value instanceof Uint8Array
            ? Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength)
            : m.value,
        );
    });
    // A worker that dies fails what it was asked (the other workers' calls go on); the next call
    // gets a new one.
    const gone = (err: unknown) => {
      const i = this.workers.indexOf(slot);
      if (i >= 0) this.workers.splice(i, 1);
      const e = err instanceof Error ? err : new Error(`the xattr worker stopped (${String(err)})`);
      for (const id of [...slot.waiting]) {
        const c = this.calls.get(id);
        this.calls.delete(id);
        c?.reject(e);
      }
    };
    w.on('error', gone);
    w.on('exit', (code) => gone(new Error(`the xattr worker exited (${code})`)));
    this.workers.push(slot);
    return slot;
  }
}

interface FsExt {
  flockSync(fd: number, flags: 'sh' | 'ex' | 'shnb' | 'exnb' | 'un'): void;
}

let loaded: Promise<Native> | undefined;

function isNoAttr(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'ENODATA' || code === 'ENOATTR';
}

/**
 * `fs-xattr` reads a value in two calls, its size and then its bytes: another process (or this
 * one's thread pool) that makes it longer in between gets ERANGE. Such a read is made again; a
 * writer is done in microseconds, so this many tries only fail under a flood of rewrites.
 */
const XATTR_READ_TRIES = 100;

const isTooSmall = (err: unknown) => (err as { code?: string })?.code === 'ERANGE';

/**
 * Whether a value read synchronously can be whole. The synchronous read of `fs-xattr` keeps the
 * size of its first call: a value made shorter in between comes back with uninitialised bytes
 * after it. Every value Stowage stores is UTF-8 text without NUL (JSON, decimal numbers), which
 * such a tail almost never is; the rare one that passes still fails to parse as a record, and a
 * lookup then reads the record again under the commit lock.
 */
const mayBeWhole = (v: Buffer) => !v.includes(0) && isUtf8(v);

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Before a synchronous read is tried again: after the first tries, a short random pause (up to
 * 50 µs, growing to 1 ms), so a reader does not stay in step with a writer rewriting without pause.
 */
function backOff(tries: number): void {
  if (tries > 2) Atomics.wait(pause, 0, 0, Math.random() * 0.05 * Math.min(tries, 20));
}

/** Load the bindings once; a clear UNAVAILABLE error names the package to install when one is missing. */
export function loadNative(): Promise<Native> {
  loaded ??= (async () => {
    let xattr: FsXattr;
    let ext: FsExt;
    let pool: XattrPool;
    try {
      const name = 'fs-xattr';
      xattr = (await import(name)) as FsXattr;
      pool = new XattrPool(pathToFileURL(createRequire(import.meta.url).resolve(name)).href);
    } catch (err) {
      throw new StorageError(
        'UNAVAILABLE',
        'the posix driver needs the optional dependency "fs-xattr" (npm install fs-xattr; it builds with node-gyp)',
        { cause: err },
      );
    }
    try {
      ext = createRequire(import.meta.url)('fs-ext') as FsExt;
    } catch (err) {
      throw new StorageError(
        'UNAVAILABLE',
        'the posix driver needs the optional dependency "fs-ext" for flock (npm install fs-ext; it builds with node-gyp)',
        { cause: err },
      );
    }
    const native: Native = {
      async getxattr(path, name) {
        try {
          return await pool.call<Buffer>({ op: 'get', path, name });
        } catch (err) {
          if (isNoAttr(err)) return undefined;
          throw err;
        }
      },
      getxattrSync(path, name) {
        for (let tries = 1; ; tries++) {
          try {
            const v = xattr.getAttributeSync(path, name);
            if (mayBeWhole(v) || tries >= XATTR_READ_TRIES) return v;
          } catch (err) {
            if (isNoAttr(err)) return undefined;
            if (!isTooSmall(err) || tries >= XATTR_READ_TRIES) throw err;
          }
          backOff(tries);
        }
      },
      setxattr: (path, name, value) => pool.call<void>({ op: 'set', path, name, value }),
      setxattrSync: (path, name, value) => xattr.setAttributeSync(path, name, value),
      async removexattr(path, name) {
        try {
          await pool.call<void>({ op: 'remove', path, name });
        } catch (err) {
          if (!isNoAttr(err)) throw err;
        }
      },
      removexattrSync(path, name) {
        try {
          xattr.removeAttributeSync(path, name);
        } catch (err) {
          if (!isNoAttr(err)) throw err;
        }
      },
      listxattr: (path) => pool.call<string[]>({ op: 'list', path }),
      tryLock(fd, exclusive) {
        try {
          ext.flockSync(fd, exclusive ? 'exnb' : 'shnb');
          return true;
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
          throw err;
        }
      },
      unlock(fd) {
        ext.flockSync(fd, 'un');
      },
    };
    return native;
  })();
  loaded.catch(() => {
    loaded = undefined;
  });
  return loaded;
}

/**
 * The same calls, the asynchronous ones made on this thread (for a local filesystem, where a call
 * takes a few µs: cheaper than any hand-off, and what the driver's listings already do).
 */
export function onThisThread(n: Native): Native {
  const now = <T>(f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return {
    ...n,
    getxattr: (path, name) => now(() => n.getxattrSync(path, name)),
    setxattr: (path, name, value) => now(() => n.setxattrSync(path, name, value)),
    removexattr: (path, name) => now(() => n.removexattrSync(path, name)),
  };
}
