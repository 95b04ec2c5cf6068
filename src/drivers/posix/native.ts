/**
 * The two native bindings the POSIX driver needs, loaded lazily so that users of the memory driver
 * never need a compiler: `fs-xattr` (extended attributes, real errno) and `fs-ext` (flock).
 *
 * @module
 */
import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
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

interface FsXattr {
  getAttribute(path: string, attr: string): Promise<Buffer>;
  getAttributeSync(path: string, attr: string): Buffer;
  setAttribute(path: string, attr: string, value: Buffer | string): Promise<void>;
  setAttributeSync(path: string, attr: string, value: Buffer | string): void;
  removeAttribute(path: string, attr: string): Promise<void>;
  removeAttributeSync(path: string, attr: string): void;
  listAttributes(path: string): Promise<string[]>;
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

/** An asynchronous read of `fs-xattr`, made again while it fails with ERANGE. */
async function readAgainOnRange<T>(read: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await read();
    } catch (err) {
      if (!isTooSmall(err) || tries >= XATTR_READ_TRIES) throw err;
    }
  }
}

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
    try {
      const name = 'fs-xattr';
      xattr = (await import(name)) as FsXattr;
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
          return await readAgainOnRange(() => xattr.getAttribute(path, name));
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
      setxattr: (path, name, value) => xattr.setAttribute(path, name, value),
      setxattrSync: (path, name, value) => xattr.setAttributeSync(path, name, value),
      async removexattr(path, name) {
        try {
          await xattr.removeAttribute(path, name);
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
      listxattr: (path) => readAgainOnRange(() => xattr.listAttributes(path)),
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
