/**
 * A `FileSystem` for the npm `webdav-server` package (v2), for apps already built on it: one
 * Stowage space (or a folder in it) becomes the tree the app's WebDAV server serves, with
 * Stowage's ids, checksums, atomic writes, trash and versions underneath.
 *
 * `webdav-server` is an optional peer dependency (`npm install webdav-server`); it is loaded when
 * the file system is created. Stowage's own WebDAV door (`stowage/webdav`) is faster and more
 * complete; this adapter is for keeping an existing webdav-server setup.
 *
 * ```ts
 * import { v2 as webdav } from 'webdav-server';
 * import { createWebdavServerFileSystem } from 'stowage/webdav-server';
 * const server = new webdav.WebDAVServer({ port: 1900 });
 * server.setFileSystem('/', await createWebdavServerFileSystem({ storage, space: space.id }), () => server.start());
 * ```
 *
 * @module stowage/webdav-server
 */
import { PassThrough, type Readable, Writable } from 'node:stream';
import { StorageError, toStorageError } from '../core/errors.js';
import type { StorageProvider } from '../core/provider.js';
import type { Reference, ResourceInfo } from '../core/types.js';

/** Options of {@link createWebdavServerFileSystem}. */
export interface WebdavServerFileSystemOptions {
  /** The provider (or a user's session) the file system works through. */
  storage: StorageProvider;
  /** The space served, by id or alias. */
  space: string;
  /** A folder of the space to serve instead of its root (`a/b`). */
  root?: string;
}

/** Metadata keys under which the dead properties set through webdav-server are kept (then its property name). */
export const WEBDAV_SERVER_PROPERTY_PREFIX = 'webdav-server:';

type WebdavServer = typeof import('webdav-server');
type V2 = WebdavServer['v2'];
type Path = import('webdav-server').v2.Path;
type IPropertyManager = import('webdav-server').v2.IPropertyManager;
type PropertyBag = import('webdav-server').v2.PropertyBag;
type PropertyAttributes = import('webdav-server').v2.PropertyAttributes;
type ResourcePropertyValue = import('webdav-server').v2.ResourcePropertyValue;
type ReturnCallback<T> = (error?: Error, data?: T) => void;
type SimpleCallback = (error?: Error) => void;

/**
 * A webdav-server v2 `FileSystem` over a Stowage space. Dead properties (PROPPATCH) are kept in
 * the resource's metadata, under keys starting with {@link WEBDAV_SERVER_PROPERTY_PREFIX}: they
 * follow the resource through moves, copies, the trash and restarts, and a new resource at the
 * same path starts without them. WebDAV locks stay webdav-server's own (in memory, as with its
 * other file systems) and are dropped with the resource they lock when it is moved or deleted.
 */
export async function createWebdavServerFileSystem(
  opts: WebdavServerFileSystemOptions,
): Promise<import('webdav-server').v2.FileSystem> {
  let lib: WebdavServer;
  try {
    lib = await import('webdav-server');
  } catch (err) {
    throw new StorageError(
      'UNAVAILABLE',
      'stowage/webdav-server needs the webdav-server package: npm install webdav-server',
      {
        cause: err,
      },
    );
  }
  const v2: V2 = lib.v2;
  const { storage } = opts;
  const space = (await storage.getSpace(opts.space)).id;
  const base = (opts.root ?? '').split('/').filter(Boolean);

  const ref = (p: Path): Reference => ({ space, path: [...base, ...p.paths].join('/') });
  /** webdav-server's error for a StorageError (what it turns into the right HTTP status). */
  const fail = (err: unknown): Error => {
    const e = toStorageError(err, 'resource');
    switch (e.code) {
      case 'NOT_FOUND':
        return v2.Errors.ResourceNotFound;
      case 'ALREADY_EXISTS':
        return v2.Errors.ResourceAlreadyExists;
      case 'LOCKED':
        return v2.Errors.Locked;
      case 'INSUFFICIENT_STORAGE':
        return v2.Errors.InsufficientStorage;
      case 'PERMISSION_DENIED':
        return v2.Errors.NotEnoughPrivilege;
      case 'FAILED_PRECONDITION':
        return e.reason === 'parent-missing'
          ? v2.Errors.IntermediateResourceMissing
          : v2.Errors.InvalidOperation;
      case 'INVALID_ARGUMENT':
        return v2.Errors.IllegalArguments;
      default:
        return e;
    }
  };
  /** Run a promise into a webdav-server callback. */
  const call = <T>(p: Promise<T>, cb: ReturnCallback<T>) => {
    p.then(
      (v) => cb(undefined, v),
      (err) => cb(fail(err)),
    );
  };
  // webdav-server asks for size, etag, type, dates and mime type one by one: within one request,
  // a resource is stat'ed once (per-request memo, dropped when the request changes something).
  const memo = new WeakMap<object, Map<string, Promise<ResourceInfo>>>();
  const stat = (p: Path, ctx?: unknown): Promise<ResourceInfo> => {
    const req = (ctx as { context?: object } | undefined)?.context;
    if (!req) return storage.stat(ref(p), { fields: ['mimeType'] });
    let m = memo.get(req);
    if (!m) {
      m = new Map();
      memo.set(req, m);
    }
    const key = p.toString();
    let hit = m.get(key);
    if (!hit) {
      hit = storage.stat(ref(p), { fields: ['mimeType'] });
      hit.catch(() => m.delete(key));
      m.set(key, hit);
    }
    return hit;
  };
  const forget = (ctx: unknown) => {
    const req = (ctx as { context?: object } | undefined)?.context;
    if (req) memo.delete(req);
  };

  /** A resource's dead properties, read from and written to its metadata at each call. */
  class StowagePropertyManager implements IPropertyManager {
    constructor(
      private readonly path: Path,
      private readonly ctx: unknown,
    ) {}

    setProperty(
      name: string,
      value: ResourcePropertyValue,
      attributes: PropertyAttributes,
      callback: SimpleCallback,
    ): void {
      forget(this.ctx);
      const stored = JSON.stringify({ value, attributes });
      storage.setMetadata(ref(this.path), { [WEBDAV_SERVER_PROPERTY_PREFIX + name]: stored }).then(
        () => callback(),
        (err) => callback(fail(err)),
      );
    }

    getProperty(
      name: string,
      callback: (error?: Error, value?: ResourcePropertyValue, attributes?: PropertyAttributes) => void,
    ): void {
      const key = WEBDAV_SERVER_PROPERTY_PREFIX + name;
      storage.stat(ref(this.path), { fields: [], metadataKeys: [key] }).then(
        (info) => {
          const p = decodeProperty(info.metadata?.[key]);
          if (p) callback(undefined, p.value, p.attributes);
          else callback(v2.Errors.PropertyNotFound);
        },
        (err) => callback(fail(err)),
      );
    }

    removeProperty(name: string, callback: SimpleCallback): void {
      forget(this.ctx);
      storage.unsetMetadata(ref(this.path), [WEBDAV_SERVER_PROPERTY_PREFIX + name]).then(
        () => callback(),
        (err) => callback(fail(err)),
      );
    }

    getProperties(callback: ReturnCallback<PropertyBag>): void {
      // Read afresh at each call, so the bag is always the caller's own copy.
      storage.stat(ref(this.path), { fields: [], metadataKeys: '*' }).then(
        (info) => {
          const bag: PropertyBag = {};
          for (const [k, v] of Object.entries(info.metadata ?? {})) {
            if (!k.startsWith(WEBDAV_SERVER_PROPERTY_PREFIX)) continue;
            const p = decodeProperty(v);
            if (p) bag[k.slice(WEBDAV_SERVER_PROPERTY_PREFIX.length)] = p;
          }
          callback(undefined, bag);
        },
        (err) => callback(fail(err)),
      );
    }
  }

  class StowageFileSystem extends v2.FileSystem {
    private readonly locks = new Map<string, import('webdav-server').v2.LocalLockManager>();

    /** Drop the locks of `path` and of everything below it (the resources are gone from there). */
    private dropLocks(path: Path): void {
      const key = path.toString();
      const below = key.endsWith('/') ? key : `${key}/`;
      for (const k of this.locks.keys()) if (k === key || k.startsWith(below)) this.locks.delete(k);
    }

    constructor() {
      super(new v2.VirtualSerializer());
    }

    protected override _fastExistCheck(ctx: object, path: Path, callback: (exists: boolean) => void): void {
      stat(path, { context: ctx }).then(
        () => callback(true),
        () => callback(false),
      );
    }

    protected override _create(
      path: Path,
      ctx: { type: { isDirectory: boolean }; context?: object },
      callback: SimpleCallback,
    ): void {
      forget(ctx);
      const done = ctx.type.isDirectory
        ? storage.mkdir(ref(path))
        : storage.write(ref(path), Buffer.alloc(0));
      done.then(
        () => callback(),
        (err) => callback(fail(err)),
      );
    }

    protected override _delete(path: Path, ctx: unknown, callback: SimpleCallback): void {
      forget(ctx);
      storage.delete(ref(path)).then(
        () => {
          this.dropLocks(path);
          callback();
        },
        (err) => callback(fail(err)),
      );
    }

    protected override _openWriteStream(path: Path, ctx: unknown, callback: ReturnCallback<Writable>): void {
      forget(ctx);
      // Bytes go through a pipe into storage.write; the stream finishes only once the write is
      // committed (or fails), so webdav-server answers after the fact, never before.
      const pipe = new PassThrough({ highWaterMark: 256 * 1024 });
      const written = storage.write(ref(path), pipe);
      written.catch(() => {});
      const sink = new Writable({
        highWaterMark: 256 * 1024,
        write(chunk: Buffer, _enc, cb) {
          if (pipe.write(chunk)) cb();
          else pipe.once('drain', () => cb());
        },
        final(cb) {
          pipe.end();
          written.then(
            () => cb(),
            (err) => cb(fail(err)),
          );
        },
        destroy(err, cb) {
          if (err) pipe.destroy(err);
          cb(err);
        },
      });
      // A write that fails before the body is all in (quota, permission, a lock) ends the request
      // now, instead of leaving the client waiting on a pipe nobody reads.
      written.catch((err) => {
        if (!sink.destroyed) sink.destroy(fail(err));
      });
      callback(undefined, sink);
    }

    protected override _openReadStream(path: Path, _ctx: unknown, callback: ReturnCallback<Readable>): void {
      call(
        storage.read(ref(path)).then((r) => {
          if (!r.body) throw new StorageError('NOT_FOUND', 'no content');
          return r.body as unknown as Readable;
        }),
        callback,
      );
    }

    protected override _move(
      from: Path,
      to: Path,
      ctx: { overwrite: boolean },
      callback: ReturnCallback<boolean>,
    ): void {
      forget(ctx);
      call(
        storage.move(ref(from), ref(to), { overwrite: ctx.overwrite }).then(() => {
          this.dropLocks(from); // a lock is on its URL's resource: none follows a move (RFC 4918 §7.7)
          return true;
        }),
        callback,
      );
    }

    protected override _copy(
      from: Path,
      to: Path,
      ctx: { overwrite: boolean },
      callback: ReturnCallback<boolean>,
    ): void {
      forget(ctx);
      call(
        storage.copy(ref(from), ref(to), { overwrite: ctx.overwrite }).then(() => true),
        callback,
      );
    }

    protected override _size(path: Path, ctx: unknown, callback: ReturnCallback<number>): void {
      call(
        stat(path, ctx).then((i) => i.size),
        callback,
      );
    }

    protected override _etag(path: Path, ctx: unknown, callback: ReturnCallback<string>): void {
      call(
        stat(path, ctx).then((i) => i.etag),
        callback,
      );
    }

    protected override _mimeType(path: Path, ctx: unknown, callback: ReturnCallback<string>): void {
      call(
        stat(path, ctx).then((i) => i.mimeType || 'application/octet-stream'),
        callback,
      );
    }

    protected override _lastModifiedDate(path: Path, ctx: unknown, callback: ReturnCallback<number>): void {
      call(
        stat(path, ctx).then((i) => i.mtime),
        callback,
      );
    }

    protected override _creationDate(path: Path, ctx: unknown, callback: ReturnCallback<number>): void {
      // When the driver knows it; otherwise the modification time stands in, as before.
      call(
        stat(path, ctx).then((i) => i.created ?? i.mtime),
        callback,
      );
    }

    protected override _type(
      path: Path,
      ctx: unknown,
      callback: ReturnCallback<import('webdav-server').v2.ResourceType>,
    ): void {
      call(
        stat(path, ctx).then((i) => (i.type === 'folder' ? v2.ResourceType.Directory : v2.ResourceType.File)),
        callback,
      );
    }

    protected override _readDir(path: Path, _ctx: unknown, callback: ReturnCallback<string[]>): void {
      call(
        (async () => {
          const names: string[] = [];
          for await (const c of storage.list(ref(path), { fields: [] })) names.push(c.name);
          return names;
        })(),
        callback,
      );
    }

    protected override _lockManager(
      path: Path,
      _ctx: unknown,
      callback: ReturnCallback<import('webdav-server').v2.ILockManager>,
    ): void {
      const key = path.toString();
      let m = this.locks.get(key);
      if (!m) {
        m = new v2.LocalLockManager();
        this.locks.set(key, m);
      }
      callback(undefined, m);
    }

    protected override _propertyManager(
      path: Path,
      ctx: unknown,
      callback: ReturnCallback<IPropertyManager>,
    ): void {
      callback(undefined, new StowagePropertyManager(path, ctx));
    }
  }

  return new StowageFileSystem();
}

/** A dead property as kept in metadata, or undefined when the value is not one (set by another door). */
function decodeProperty(
  stored: string | undefined,
): { value: ResourcePropertyValue; attributes?: PropertyAttributes } | undefined {
  if (stored === undefined) return undefined;
  try {
    const p = JSON.parse(stored) as { value?: unknown; attributes?: unknown };
    const value = p?.value;
    if (typeof value !== 'string' && (typeof value !== 'object' || value === null)) return undefined;
    const attributes =
      typeof p.attributes === 'object' && p.attributes !== null
        ? (p.attributes as PropertyAttributes)
        : undefined;
    return { value: value as ResourcePropertyValue, ...(attributes && { attributes }) };
  } catch {
    return undefined;
  }
}
