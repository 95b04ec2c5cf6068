/**
 * The POSIX driver: a human-readable tree with all metadata in xattrs on the storage itself.
 *
 * Layout under `root`:
 * ```
 * .stowage/format.json            {format, storageId}
 * .stowage/spaces/<space id>      symlink text: the space's alias (space id -> folder index)
 * .stowage/lock, .stowage/tmp/    space creation/deletion
 * spaces/personal/<username>/     a space root: the user's files, as they are
 * spaces/project/<slug>/          another one
 * spaces/<type>/<name>/.stowage/  per space: lock (+intent), tmp/, ids/ (id index), meta/ (sidecars)
 * ```
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { bodyChunks } from '../../core/body.js';
import { ChecksumAccumulator, verifyChecksums } from '../../core/checksums.js';
import { checkWriteConditions, evaluateConditions, rangeToServe } from '../../core/conditions.js';
import type {
  Body,
  Driver,
  Features,
  Inspected,
  MetadataChange,
  MutationOptions,
  WatchOptions,
} from '../../core/driver.js';
import { folderTimeRefused, StorageError, toStorageError } from '../../core/errors.js';
import { fileEtag, folderEtag, nextTreeTime, nowUs } from '../../core/etag.js';
import {
  checkLockChange,
  checkLockFor,
  checkLockInside,
  liveLock,
  lockAfter,
  newLock,
} from '../../core/locks.js';
import { FOLDER_MIME_TYPE, mimeTypeOf } from '../../core/mime.js';
import { ParallelChecksums } from '../../core/parallel-checksums.js';
import {
  decodeGrant,
  encodeGrant,
  type Grant,
  type Grantee,
  granteeKey,
  type StoredGrant,
} from '../../core/permissions.js';
import { checkName, printable, RESERVED_ROOT_NAME, slugify, splitPath } from '../../core/refs.js';
import type {
  Checksums,
  CreateSpaceInput,
  Field,
  FileVersion,
  ListOptions,
  Lock,
  LockOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  RecycleItem,
  ResourceId,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from '../../core/types.js';
import { DEFAULT_FIELDS } from '../../core/types.js';
import { PosixFavorites } from './favorites.js';
import { type FsckOptions, type FsckSpaceReport, fsckSpace } from './fsck.js';
import { type IndexEntry, PathCache } from './ids.js';
import { CommitLock } from './lock.js';
import { type Native, onThisThread } from './native.js';
import { type ObserverHost, PosixObserver } from './observer.js';
import {
  bornAt,
  CTIME_SLACK_MS,
  checksumsValid,
  decodeRecord,
  encodeRecord,
  isValidId,
  lockOf,
  type NodeRecord,
  type SpaceProps,
  storedLock,
  XATTR_GRANTS,
  XATTR_META,
  XATTR_NODE,
  XATTR_PREFIX,
} from './record.js';
import {
  forgetCachedRecord,
  type HeldRecords,
  keyOf,
  PosixSpace,
  parentKeyOf,
  parseMetadata,
  type SpaceEnv,
  sameFile,
  segsOf,
} from './space.js';
import { DirSyncer, isMissing, mapOrdered, removeTree, tooDeep, toUtimeSeconds } from './util.js';

/** Options of the POSIX driver. */
export interface PosixDriverOptions {
  /** Folder holding the storage; created when missing. */
  root: string;
  /** Storage id for a new root (default: a random UUID). An existing root keeps its own; a different one is refused. */
  storageId?: string;
  /**
   * Set up a new storage when `root` holds none (default true). False refuses a folder that is
   * not a Stowage storage yet (NOT_FOUND) and writes nothing to it: for tools that only read.
   */
  create?: boolean;
  /** fsync files and folders before acknowledging a write (default true). */
  durable?: boolean;
  /** Give up waiting for a space's commit lock after this long (default 60 s). */
  lockTimeoutMs?: number;
  /** Minimum time between two full id scans of one space (default 60 s). */
  scanIntervalMs?: number;
  /** Parallel stat+getxattr calls per listing (default 16). */
  listConcurrency?: number;
  /**
   * Read a node's metadata (lstat, record, the folders above it) with synchronous syscalls. On a local
   * filesystem these are answered from the kernel's caches in a few µs, less than handing them to
   * libuv's threads; on a network filesystem one may wait for a server, which must not stall the
   * process. Default: true on local filesystems (ext4, xfs, btrfs, tmpfs, zfs, ...), false on
   * network and FUSE ones (CephFS, NFS, SMB, ...), overlayfs and unknown types. Only the root's
   * filesystem is checked: set `false` when a network filesystem is mounted below the root.
   */
  syncMetadata?: boolean;
  /**
   * How long after Stowage last confirmed a file's checksums its ctime may move (by Stowage's own
   * rename of it) before they are taken as touched around Stowage and hidden until hashed again, ms
   * (default 2000; local filesystems only). A same-size rewrite with its mtime put back within this
   * time of a change through Stowage goes unseen.
   */
  ctimeSlackMs?: number;
  /** Largest arbitrary metadata (or grant list) kept inline in an xattr; larger goes to a sidecar (default 1536 bytes). */
  inlineMetadataBytes?: number;
  /** Move deleted resources to the space's trash (default true); false deletes for good. */
  trash?: boolean;
  /** Previous contents kept per file (default 10; 0 keeps none and turns the capability off). */
  keepVersions?: number;
  /** Where background failures are reported (default: nowhere). Never receives file contents or secrets. */
  log?: (message: string, error?: unknown) => void;
  /** @internal Fault injection for crash tests. */
  hooks?: PosixHooks;
}

/** @internal Called at points where a crash is interesting. */
export interface PosixHooks {
  /** After the work done outside the commit lock (a copy's walk), before the commit. */
  beforeCommit?(op: string): void | Promise<void>;
  /** After the commit lock is held and the intent recorded, before the first rename. */
  beforeRename?(op: string): void | Promise<void>;
  /** After the rename, before propagation. */
  afterRename?(op: string): void | Promise<void>;
}

/** The POSIX driver, with a few extras for tools and tests. */
export interface PosixDriver extends Driver {
  /** Absolute, canonical root folder. */
  readonly root: string;
  /**
   * Whether metadata is read with synchronous syscalls: the root is on a local filesystem (unless
   * the `syncMetadata` option said otherwise), where the observer sees every change.
   */
  readonly syncMetadata: boolean;
  /** Absolute path of a space's root folder. */
  spacePath(idOrAlias: string): Promise<string>;
  /** Wait until background work (removal of deleted trees) is done. */
  idle(): Promise<void>;
  /**
   * Check every space (or one) against the disk; with `repair`, fix derived state (records, ids,
   * parent ids, tree sizes, index, checksums with `checksums`). Pauses the space's writers meanwhile.
   */
  fsck(opts?: FsckOptions & { space?: string }): Promise<FsckSpaceReport[]>;
}

const FORMAT = 1;
const WITH_GRANTS: readonly Field[] = Object.freeze([...DEFAULT_FIELDS, 'grants'] as Field[]);
const INSPECT_DEFAULT: StatOptions = Object.freeze({ fields: WITH_GRANTS });
const SPACE_TYPES = ['personal', 'project'] as const;
const BUFFER_BYTES = 256 * 1024;
/** Bodies at least this big (or of unknown size) are hashed on worker threads. */
const PARALLEL_CHECKSUM_BYTES = 1024 * 1024;
/** Durable writes start flushing to disk every this many bytes, while the rest arrives. */
const EARLY_SYNC_BYTES = 16 * 1024 * 1024;
/**
 * Bodies of a known size up to this many bytes are written to their temp file with synchronous
 * calls on a local filesystem (fsync excepted): one write of at most this much into the page cache
 * costs less than the three thread-pool round trips (write, stat, close) it replaces. Such bodies
 * also skip the checks made before any byte is read (the commit makes them all again).
 */
const SMALL_BODY_BYTES = BUFFER_BYTES;

/**
 * Reads of at most this many bytes from a local filesystem are done at once with synchronous calls
 * (open, fstat, read, close: a few µs from the page cache) and handed over whole, instead of four
 * thread-pool round trips and a stream.
 */
const SMALL_READ_BYTES = 64 * 1024;
/** Reason of the ABORTED a read gives when its file changed between the lookup and the read. */
const CHANGED_WHILE_READ = 'changed-while-read' as const;
const SPACE_RECHECK_MS = 2000;
/** Spaces kept in memory (they hold no file descriptors while idle). */
const MAX_CACHED_SPACES = 256;

interface Loaded {
  st: fs.Stats;
  rec: NodeRecord;
}

/** Open (or create) a POSIX storage at `options.root`. */
export async function openPosixDriver(native: Native, options: PosixDriverOptions): Promise<PosixDriver> {
  if (!options?.root) throw new StorageError('INVALID_ARGUMENT', 'the posix driver needs a root folder');
  try {
    return await open(native, options);
  } catch (err) {
    throw toStorageError(err, `open ${options.root}`);
  }
}

async function open(native: Native, options: PosixDriverOptions): Promise<PosixDriver> {
  if (options.create === false) {
    const format = path.join(path.resolve(options.root), '.stowage/format.json');
    if (!(await fsp.lstat(format).catch(() => undefined))) {
      throw new StorageError(
        'NOT_FOUND',
        `${path.resolve(options.root)} is not a Stowage storage (no .stowage/)`,
      );
    }
  }
  await fsp.mkdir(options.root, { recursive: true });
  const root = await fsp.realpath(path.resolve(options.root));
  // Refuse filesystems without user xattrs early and clearly.
  try {
    await native.setxattr(root, `${XATTR_PREFIX}probe`, '1');
    await native.removexattr(root, `${XATTR_PREFIX}probe`);
  } catch (err) {
    throw new StorageError(
      'UNAVAILABLE',
      `${root}: the filesystem does not support user extended attributes (${(err as NodeJS.ErrnoException).code})`,
      { cause: err },
    );
  }
  for (const d of ['.stowage/tmp', '.stowage/spaces', 'spaces/personal', 'spaces/project']) {
    await fsp.mkdir(`${root}/${d}`, { recursive: true });
  }
  const formatFile = `${root}/.stowage/format.json`;
  let storageId: string;
  try {
    const fmt = JSON.parse(await fsp.readFile(formatFile, 'utf8')) as { format: number; storageId: string };
    if (fmt.format !== FORMAT) {
      throw new StorageError(
        'FAILED_PRECONDITION',
        `${root}: storage format ${fmt.format}, this version reads ${FORMAT}`,
      );
    }
    storageId = fmt.storageId;
    if (options.storageId && options.storageId !== storageId) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `${root} has storage id ${storageId}, not ${options.storageId}`,
      );
    }
  } catch (err) {
    if (!isMissing(err)) throw err instanceof StorageError ? err : toStorageError(err, formatFile);
    storageId = options.storageId ?? randomUUID();
    const tmp = `${formatFile}.${randomUUID()}`;
    await fsp.writeFile(tmp, `${JSON.stringify({ format: FORMAT, storageId })}\n`, { flag: 'wx' });
    try {
      await fsp.link(tmp, formatFile); // fails if another process initialised first
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      storageId = (JSON.parse(await fsp.readFile(formatFile, 'utf8')) as { storageId: string }).storageId;
    } finally {
      await fsp.unlink(tmp).catch(() => {});
    }
  }
  const local = options.syncMetadata ?? (await isLocalFilesystem(root));
  const driver = new Posix(local ? onThisThread(native) : native, root, storageId, options);
  driver.syncMetadata = local;
  await driver.init();
  return driver;
}

class Posix implements PosixDriver {
  readonly kind = 'posix';
  readonly features: Features;
  private readonly durable: boolean;
  private readonly scanIntervalMs: number;
  private readonly listConcurrency: number;
  /** Set by {@link openPosixDriver} from the option or the filesystem's type. */
  syncMetadata = false;
  private readonly inlineMetadataBytes: number;
  private readonly trash: boolean;
  private readonly keepVersions: number;
  private readonly spaces = new Map<string, { sp: PosixSpace; checked: number }>();
  private readonly rootLock: CommitLock;
  private readonly syncer = new DirSyncer();
  private readonly background = new Set<Promise<void>>();
  private readonly spaceEnv: SpaceEnv;
  private readonly favorites: PosixFavorites;
  private closed = false;

  constructor(
    private readonly native: Native,
    readonly root: string,
    readonly storageId: string,
    private readonly options: PosixDriverOptions,
  ) {
    this.durable = options.durable ?? true;
    this.scanIntervalMs = options.scanIntervalMs ?? 60_000;
    this.listConcurrency = Math.max(1, options.listConcurrency ?? 16);
    this.inlineMetadataBytes = options.inlineMetadataBytes ?? 1536;
    this.trash = options.trash ?? true;
    this.keepVersions = Math.max(0, options.keepVersions ?? 10);
    this.rootLock = new CommitLock(
      native,
      `${root}/.stowage/lock`,
      async () => {},
      options.lockTimeoutMs ?? 60_000,
    );
    this.favorites = new PosixFavorites(root, this.durable, (d) => this.syncDir(d));
    this.spaceEnv = {
      native,
      cache: new PathCache(),
      owner: randomUUID().replace(/-/g, '').slice(0, 16),
      lockTimeoutMs: options.lockTimeoutMs ?? 60_000,
      syncMetadata: () => this.syncMetadata,
      ctimeSlackMs: options.ctimeSlackMs ?? CTIME_SLACK_MS,
      discard: (sp: PosixSpace, tmpName: string) => this.discard(sp, tmpName),
      watched: () => this.observers.size > 0,
    };
    this.features = Object.freeze({
      copy: Object.freeze({
        copy: (s: NodeRef, d: NodeRef, o?: MoveOptions) => this.copy(s, d, o).catch(rethrow('copy')),
      }),
      metadata: Object.freeze({
        set: (r: NodeRef, v: Readonly<Record<string, string>>, o?: MutationOptions) =>
          this.setMetadata(r, v, o).catch(rethrow('metadata')),
        unset: (r: NodeRef, k: readonly string[], o?: MutationOptions) =>
          this.unsetMetadata(r, k, o).catch(rethrow('metadata')),
        change: (r: NodeRef, c: MetadataChange, o?: MutationOptions) =>
          this.changeProperties(r, c, o).then(() => {}, rethrow('metadata')),
      }),
      favorites: Object.freeze({
        set: (user: string, id: ResourceId, on: boolean) =>
          this.favorites.set(user, id, on).catch(rethrow('favorite')),
        list: (user: string) => this.favorites.list(user).catch(rethrow('favorites')),
      }),
      mtime: Object.freeze({
        set: (r: NodeRef, mtime: number, o?: MutationOptions) =>
          this.setMtime(r, mtime, o).catch(rethrow('mtime')),
      }),
      spaces: Object.freeze({
        create: (i: CreateSpaceInput) => this.createSpace(i).catch(rethrow('create space')),
        update: (id: string, i: UpdateSpaceInput) => this.updateSpace(id, i).catch(rethrow('update space')),
        delete: (id: string) => this.deleteSpace(id).catch(rethrow('delete space')),
      }),
      grants: Object.freeze({
        list: (r: NodeRef) => this.listGrants(r).catch(rethrow('grants')),
        set: (r: NodeRef, g: Grant, o?: MutationOptions) => this.setGrant(r, g, o).catch(rethrow('grants')),
        remove: (r: NodeRef, g: Grantee, o?: MutationOptions) =>
          this.removeGrant(r, g, o).catch(rethrow('grants')),
        inspect: (r: NodeRef, o?: StatOptions) => this.inspect(r, o).catch(rethrow('stat')),
      }),
      locks: Object.freeze({
        get: (r: NodeRef) => this.getLock(r).catch(rethrow('lock')),
        set: (r: NodeRef, l: Lock, o?: MutationOptions) => this.setLock(r, l, o).catch(rethrow('lock')),
        refresh: (r: NodeRef, l: Lock, existing?: string) =>
          this.refreshLock(r, l, existing).catch(rethrow('lock')),
        unlock: (r: NodeRef, id: string, o?: MutationOptions) =>
          this.unlock(r, id, o).catch(rethrow('unlock')),
      }),
      ...(this.trash && {
        trash: Object.freeze({
          list: (spaceId: string, o?: { key?: string }) => guardIter('trash', this.listTrash(spaceId, o)),
          get: (spaceId: string, key: string) => this.trashItem(spaceId, key).catch(rethrow('trash')),
          restore: (spaceId: string, key: string, o?: { target?: NodeRef } & MutationOptions) =>
            this.restoreTrash(spaceId, key, o).catch(rethrow('restore')),
          purge: (spaceId: string, key?: string) => this.purgeTrash(spaceId, key).catch(rethrow('purge')),
        }),
      }),
      ...(this.keepVersions > 0 && {
        versions: Object.freeze({
          list: (r: NodeRef) => this.listVersions(r).catch(rethrow('versions')),
          read: (r: NodeRef, key: string, o?: ReadOptions) =>
            this.readVersion(r, key, o).catch(rethrow('versions')),
          restore: (r: NodeRef, key: string, o?: MutationOptions) =>
            this.restoreVersion(r, key, o).catch(rethrow('restore version')),
        }),
      }),
      quota: Object.freeze({
        enforced: true as const,
        free: (spaceId: string) => this.free(spaceId).catch(rethrow('quota')),
      }),
      watch: Object.freeze({
        start: (o: WatchOptions) => {
          this.check();
          const w = new PosixObserver(this.observerHost(), o);
          this.observers.add(w);
          const close = w.close.bind(w);
          w.close = async () => {
            this.observers.delete(w);
            await close();
          };
          return w;
        },
      }),
    });
  }

  private readonly observers = new Set<PosixObserver>();

  /** The parts of the driver its observer uses. */
  private observerHost(): ObserverHost {
    return {
      root: this.root,
      storageId: this.storageId,
      log: (m, e) => this.log(m, e),
      spaceAt: async (alias) => {
        try {
          return await this.space(alias);
        } catch (err) {
          if (StorageError.is(err, 'NOT_FOUND')) return undefined;
          throw err;
        }
      },
      allSpaces: async () => {
        const out: PosixSpace[] = [];
        for await (const { sp } of this.scanSpaces()) out.push(await this.space(sp.id));
        return out;
      },
      probe: (sp, key, id) => this.probe(sp, key, id),
      whereIs: (sp, id) =>
        this.resolveId(sp, id, 0, true).then(
          (r) => keyOf(r.segs),
          (err) => {
            if (StorageError.is(err, 'NOT_FOUND')) return undefined;
            throw err;
          },
        ),
      newIdentityHeld: (sp, segs, rec, parentId, st) => this.newIdentityHeld(sp, segs, rec, parentId, st),
      infoNow: (sp, segs, st, rec) => this.infoNow(sp, segs, st, rec),
      mergeMetadataHeld: async (sp, segs, rec, values) => {
        const md = await sp.readMetadata(segs, rec);
        Object.assign(md, values);
        const drop = await this.storeMetadata(sp, sp.abs(segs), rec, md);
        sp.writeHeld(segs, rec);
        await drop();
      },
      reject: async (sp, segs) => {
        if (!this.trash) return undefined;
        return this.deleteImpl({ spaceId: sp.id, segments: segs });
      },
    };
  }

  /** Clean what crashed space creations and deletions left in the root's tmp folder. */
  async init(): Promise<void> {
    await this.rootLock.run(async () => {
      for (const name of await fsp.readdir(`${this.root}/.stowage/tmp`)) {
        await this.removeTree(`${this.root}/.stowage/tmp/${name}`);
      }
    });
  }

  private log(message: string, err?: unknown): void {
    this.options.log?.(message, err);
  }

  private runInBackground(p: Promise<void>): void {
    const tracked = p.catch((err) => this.log('background task failed', err));
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  async idle(): Promise<void> {
    while (this.background.size) await Promise.all([...this.background]);
  }

  private check(): void {
    if (this.closed) throw new StorageError('UNAVAILABLE', 'driver is closed');
  }

  // ================================================================== public surface
  // Every entry point turns whatever escapes (an errno from a race with another process) into a StorageError.

  getSpace(idOrAlias: string): Promise<Space> {
    return this.getSpaceImpl(idOrAlias).catch(rethrow('space'));
  }
  spacePath(idOrAlias: string): Promise<string> {
    return this.spacePathImpl(idOrAlias).catch(rethrow('space'));
  }
  stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo> {
    return this.statImpl(ref, opts).catch(rethrow('stat'));
  }
  read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    return this.readImpl(ref, opts).catch(rethrow('read'));
  }
  write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    return this.writeImpl(ref, body, opts).catch(rethrow('write'));
  }
  mkdir(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    return this.mkdirImpl(ref, opts).catch(rethrow('mkdir'));
  }
  delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    return this.deleteImpl(ref, opts).catch(rethrow('delete'));
  }
  move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    return this.moveImpl(src, dst, opts).catch(rethrow('move'));
  }
  listSpaces(filter?: SpaceFilter): AsyncGenerator<Space> {
    return guardIter('list spaces', this.listSpacesImpl(filter));
  }
  fsck(opts: FsckOptions & { space?: string } = {}): Promise<FsckSpaceReport[]> {
    return (async () => {
      const targets: PosixSpace[] = [];
      if (opts.space) targets.push(await this.space(opts.space));
      else for await (const { sp } of this.scanSpaces()) targets.push(await this.space(sp.id));
      const reports: FsckSpaceReport[] = [];
      for (const sp of targets) {
        reports.push(await fsckSpace(this.native, sp, opts, this.favorites));
        await this.idle();
      }
      return reports;
    })().catch(rethrow('fsck'));
  }
  list(ref: NodeRef, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    return guardIter('list', this.listImpl(ref, opts));
  }

  // ================================================================== spaces

  /** A space from the cache when it was verified less than 2 s ago. */
  private spaceNow(idOrAlias: string): PosixSpace | undefined {
    const hit = this.spaces.get(idOrAlias);
    return hit && !this.closed && Date.now() - hit.checked < SPACE_RECHECK_MS ? hit.sp : undefined;
  }

  /** The bytes an unprivileged writer can still put on the filesystem holding a space. */
  private async free(spaceId: string): Promise<number> {
    const sp = await this.space(spaceId);
    const fs = await fsp.statfs(sp.root);
    return fs.bavail * fs.bsize;
  }

  /** The space for an id or alias, verified against its root record at most every 2 s. */
  private async space(idOrAlias: string): Promise<PosixSpace> {
    this.check();
    if (typeof idOrAlias !== 'string' || !idOrAlias || idOrAlias.includes('\0')) {
      throw new StorageError('NOT_FOUND', 'space not found');
    }
    const hit = this.spaces.get(idOrAlias);
    const now = Date.now();
    if (hit && now - hit.checked < SPACE_RECHECK_MS) return hit.sp;
    let alias: string | undefined;
    let expectId: string | undefined;
    if (idOrAlias.includes('/')) {
      alias = idOrAlias;
    } else {
      expectId = idOrAlias;
      if (!isValidId(idOrAlias))
        throw new StorageError('NOT_FOUND', `space "${printable(idOrAlias)}" not found`);
      alias =
        hit?.sp.alias ??
        (await fsp.readlink(`${this.root}/.stowage/spaces/${idOrAlias}`).catch(() => undefined));
    }
    let sp = alias ? await this.openSpace(alias).catch(() => undefined) : undefined;
    if (expectId && sp?.id !== expectId) {
      sp = await this.findSpaceById(expectId);
    }
    if (!sp) {
      this.forgetSpace(idOrAlias);
      throw new StorageError('NOT_FOUND', `space "${printable(idOrAlias)}" not found`);
    }
    const prev = this.spaces.get(sp.id)?.sp;
    const use = prev && prev.root === sp.root ? prev : sp;
    use.props = sp.props;
    this.spaces.delete(use.id);
    this.spaces.delete(use.alias);
    this.spaces.set(use.id, { sp: use, checked: now });
    this.spaces.set(use.alias, { sp: use, checked: now });
    while (this.spaces.size > MAX_CACHED_SPACES * 2) {
      const oldest = this.spaces.keys().next().value!;
      this.spaces.delete(oldest);
    }
    // Repair a commit a dead process left half done. If that fails, reads still work; commits
    // keep failing with a clear error until it succeeds or fsck repairs the space.
    await use.ready().catch((err) => this.log(`space ${use.alias}: crash repair failed`, err));
    this.runInBackground(use.ensureClean());
    return use;
  }

  private forgetSpace(key: string): void {
    const e = this.spaces.get(key);
    this.spaces.delete(key);
    if (e) {
      this.spaces.delete(e.sp.id);
      this.spaces.delete(e.sp.alias);
    }
  }

  private async openSpace(alias: string): Promise<PosixSpace | undefined> {
    const [type, name, ...rest] = alias.split('/');
    if (rest.length || !name || !(SPACE_TYPES as readonly string[]).includes(type!)) return undefined;
    checkName(name);
    const abs = `${this.root}/spaces/${type}/${name}`;
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    const rec = decodeRecord(await this.native.getxattr(abs, XATTR_NODE));
    if (!rec?.sp || rec.sp.alias !== alias) return undefined;
    return new PosixSpace(this.spaceEnv, rec.id, alias, abs, rec.sp);
  }

  private async findSpaceById(id: string): Promise<PosixSpace | undefined> {
    for await (const { sp } of this.scanSpaces()) {
      if (sp.id === id) {
        await this.writeSpaceIndex(id, sp.alias);
        return sp;
      }
    }
    return undefined;
  }

  private async writeSpaceIndex(id: string, alias: string): Promise<void> {
    const file = `${this.root}/.stowage/spaces/${id}`;
    const tmp = `${file}.${randomUUID()}`;
    await fsp.symlink(alias, tmp);
    await fsp.rename(tmp, file);
  }

  private async *scanSpaces(): AsyncGenerator<{ sp: PosixSpace; rec: NodeRecord }> {
    for (const type of SPACE_TYPES) {
      const dir = `${this.root}/spaces/${type}`;
      let names: string[];
      try {
        names = await fsp.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const abs = `${dir}/${name}`;
        const st = await fsp.lstat(abs).catch(() => undefined);
        if (!st?.isDirectory()) continue;
        const rec = decodeRecord(await this.native.getxattr(abs, XATTR_NODE).catch(() => undefined));
        if (!rec?.sp || rec.sp.alias !== `${type}/${name}`) continue;
        yield { sp: new PosixSpace(this.spaceEnv, rec.id, rec.sp.alias, abs, rec.sp), rec };
      }
    }
  }

  private spaceOut(id: string, rec: NodeRecord): Space {
    const p = rec.sp!;
    const tm = rec.tm ?? 0;
    return {
      id,
      storageId: this.storageId,
      type: p.type,
      name: p.name,
      alias: p.alias,
      ...(p.desc !== undefined && { description: p.desc }),
      ...(p.owner && { owner: { ...p.owner } }),
      ...(p.quota !== undefined && { quota: p.quota }),
      ...(p.disabled && { disabled: true }),
      root: { storageId: this.storageId, spaceId: id, opaqueId: id },
      used: (rec.ts ?? 0) + (rec.tts ?? 0) + (rec.vts ?? 0),
      usage: { files: rec.ts ?? 0, trash: rec.tts ?? 0, versions: rec.vts ?? 0 },
      mtime: tm / 1000,
      etag: folderEtag(id, tm),
    };
  }

  private async *listSpacesImpl(filter?: SpaceFilter): AsyncGenerator<Space> {
    this.check();
    for await (const { sp, rec } of this.scanSpaces()) {
      if (filter?.type && sp.props.type !== filter.type) continue;
      if (filter?.id && sp.id !== filter.id) continue;
      if (filter?.ownerId && sp.props.owner?.id !== filter.ownerId) continue;
      if (sp.props.disabled && !filter?.includeDisabled) continue;
      yield this.spaceOut(sp.id, rec);
    }
  }

  private async getSpaceImpl(idOrAlias: string): Promise<Space> {
    const sp = await this.space(idOrAlias);
    const rec = await sp.record([]);
    if (!rec?.sp) throw new StorageError('NOT_FOUND', `space "${printable(idOrAlias)}" not found`);
    return this.spaceOut(sp.id, rec);
  }

  private async spacePathImpl(idOrAlias: string): Promise<string> {
    return (await this.space(idOrAlias)).root;
  }

  private async createSpace(input: CreateSpaceInput): Promise<Space> {
    this.check();
    const id = input.id ?? randomUUID();
    if (!isValidId(id)) throw new StorageError('INVALID_ARGUMENT', `invalid space id "${printable(id)}"`);
    if (input.description !== undefined && Buffer.byteLength(input.description) > 2000) {
      throw new StorageError('INVALID_ARGUMENT', 'a space description is at most 2000 bytes');
    }
    return this.rootLock.run(async () => {
      if (input.id !== undefined && (await this.space(id).catch(() => undefined))) {
        throw new StorageError('ALREADY_EXISTS', `space ${id} already exists`);
      }
      const taken = async (alias: string) =>
        !!(await fsp.lstat(`${this.root}/spaces/${alias}`).catch(() => undefined));
      let alias: string;
      if (input.alias) {
        alias = input.alias;
        const [type, name, ...rest] = alias.split('/');
        if (type !== input.type || !name || rest.length) {
          throw new StorageError('INVALID_ARGUMENT', `invalid alias "${printable(alias)}"`);
        }
        checkName(name);
        if (await taken(alias)) throw new StorageError('ALREADY_EXISTS', `space "${alias}" already exists`);
      } else if (input.type === 'personal') {
        const who = input.owner?.username ?? input.owner?.id;
        if (!who) throw new StorageError('INVALID_ARGUMENT', 'a personal space needs an owner');
        alias = `personal/${checkName(who)}`;
        if (name(alias) === RESERVED_ROOT_NAME) throw new StorageError('INVALID_ARGUMENT', 'reserved name');
        if (await taken(alias)) throw new StorageError('ALREADY_EXISTS', `space "${alias}" already exists`);
      } else {
        const base = `project/${slugify(input.name)}`;
        alias = base;
        for (let n = 2; await taken(alias); n++) alias = `${base}-${n}`;
      }
      const props: SpaceProps = {
        type: input.type,
        name: input.name,
        alias,
        ...(input.owner && { owner: { ...input.owner } }),
        ...(input.description !== undefined && { desc: input.description }),
        ...(input.quota !== undefined && { quota: input.quota }),
      };
      const staging = `${this.root}/.stowage/tmp/space-${randomUUID()}`;
      await fsp.mkdir(staging);
      try {
        for (const d of ['.stowage', '.stowage/tmp', '.stowage/ids', '.stowage/meta'])
          await fsp.mkdir(`${staging}/${d}`);
        const rec: NodeRecord = { id, bt: Date.now(), ts: 0, tm: nowUs(), sp: props };
        await this.native.setxattr(staging, XATTR_NODE, encodeRecord(rec));
        if (this.durable) {
          await this.syncer.sync(`${staging}/.stowage`);
          await this.syncer.sync(staging);
        }
        await fsp.rename(staging, `${this.root}/spaces/${alias}`);
        await this.writeSpaceIndex(id, alias);
        await this.syncDir(`${this.root}/spaces/${input.type}`);
        return this.spaceOut(id, rec);
      } catch (err) {
        await this.removeTree(staging);
        throw toStorageError(err, 'create space');
      }
    });
  }

  private async updateSpace(idOrAlias: string, input: UpdateSpaceInput): Promise<Space> {
    const sp = await this.space(idOrAlias);
    if (input.description != null && Buffer.byteLength(input.description) > 2000) {
      throw new StorageError('INVALID_ARGUMENT', 'a space description is at most 2000 bytes');
    }
    return sp.commit(async () => {
      const rec = sp.recordHeld([]);
      if (!rec?.sp) throw new StorageError('NOT_FOUND', 'space not found');
      const p = rec.sp;
      if (input.name !== undefined) p.name = input.name;
      if (input.description === null) delete p.desc;
      else if (input.description !== undefined) p.desc = input.description;
      if (input.quota === null) delete p.quota;
      else if (input.quota !== undefined) p.quota = input.quota;
      if (input.disabled !== undefined) {
        if (input.disabled) p.disabled = true;
        else delete p.disabled;
      }
      rec.tm = nextTreeTime(rec.tm);
      sp.writeHeld([], rec);
      sp.props = p;
      return this.spaceOut(sp.id, rec);
    });
  }

  private async deleteSpace(idOrAlias: string): Promise<void> {
    const sp = await this.space(idOrAlias);
    const gone = `${this.root}/.stowage/tmp/rm-${randomUUID()}`;
    await this.rootLock.run(async () => {
      await sp.commit(async () => {
        await fsp.rename(sp.root, gone);
      });
      await fsp.unlink(`${this.root}/.stowage/spaces/${sp.id}`).catch(() => {});
    });
    await sp.lock.close();
    this.forgetSpace(sp.id);
    this.runInBackground(this.removeTree(gone));
    // (its resources' favorite marks go too, in the background: they point nowhere now)
    this.runInBackground(this.favorites.forgetSpace(sp.id));
  }

  // ================================================================== resolution

  /** Segments of a reference that starts at the space root (no id to resolve). */
  private locateNow(ref: NodeRef): string[] {
    const segs = ref.segments as string[];
    for (const s of segs) checkName(s);
    if (segs[0] === RESERVED_ROOT_NAME) {
      throw new StorageError('INVALID_ARGUMENT', `"${RESERVED_ROOT_NAME}" is reserved at the space root`, {
        reason: 'reserved-name',
      });
    }
    return [...segs];
  }

  /** Like {@link locate}, and the node itself when resolving its id already read it. */
  private async locateNode(sp: PosixSpace, ref: NodeRef): Promise<{ segs: string[]; node?: Loaded }> {
    if (ref.nodeId === undefined || ref.nodeId === sp.id) return { segs: this.locateNow(ref) };
    if (ref.segments.length) return { segs: await this.locate(sp, ref) };
    const found = await this.resolveId(sp, ref.nodeId);
    if (found.node && !this.placedAsRemembered(sp, found.segs, found.node.rec)) {
      found.node = {
        st: found.node.st,
        rec: await this.checkPlacement(sp, found.segs, found.node.rec, false),
      };
    }
    return found;
  }

  /** Space-relative segments a reference points at. */
  private async locate(sp: PosixSpace, ref: NodeRef): Promise<string[]> {
    for (const s of ref.segments) checkName(s);
    const base =
      ref.nodeId === undefined || ref.nodeId === sp.id ? [] : (await this.resolveId(sp, ref.nodeId)).segs;
    const segs = base.length ? [...base, ...ref.segments] : [...ref.segments];
    if (segs[0] === RESERVED_ROOT_NAME) {
      throw new StorageError('INVALID_ARGUMENT', `"${RESERVED_ROOT_NAME}" is reserved at the space root`, {
        reason: 'reserved-name',
      });
    }
    return segs;
  }

  /**
   * The node at `key` if it has a record, and carries `id` when one is given: a file or folder
   * reached without symlinks. Undefined for anything else, never an error.
   */
  private async probe(sp: PosixSpace, key: string, id?: string): Promise<Loaded | undefined> {
    const segs = segsOf(key);
    if (segs[0] === RESERVED_ROOT_NAME) return undefined;
    try {
      for (const s of segs) checkName(s);
      const real = segs.length >= 2 ? this.checkReal(sp, segs.slice(0, -1)) : undefined;
      real?.catch(() => {});
      const st = await fsp.lstat(sp.abs(segs));
      if (real) await real;
      if (!(st.isFile() || st.isDirectory())) return undefined;
      const rec = await sp.record(segs);
      return rec && (id === undefined || rec.id === id) ? { st, rec } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Is `id` the node at `key`? */
  private async isAt(sp: PosixSpace, key: string, id: string): Promise<boolean> {
    return (await this.probe(sp, key, id)) !== undefined;
  }

  /**
   * Where a node id is now: LRU, index entry, the parent's entry, the parent folder, then a full scan.
   * Returns the node as found when the first, cheap places had it (callers reuse it instead of a stat).
   * `cheap`: the entries only (its own, then its parents'), no folder read and no scan.
   */
  private async resolveId(
    sp: PosixSpace,
    id: string,
    depth = 0,
    cheap = false,
  ): Promise<{ segs: string[]; node?: Loaded }> {
    if (id === sp.id) return { segs: [] };
    if (!isValidId(id) || depth > 256) throw new StorageError('NOT_FOUND', 'resource not found');
    const cached = sp.index.cached(id);
    if (cached !== undefined) {
      const node = await this.probe(sp, cached, id);
      if (node) return { segs: segsOf(cached), node };
    }
    const entry = await sp.index.read(id);
    if (entry) {
      if (entry.rel !== cached) {
        const node = await this.probe(sp, entry.rel, id);
        if (node) {
          sp.index.remember(id, entry.rel);
          // The entry and the node agree on the parent: remember it too (saves reading its record).
          if (node.rec.p === entry.parent) sp.index.remember(entry.parent, parentKeyOf(entry.rel));
          return { segs: segsOf(entry.rel), node };
        }
      }
      // Moved with its folder (entry below a moved folder is stale) or renamed around us.
      const name = segsOf(entry.rel).at(-1);
      let parentSegs: string[] | undefined;
      try {
        parentSegs = (await this.resolveId(sp, entry.parent, depth + 1, cheap)).segs;
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND')) throw err;
      }
      if (parentSegs && name !== undefined) {
        const key = keyOf([...parentSegs, name]);
        if (await this.isAt(sp, key, id)) {
          await sp.index.write(id, entry.parent, key);
          return { segs: segsOf(key) };
        }
        const found = cheap ? undefined : await this.findInFolder(sp, parentSegs, id);
        if (found) {
          await sp.index.write(id, entry.parent, keyOf(found));
          return { segs: found };
        }
      }
    }
    const scanned = sp.missing.get(id);
    if (!cheap && (scanned === undefined || Date.now() - scanned > this.scanIntervalMs)) {
      await this.fullScan(sp);
      const after = await sp.index.read(id);
      if (after && (await this.isAt(sp, after.rel, id))) return { segs: segsOf(after.rel) };
      sp.missing.set(id, Date.now());
      if (sp.missing.size > 10_000) sp.missing.delete(sp.missing.keys().next().value!);
    }
    throw new StorageError('NOT_FOUND', 'resource not found');
  }

  private async findInFolder(sp: PosixSpace, segs: string[], id: string): Promise<string[] | undefined> {
    let dir: fs.Dir;
    try {
      dir = await fsp.opendir(sp.abs(segs), { bufferSize: 256 });
    } catch {
      return undefined;
    }
    for await (const d of dir) {
      if (d.isSymbolicLink() || (segs.length === 0 && d.name === RESERVED_ROOT_NAME)) continue;
      const child = [...segs, d.name];
      const rec = await sp.record(child).catch(() => undefined);
      if (rec?.id === id) return child; // leaving for-await closes the handle
    }
    return undefined;
  }

  /**
   * Walk the whole space, rewrite index entries that are wrong, and drop entries of ids that no
   * longer exist. At most one scan per space at a time and one per `scanIntervalMs`.
   */
  private async fullScan(sp: PosixSpace): Promise<void> {
    if (sp.scanning) return sp.scanning;
    if (Date.now() - sp.lastScan < this.scanIntervalMs) return;
    sp.scanning = (async () => {
      const started = Date.now();
      // Memory stays flat: no set of every id; an entry is rewritten only when it is wrong, and an
      // entry that still names a live node (the original of a copy, say) is never overwritten.
      const walk = async (segs: string[], parentId: string): Promise<void> => {
        let dir: fs.Dir;
        try {
          dir = await fsp.opendir(sp.abs(segs), { bufferSize: 256 });
        } catch {
          return;
        }
        for await (const d of dir) {
          if (d.isSymbolicLink() || (segs.length === 0 && d.name === RESERVED_ROOT_NAME)) continue;
          const child = [...segs, d.name];
          const st = await fsp.lstat(sp.abs(child)).catch(() => undefined);
          if (!st || !(st.isFile() || st.isDirectory())) continue;
          const rec = await sp.record(child).catch(() => undefined);
          if (rec) {
            const key = keyOf(child);
            const entry = await sp.index.read(rec.id);
            const right = entry?.rel === key && entry.parent === parentId;
            if (!right && !(entry && (await this.isAt(sp, entry.rel, rec.id)))) {
              await sp.index.write(rec.id, parentId, key);
            }
          }
          if (st.isDirectory() && rec) await walk(child, rec.id);
        }
      };
      await walk([], sp.id);
      // Entries older than the scan that name nothing: ids that no longer exist. Checked one by one,
      // so a node moved while the scan ran keeps its entry; nodes in the trash keep theirs.
      const trashed = await sp.trashIds();
      for await (const e of sp.index.entries()) {
        if (e.mtimeMs >= started || trashed.has(e.id)) continue;
        const entry = await sp.index.read(e.id);
        if (entry && !(await this.isAt(sp, entry.rel, e.id))) await sp.index.remove(e.id);
      }
      sp.lastScan = Date.now();
    })().finally(() => {
      sp.scanning = undefined;
    });
    return sp.scanning;
  }

  /** Fail with NOT_FOUND if any folder between the space root and the node is a symlink. */
  private async checkReal(sp: PosixSpace, parentSegs: readonly string[]): Promise<void> {
    if (parentSegs.length === 0) return;
    if (this.syncMetadata) {
      // A folder found real within the last moment is taken for real while it is still the same
      // folder at that path (one lstat): a symlink put in the place of a folder above it would
      // lead to another one. Without this, what looks at every folder above a node (the locks
      // above it) costs the square of its depth: 56 s for a PROPFIND 1,000 folders deep.
      const now = performance.now();
      const key = keyOf(parentSegs);
      const seen = sp.realDirs.get(key);
      if (seen && now - seen.at < REAL_DIR_MAX_AGE_MS) {
        const st = fs.lstatSync(sp.abs(parentSegs), { throwIfNoEntry: false });
        if (st?.isDirectory() && st.ino === seen.ino) return;
      }
      // One lstat per folder from the space root down: realpath(3) would readlink every component
      // of the absolute path, the storage root's included, on every call. Each folder on the way
      // is remembered as real.
      if (sp.realDirs.size > 10_000) sp.realDirs.clear();
      let p = sp.root;
      let k = '';
      for (let i = -1; i < parentSegs.length; i++) {
        if (i >= 0) {
          p += `/${parentSegs[i]}`;
          k = i === 0 ? parentSegs[0]! : `${k}/${parentSegs[i]}`;
        }
        const st = fs.lstatSync(p, { throwIfNoEntry: false });
        if (st?.isSymbolicLink())
          throw new StorageError('NOT_FOUND', 'path leads through a symbolic link', { reason: 'symlink' });
        if (!st?.isDirectory()) throw new StorageError('NOT_FOUND', 'path: not found');
        if (i >= 0) sp.realDirs.set(k, { ino: st.ino, at: now });
      }
      return;
    }
    const p = sp.abs(parentSegs);
    let real: string;
    try {
      real = await fsp.realpath(p);
    } catch (err) {
      throw toStorageError(err, 'path');
    }
    if (real !== p)
      throw new StorageError('NOT_FOUND', 'path leads through a symbolic link', { reason: 'symlink' });
  }

  /**
   * lstat + record of a node that must exist as a file or folder reached without symlinks. Nodes
   * without a record get one; records that disagree with where the node is are reconciled.
   */
  private async load(sp: PosixSpace, segs: string[], held = false): Promise<Loaded> {
    const abs = sp.abs(segs);
    // Asynchronous lookups check the folders while the node's lstat runs. Synchronous ones lstat
    // the node first: a node that is not there (a new file's target, looked up several times per
    // write) is not found whatever the folders above are, so they need no lstat of their own.
    const real = segs.length >= 2 && !this.syncMetadata ? this.checkReal(sp, segs.slice(0, -1)) : undefined;
    real?.catch(() => {});
    let st: fs.Stats | undefined;
    try {
      st = this.syncMetadata ? fs.lstatSync(abs, { throwIfNoEntry: false }) : await fsp.lstat(abs);
    } catch (err) {
      throw toStorageError(err, `"${printable(segs.at(-1) ?? '/')}"`);
    }
    // (missing is common, a new file's target: one error instead of an errno one and its mapping)
    if (!st) throw new StorageError('NOT_FOUND', `"${printable(segs.at(-1) ?? '/')}": not found`);
    if (real) await real;
    else if (segs.length >= 2) await this.checkReal(sp, segs.slice(0, -1));
    if (!(st.isFile() || st.isDirectory())) {
      throw new StorageError('NOT_FOUND', `"${printable(segs.at(-1))}" not found`, {
        reason: st.isSymbolicLink() ? 'symlink' : undefined,
      });
    }
    let rec = held ? sp.recordHeld(segs) : this.syncMetadata ? sp.recordFor(segs, st) : await sp.record(segs);
    if (!rec) rec = held ? await sp.assimilateHeld(segs) : await sp.commit(() => sp.assimilateHeld(segs));
    else if (!this.placedAsRemembered(sp, segs, rec)) rec = await this.checkPlacement(sp, segs, rec, held);
    if (segs.length) sp.index.noteShape(keyOf(segs), rec, st);
    // A commit that writes this record (after a rename, metadata, a lock) carries the checksums'
    // confirmation forward when they are still current, so its own ctime move is no suspicion.
    if (held && st.isFile()) rec = sp.confirmChecksums(rec, st);
    return { st, rec };
  }

  /** The cheap, memory-only part of {@link checkPlacement}: node and parent seen exactly there before. */
  private placedAsRemembered(sp: PosixSpace, segs: string[], rec: NodeRecord): boolean {
    if (segs.length === 0) return true;
    const key = keyOf(segs);
    if (sp.index.cached(rec.id) !== key) return false;
    if (segs.length === 1) return rec.p === sp.id;
    return rec.p !== undefined && sp.index.cached(rec.p) === keyOf(segs.slice(0, -1));
  }

  /** The folder a new node goes into: must exist, be a folder, and be reached without symlinks. */
  private async loadParent(sp: PosixSpace, parentSegs: string[], held = false): Promise<NodeRecord> {
    try {
      const { st, rec } = await this.load(sp, parentSegs, held);
      if (!st.isDirectory()) throw new StorageError('NOT_FOUND', 'not a folder');
      return rec;
    } catch (err) {
      if (StorageError.is(err, 'NOT_FOUND')) {
        throw new StorageError('FAILED_PRECONDITION', 'parent folder does not exist', {
          reason: 'parent-missing',
        });
      }
      throw err;
    }
  }

  /** What is at a target of a mutation: undefined when free; a symlink in the way is refused. */
  private async peek(sp: PosixSpace, segs: string[], held: boolean): Promise<Loaded | undefined> {
    let st: fs.Stats | undefined;
    try {
      // (a missing node is the usual case for a new file: no exception for it)
      st = this.syncMetadata
        ? fs.lstatSync(sp.abs(segs), { throwIfNoEntry: false })
        : await fsp.lstat(sp.abs(segs));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw toStorageError(err, 'target');
    }
    if (!st) return undefined;
    if (!(st.isFile() || st.isDirectory())) {
      throw new StorageError('FAILED_PRECONDITION', 'a symbolic link or special file is in the way', {
        reason: 'symlink',
      });
    }
    return this.load(sp, segs, held);
  }

  /**
   * Check that a record agrees with where the node is, and fix moves made around Stowage and copies
   * made with their xattrs. The process-local LRU is only filled from verified facts; when it knows
   * nothing, the persisted index entry decides (one readlink).
   */
  private async checkPlacement(
    sp: PosixSpace,
    segs: string[],
    rec: NodeRecord,
    held: boolean,
    parentId?: string,
  ): Promise<NodeRecord> {
    if (segs.length === 0) return rec;
    const key = keyOf(segs);
    const parentKey = keyOf(segs.slice(0, -1));
    const seenAt = sp.index.cached(rec.id);
    let consistent: boolean;
    if (seenAt === key) {
      if (parentId !== undefined) consistent = rec.p === parentId;
      else if (segs.length === 1) consistent = rec.p === sp.id;
      else if (rec.p !== undefined && sp.index.cached(rec.p) === parentKey) consistent = true;
      else {
        const parent = held ? sp.recordHeld(segs.slice(0, -1)) : await sp.record(segs.slice(0, -1));
        consistent = parent !== undefined && parent.id === rec.p;
        if (parent && consistent) sp.index.remember(parent.id, parentKey);
      }
    } else if (seenAt !== undefined) {
      consistent = false;
    } else {
      const entry = await sp.index.read(rec.id);
      consistent =
        entry !== undefined &&
        entry.rel === key &&
        entry.parent === rec.p &&
        (parentId === undefined || parentId === rec.p);
      if (consistent) sp.index.remember(rec.p!, parentKey);
    }
    if (consistent) {
      sp.index.remember(rec.id, key);
      return rec;
    }
    return held ? this.reconcileHeld(sp, segs) : sp.commit(() => this.reconcileHeld(sp, segs));
  }

  /**
   * Settle where a node belongs (commit lock held). The persisted index entry names the original:
   * when it points elsewhere and that place still carries the id, this node is a copy and gets a new
   * id; when it points here, another sighting of the id is the copy. Otherwise the node moved here.
   */
  private async reconcileHeld(sp: PosixSpace, segs: string[]): Promise<NodeRecord> {
    const here = await fsp.lstat(sp.abs(segs));
    const cur = sp.recordHeld(segs);
    if (!cur) return sp.assimilateHeld(segs);
    const key = keyOf(segs);
    const parentSegs = segs.slice(0, -1);
    const parent = sp.recordHeld(parentSegs) ?? (await sp.assimilateHeld(parentSegs));
    sp.index.remember(parent.id, keyOf(parentSegs));
    const entry = await sp.index.read(cur.id);
    if (entry && entry.rel !== key) {
      let there = await this.probe(sp, entry.rel, cur.id);
      if (!there) {
        // A folder above the original moved around Stowage since its entry was written: look
        // where that folder is now (a copy made after such a move must not take the id).
        const now = await this.placeNow(sp, entry, 0);
        if (now !== undefined && now !== key) there = await this.probe(sp, now, cur.id);
      }
      // Hard links of one file share one inode, so one record and one id: nothing to settle.
      if (there && sameFile(there.st, here)) return cur;
      if (there) return this.newIdentityHeld(sp, segs, cur, parent.id, here);
    }
    if (entry?.rel === key) {
      const other = sp.index.cached(cur.id);
      const there = other !== undefined && other !== key ? await this.probe(sp, other, cur.id) : undefined;
      if (there && !sameFile(there.st, here)) {
        const otherSegs = segsOf(other!);
        const otherParent = sp.recordHeld(otherSegs.slice(0, -1));
        if (otherParent) await this.newIdentityHeld(sp, otherSegs, there.rec, otherParent.id, there.st);
      }
    }
    if (cur.p !== parent.id) {
      cur.p = parent.id;
      sp.writeHeld(segs, cur);
    }
    if (entry?.rel !== key || entry.parent !== parent.id) await sp.index.write(cur.id, parent.id, key);
    sp.index.remember(cur.id, key);
    return cur;
  }

  /**
   * Where the node of an index entry is now, when the entry's path is stale because a folder above
   * it moved around Stowage: its parent's place now (found the same way, up to the root), then its
   * own name. Undefined when that does not lead to it either.
   */
  private async placeNow(sp: PosixSpace, entry: IndexEntry, depth: number): Promise<string | undefined> {
    if (entry.parent === sp.id || depth > 64) return undefined;
    const parent = await sp.index.read(entry.parent);
    if (!parent) return undefined;
    const parentNow = (await this.isAt(sp, parent.rel, entry.parent))
      ? parent.rel
      : await this.placeNow(sp, parent, depth + 1);
    if (parentNow === undefined) return undefined;
    const name = entry.rel.slice(entry.rel.lastIndexOf('/') + 1);
    return parentNow ? `${parentNow}/${name}` : name;
  }

  /**
   * Give a node that duplicates another's id (a copy made around Stowage) an id of its own, and
   * the time it came to be on disk (`st` is its stat).
   */
  private async newIdentityHeld(
    sp: PosixSpace,
    segs: string[],
    rec: NodeRecord,
    parentId: string,
    st: fs.Stats,
  ): Promise<NodeRecord> {
    const copy: NodeRecord = { ...rec, id: randomUUID(), p: parentId, bt: bornAt(st), ex: 1 };
    if (rec.md === 2) await this.copySidecar(sp, rec.id, sp, copy.id);
    await sp.index.write(copy.id, parentId, keyOf(segs));
    sp.writeHeld(segs, copy);
    return copy;
  }

  // ================================================================== info

  /** Resource info, reading what it needs beyond the record (metadata, a first tree size). */
  private async info(
    sp: PosixSpace,
    segs: string[],
    st: fs.Stats,
    rec: NodeRecord,
    opts?: StatOptions,
  ): Promise<ResourceInfo> {
    if (st.isDirectory() && rec.ts === undefined) rec = await this.account(sp, segs);
    const info = this.infoNow(sp, segs, st, rec, opts);
    if (rec.g && opts?.fields?.includes('grants')) info.grants = await this.readGrants(sp, sp.abs(segs), rec);
    const keys = opts?.metadataKeys;
    if (keys) {
      const all = await sp.readMetadata(segs, rec);
      if (keys === '*') info.metadata = all;
      else {
        const md: Record<string, string> = {};
        for (const k of keys) if (Object.hasOwn(all, k)) md[k] = all[k]!;
        info.metadata = md;
      }
    }
    return info;
  }

  /** True when {@link infoNow} alone answers (no metadata asked for, folder already accounted). */
  private infoIsNow(st: fs.Stats, rec: Readonly<NodeRecord>, opts?: StatOptions): boolean {
    if (opts?.metadataKeys) return false;
    if (rec.g && opts?.fields?.includes('grants')) return false;
    return !st.isDirectory() || rec.ts !== undefined;
  }

  /** Resource info from the record and the stat alone, without I/O. */
  private infoNow(
    sp: PosixSpace,
    segs: string[],
    st: fs.Stats,
    rec: Readonly<NodeRecord>,
    opts?: StatOptions,
  ): ResourceInfo {
    const fields = opts?.fields ?? DEFAULT_FIELDS;
    const name = segs.length ? segs[segs.length - 1]! : sp.props.name;
    const id = { storageId: this.storageId, spaceId: sp.id, opaqueId: rec.id };
    const path = segs.length ? `/${segs.join('/')}` : '/';
    let info: ResourceInfo;
    if (st.isDirectory()) {
      const tm = rec.tm ?? Math.round(st.mtimeMs * 1000);
      info = {
        id,
        path,
        name,
        type: 'folder',
        size: rec.ts ?? 0,
        mtime: tm / 1000,
        etag: etagOf(rec, tm, -1, undefined),
        mimeType: FOLDER_MIME_TYPE,
      };
    } else {
      const valid = checksumsValid(rec, st);
      info = {
        id,
        path,
        name,
        type: 'file',
        size: st.size,
        mtime: st.mtimeMs,
        // (the inode's change time: later than any change of its content or its time)
        changed: Math.max(st.ctimeMs, st.mtimeMs),
        etag: etagOf(rec, st.mtimeMs, st.size, valid && !rec.en ? rec.ck!.sha1 : undefined),
        mimeType: mimeTypeOf(name),
      };
      // Touched around Stowage since they were confirmed (the ctime says so though size and mtime
      // match): not shown until hashed again; the etag stays until then (it may be unchanged).
      if (valid && fields.includes('checksums') && !sp.checksumsSuspect(rec, st))
        info.checksums = { ...rec.ck! };
      if (st.nlink > 1) info.links = st.nlink;
    }
    if (rec.bt !== undefined) info.created = rec.bt;
    if (segs.length && rec.p && fields.includes('parentId')) {
      info.parentId = { storageId: this.storageId, spaceId: sp.id, opaqueId: rec.p };
    }
    if (rec.lk && fields.includes('lock')) {
      const lock = liveLock(lockOf(rec.lk));
      if (lock) info.lock = lock;
    }
    if (fields.includes('grants') && !rec.g) info.grants = [];
    return info;
  }

  /** Account a folder that has no tree size yet (made around Stowage): count it, and tell its ancestors. */
  private async account(sp: PosixSpace, segs: string[]): Promise<NodeRecord> {
    return sp.commit(async (journal) => {
      const rec = sp.recordHeld(segs) ?? (await sp.assimilateHeld(segs));
      if (rec.ts !== undefined) return rec;
      if (segs.length === 0) {
        rec.ts = await sp.treeSizeHeld(segs);
        rec.tm = nextTreeTime(rec.tm);
        sp.writeHeld(segs, rec);
        return rec;
      }
      journal.begin({ dirs: [segs] });
      await sp.propagateHeld(new Map([[keyOf(segs), 0]]));
      return sp.recordHeld(segs)!;
    });
  }

  // ================================================================== reads

  private async statImpl(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo> {
    const sp = this.spaceNow(ref.spaceId) ?? (await this.space(ref.spaceId));
    const { segs, node } = await this.locateNode(sp, ref);
    const { st, rec } = node ?? (await this.load(sp, segs));
    return this.infoIsNow(st, rec, opts)
      ? this.infoNow(sp, segs, st, rec, opts)
      : this.info(sp, segs, st, rec, opts);
  }

  private async *listImpl(ref: NodeRef, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    const dir = await this.load(sp, segs);
    if (!dir.st.isDirectory())
      throw new StorageError('FAILED_PRECONDITION', 'not a folder', { reason: 'not-folder' });
    const treeSize = dir.rec.ts;
    const treeTime = dir.rec.tm;
    const dirId = dir.rec.id;
    const key = keyOf(segs);
    sp.index.remember(dirId, key);
    let sum = 0;
    let complete = false;
    const entry = async (name: string): Promise<ResourceInfo | undefined> => {
      opts?.signal?.throwIfAborted();
      const child = [...segs, name];
      try {
        const st = await fsp.lstat(sp.abs(child));
        if (!(st.isFile() || st.isDirectory())) return undefined;
        let rec = await sp.record(child);
        // Copies within this folder are told apart by the index entry (see checkPlacement).
        if (!rec) rec = await sp.commit(() => sp.assimilateHeld(child));
        else rec = await this.checkPlacement(sp, child, rec, false, dirId);
        sp.index.noteShape(keyOf(child), rec, st);
        return this.infoIsNow(st, rec, opts)
          ? this.infoNow(sp, child, st, rec, opts)
          : await this.info(sp, child, st, rec, opts);
      } catch (err) {
        // Removed or replaced while we looked: it is simply not part of this listing.
        if (isMissing(err) || StorageError.is(err, 'NOT_FOUND')) return undefined;
        throw err;
      }
    };
    if (this.syncMetadata) {
      // Local filesystem: read the folder and each entry's metadata with synchronous syscalls, a
      // batch at a time (a few µs each, from the kernel's caches), and go asynchronous only for
      // entries that need more (new to Stowage, moved around it, asked for metadata).
      const handle = fs.opendirSync(sp.abs(segs), { bufferSize: 1024 });
      try {
        for (;;) {
          opts?.signal?.throwIfAborted();
          const batch: (ResourceInfo | string)[] = [];
          let d: fs.Dirent | null = null;
          while (batch.length < 256) {
            d = handle.readSync();
            if (d === null) break;
            if (d.isSymbolicLink()) continue;
            if (segs.length === 0 && d.name === RESERVED_ROOT_NAME) continue;
            batch.push(this.entryNow(sp, segs, d.name, dirId, opts) ?? d.name);
          }
          for (const x of batch) {
            opts?.signal?.throwIfAborted();
            const info = typeof x === 'string' ? await entry(x) : x;
            if (!info) continue;
            sum += info.size;
            yield info;
          }
          if (d === null) break;
          // Let timers and I/O run between batches (yielding alone only runs microtasks).
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        complete = true;
      } finally {
        handle.closeSync();
      }
    } else {
      const handle = await fsp.opendir(sp.abs(segs), { bufferSize: 128 });
      const names = (async function* () {
        for await (const d of handle) {
          if (d.isSymbolicLink()) continue;
          if (segs.length === 0 && d.name === RESERVED_ROOT_NAME) continue;
          yield d.name;
        }
      })();
      try {
        for await (const info of mapOrdered(names, this.listConcurrency, entry)) {
          sum += info.size;
          yield info;
        }
        complete = true;
      } finally {
        await handle.close().catch(() => {});
      }
    }
    if (complete && treeSize !== undefined && sum !== treeSize) {
      await this.repairDrift(sp, segs, treeTime, sum).catch((err) =>
        this.log('tree size repair failed', err),
      );
    }
  }

  /**
   * A listed entry's info from synchronous calls alone, when it is the plain case: a file or a
   * folder with a record, placed as the index remembers. Undefined for anything else (the caller
   * takes the asynchronous path, which handles every case); gone entries are skipped by it too.
   */
  private entryNow(
    sp: PosixSpace,
    segs: string[],
    name: string,
    dirId: string,
    opts?: ListOptions,
  ): ResourceInfo | undefined {
    const child = [...segs, name];
    let st: fs.Stats;
    let rec: Readonly<NodeRecord> | undefined;
    try {
      st = fs.lstatSync(sp.abs(child));
      if (!(st.isFile() || st.isDirectory())) return undefined;
      rec = sp.recordForRead(child, st);
    } catch {
      return undefined;
    }
    const key = keyOf(child);
    if (!rec || rec.p !== dirId || sp.index.cached(rec.id) !== key) return undefined;
    sp.index.noteShape(key, rec, st);
    return this.infoIsNow(st, rec, opts) ? this.infoNow(sp, child, st, rec, opts) : undefined;
  }

  /**
   * A complete listing found the children's sizes add up to something else than the folder's tree
   * size (a change made around Stowage). Correct it, unless a commit went through the folder meanwhile.
   */
  private async repairDrift(
    sp: PosixSpace,
    segs: string[],
    treeTime: number | undefined,
    sum: number,
  ): Promise<void> {
    await sp.commit(async (journal) => {
      const rec = sp.recordHeld(segs);
      if (!rec || rec.tm !== treeTime || rec.ts === undefined || rec.ts === sum) return;
      const delta = sum - rec.ts;
      journal.begin({ dirs: [segs] });
      const parent = segs.slice(0, -1);
      rec.ts = sum;
      rec.tm = nextTreeTime(rec.tm);
      sp.writeHeld(segs, rec);
      if (segs.length) await sp.propagateHeld(new Map([[keyOf(parent), delta]]));
      // No event says so: tell the caches that observers feed (the folders above follow).
      for (const w of this.observers) w.reportStale(sp.id, [], [keyOf(segs)]);
    });
  }

  private async readImpl(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    // A file replaced or rewritten between the lookup and the read is looked up again, twice at
    // most; then the reader is told to come back (UNAVAILABLE), never that a precondition failed.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.readOnce(ref, opts);
      } catch (err) {
        if (!StorageError.is(err, 'ABORTED') || (err as StorageError).reason !== CHANGED_WHILE_READ)
          throw err;
        if (attempt >= 2)
          throw new StorageError('UNAVAILABLE', 'the file keeps changing while it is read; retry', {
            cause: err,
          });
      }
    }
  }

  private async readOnce(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    const sp = this.spaceNow(ref.spaceId) ?? (await this.space(ref.spaceId));
    const { segs, node } = await this.locateNode(sp, ref);
    const { st, rec } = node ?? (await this.load(sp, segs));
    const info = await this.info(sp, segs, st, rec, opts);
    if (!st.isFile())
      throw new StorageError('FAILED_PRECONDITION', 'cannot read a folder', { reason: 'is-folder' });
    return this.serveFile(sp.abs(segs), info, opts, st);
  }

  /**
   * Answer a read of a file from its info: 304/412/416 without opening it, else a stream of the
   * (range of the) content, opened without following symlinks and checked to be the file `st` saw.
   */
  private async serveFile(
    abs: string,
    info: ResourceInfo,
    opts?: ReadOptions,
    st?: fs.Stats,
  ): Promise<ReadResult> {
    const cond = evaluateConditions(opts?.conditions, info, 'read');
    if (cond !== 200) return { status: cond, info };
    const range = rangeToServe(opts, info);
    if (range === null) return { status: 416, info };
    const flags = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
    const start = range?.start ?? 0;
    const end = range ? range.end : info.size - 1;
    if (this.syncMetadata && end - start < SMALL_READ_BYTES) {
      const bytes = readSmall(abs, flags, start, Math.max(0, end - start + 1), info.name, st);
      const result: ReadResult = range ? { status: 206, info, range, bytes } : { status: 200, info, bytes };
      return withLazyBody(result, bytes);
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(abs, flags);
    } catch (err) {
      throw toStorageError(err, `"${printable(info.name)}"`);
    }
    try {
      const fst = await fh.stat();
      if (!fst.isFile() || (st && !sameFile(fst, st))) {
        throw new StorageError('ABORTED', 'the file changed while it was being opened; retry', {
          reason: CHANGED_WHILE_READ,
        });
      }
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    const stream = fh.createReadStream({
      start,
      ...(end >= start && { end }),
      highWaterMark: 1024 * 1024,
      ...(opts?.signal && { signal: opts.signal }),
    });
    // Errors while streaming (EIO, an abort) reach the consumer as StorageErrors too. A consumer
    // listens for them as it reads; one that never reads it (HTTP sends the file by its handle)
    // must not have an abort that comes first (a client gone at once) thrown as an unhandled
    // 'error' event, which ends the process.
    const destroy = stream._destroy.bind(stream);
    stream._destroy = (err, cb) => destroy(err, (e) => cb(e ? toStorageError(e, 'read') : e));
    stream.on('error', () => {});
    const file = { handle: fh, start, end };
    return range
      ? { status: 206, info, range, body: stream, file }
      : { status: 200, info, body: stream, file };
  }

  // ================================================================== writes

  private async writeImpl(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    if (!segs.length) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be replaced');
    const parentSegs = segs.slice(0, -1);
    const key = keyOf(segs);
    // Big (or unknown) bodies are hashed on three threads; small ones here, without the hand-off.
    const expected = opts?.size ?? knownLength(body);
    const small = this.syncMetadata && expected !== undefined && expected <= SMALL_BODY_BYTES;
    // Missing parent, folder in the way, lock, precondition, quota: checked before any byte is read,
    // so a refused upload is not read in vain and its refusal comes before any fault of the body
    // (checksum, size, mtime). Returns the room the space has left for the body.
    const precheck = async (): Promise<number | undefined> => {
      await this.loadParent(sp, parentSegs);
      const before = await this.peek(sp, segs, false);
      await this.checkReplace(sp, segs, before, opts);
      const room = await this.room(sp, before && !this.keepVersions ? before.st.size : 0);
      if (opts?.size !== undefined && room !== undefined && opts.size > room) {
        throw new StorageError('INSUFFICIENT_STORAGE', 'the space quota does not allow this upload');
      }
      return room;
    };
    // A small body is read at once, unchecked: the commit makes the same checks under the lock, and
    // a fault of the body is reported only after they held (below).
    const room = small ? undefined : await precheck();

    const release = await sp.holdLive();
    const tmpAbs = `${sp.tmp}/${sp.tmpName('up')}`;
    let fh: TempFile;
    try {
      fh = small
        ? await this.createTemp(sp, () => openFd(tmpAbs).then(syncTempFile))
        : await this.createTemp(sp, () => fsp.open(tmpAbs, 'wx', 0o666));
    } catch (err) {
      release();
      throw err;
    }
    let closed = false;
    try {
      const acc =
        expected === undefined || expected >= PARALLEL_CHECKSUM_BYTES
          ? new ParallelChecksums()
          : new ChecksumAccumulator();
      let checksums: Required<Checksums>;
      let st: fs.Stats;
      try {
        try {
          await this.streamInto(fh, body, acc, opts, room);
        } catch (err) {
          if (acc instanceof ParallelChecksums) acc.cancel();
          throw err;
        }
        checksums = await acc.digest();
        verifyChecksums(opts?.checksums, checksums);
        if (opts?.mtime !== undefined) {
          const t = toUtimeSeconds(opts.mtime);
          await fh.utimes(t, t);
        }
        if (this.durable) await fh.sync();
        st = await fh.stat();
        // A filesystem clamps a time it cannot hold (ext4: 1901 to 2446) without a word.
        if (opts?.mtime !== undefined && Math.abs(st.mtimeMs - opts.mtime) >= 1000)
          throw new StorageError('INVALID_ARGUMENT', 'this filesystem cannot store that modification time', {
            reason: 'time-out-of-range',
          });
      } catch (err) {
        // A refusal of the write itself comes first, as when it was checked before the body.
        if (small) await precheck();
        throw err;
      }
      const rec = await sp.commit(async (journal) => {
        const parent = await this.loadParent(sp, parentSegs, true);
        const cur = await this.peek(sp, segs, true);
        await this.checkReplace(sp, segs, cur, opts);
        // (an empty file, as Finder and Windows make one before they write it, is no version)
        const keep = cur !== undefined && cur.st.size > 0 && this.keepVersions > 0;
        // The parent's and the root's records, read once for the checks and the propagation.
        const seen: HeldRecords = new Map([[keyOf(parentSegs), parent]]);
        sp.checkQuotaHeld(keep ? st.size : st.size - (cur?.st.size ?? 0), seen);
        const rec: NodeRecord = {
          id: cur?.rec.id ?? randomUUID(),
          p: parent.id,
          ...(!cur && { bt: Date.now() }),
          ck: checksums,
          ckm: st.mtimeMs,
          cks: st.size,
          ...sp.checksumsConfirmed(),
        };
        if (cur) await this.carryOver(sp.abs(segs), cur.rec, tmpAbs, rec);
        this.native.setxattrSync(tmpAbs, XATTR_NODE, encodeRecord(rec));
        if (!cur || cur.rec.p !== parent.id) await sp.index.write(rec.id, parent.id, key);
        const version = keep ? this.versionPath(sp, rec.id, versionKey()) : undefined;
        if (version) await fsp.mkdir(path.dirname(version.abs), { recursive: true });
        journal.begin({
          dirs: [parentSegs],
          ...(version && { undo: [{ from: version.rel, to: segs }], totals: true }),
        });
        await this.options.hooks?.beforeRename?.('write');
        if (version) {
          await this.setAside(sp.abs(segs), version.abs, cur!.st);
          await this.options.hooks?.afterRename?.('write-aside');
        }
        if (this.syncMetadata) fs.renameSync(tmpAbs, sp.abs(segs));
        else await fsp.rename(tmpAbs, sp.abs(segs));
        await this.options.hooks?.afterRename?.('write');
        await sp.propagateHeld(new Map([[keyOf(parentSegs), st.size - (cur?.st.size ?? 0)]]), seen);
        if (version) sp.adjustRootHeld({ vts: cur!.st.size - (await this.pruneVersionsHeld(sp, rec.id)) });
        return rec;
      });
      await fh.close();
      closed = true;
      await this.syncDir(sp.abs(parentSegs));
      sp.index.remember(rec.id, key);
      sp.index.noteShape(key, rec, st);
      return this.info(sp, segs, st, rec);
    } catch (err) {
      if (!closed) await fh.close().catch(() => {});
      await fsp.unlink(tmpAbs).catch(() => {});
      throw toStorageError(err, 'write');
    } finally {
      release();
    }
  }

  /** Refuse to write a file where `cur` is: a folder, a lock not given, a precondition that fails. */
  private async checkReplace(
    sp: PosixSpace,
    segs: string[],
    cur: Loaded | undefined,
    opts: WriteOptions | undefined,
  ): Promise<void> {
    if (cur?.st.isDirectory())
      throw new StorageError('FAILED_PRECONDITION', 'a folder is in the way', { reason: 'is-folder' });
    if (cur) checkLockFor(lockOf(cur.rec.lk), opts?.lockId, true, opts?.actor);
    if (opts?.conditions)
      checkWriteConditions(opts.conditions, cur && (await this.info(sp, segs, cur.st, cur.rec)));
  }

  /**
   * Bytes the space can still take when `freed` bytes go away with the write (undefined: no quota).
   * Read without the lock: an early answer; the commit checks again, exactly.
   */
  private async room(sp: PosixSpace, freed: number): Promise<number | undefined> {
    if (sp.props.quota === undefined) return undefined;
    const root = await sp.record([]);
    const quota = root?.sp?.quota;
    if (quota === undefined) return undefined;
    return Math.max(0, quota - ((root?.ts ?? 0) + (root?.tts ?? 0) + (root?.vts ?? 0)) + freed);
  }

  /**
   * What belongs to the resource rather than to one content moves with it to a new inode: arbitrary
   * metadata, grants and the lock (xattrs copied when inline; sidecars are keyed by id).
   */
  private async carryOver(fromAbs: string, from: NodeRecord, toAbs: string, to: NodeRecord): Promise<void> {
    if (from.bt !== undefined) to.bt = from.bt;
    if (from.md) to.md = from.md;
    if (from.g) to.g = from.g;
    if (from.lk) to.lk = from.lk;
    for (const [flag, name] of [
      [from.md, XATTR_META],
      [from.g, XATTR_GRANTS],
    ] as const) {
      if (flag !== 1) continue;
      const value = await this.native.getxattr(fromAbs, name);
      if (value) this.native.setxattrSync(toAbs, name, value);
    }
  }

  /**
   * Make a folder's entries durable (when `durable`). A folder another process moved or removed in
   * the meantime is skipped: that process's own commit synced the folders it changed.
   */
  private async syncDir(dir: string): Promise<void> {
    if (!this.durable) return;
    try {
      await this.syncer.sync(dir);
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }

  /**
   * Create a new temp file (`wx`) with `open`, making the space's temp folder first if it is
   * missing. For a small body on a local filesystem, `open` gives a descriptor written with
   * synchronous calls ({@link syncTempFile}); the file itself is still created on the thread pool
   * (creating an inode can wait on the journal).
   */
  private async createTemp<T>(sp: PosixSpace, open: () => Promise<T>): Promise<T> {
    try {
      return await open();
    } catch (err) {
      if (!isMissing(err)) throw toStorageError(err, 'write');
      await fsp.mkdir(sp.tmp, { recursive: true });
      return open();
    }
  }

  /** Copy a body into a file, hashing while the previous block is being written. */
  private async streamInto(
    fh: TempFile,
    body: Body,
    acc: { update(chunk: Uint8Array): void; bytes: number; drain?(): Promise<void> },
    opts?: WriteOptions,
    room?: number,
  ): Promise<void> {
    const limit = opts?.size;
    const signal = opts?.signal;
    let buffered: Uint8Array[] = [];
    let bufferedBytes = 0;
    let position = 0;
    let writing: Promise<void> = Promise.resolve();
    let synced = 0;
    let syncing: Promise<void> | undefined;
    let syncError: unknown;
    const flush = () => {
      if (!bufferedBytes) return;
      const blocks = buffered;
      const at = position;
      position += bufferedBytes;
      buffered = [];
      bufferedBytes = 0;
      writing = writing.then(() => writeAll(fh, blocks, at)); // writev: no copy into one block
      // Durable writes: flush what is written every few MiB while the rest arrives, so the final
      // fsync has little left to wait for.
      if (this.durable && position - synced >= EARLY_SYNC_BYTES && !syncing) {
        synced = position;
        // A failed flush is kept: Linux reports a writeback error once per open file, so the final
        // fsync on this handle would say nothing of it.
        syncing = writing
          .then(() => fh.datasync())
          .catch((err) => {
            syncError ??= err;
          })
          .finally(() => {
            syncing = undefined;
          });
      }
    };
    const iterator = bodyChunks(body)[Symbol.asyncIterator]();
    try {
      for (;;) {
        signal?.throwIfAborted();
        let next: IteratorResult<Uint8Array>;
        try {
          next = await iterator.next();
        } catch (err) {
          if (err instanceof StorageError) throw err;
          if ((err as Error)?.name === 'AbortError')
            throw new StorageError('CANCELLED', 'upload cancelled', { cause: err });
          throw new StorageError(
            'CANCELLED',
            `upload body failed: ${(err as Error)?.message ?? String(err)}`,
            {
              reason: 'body',
              cause: err,
            },
          );
        }
        if (next.done) break;
        // A big chunk (a whole Buffer given as the body) goes in slices, so back-pressure and the
        // hashing thread's backlog limit hold for it too.
        const whole = next.value;
        for (let at = 0; at < whole.length; at += BUFFER_BYTES) {
          const chunk = whole.length <= BUFFER_BYTES ? whole : whole.subarray(at, at + BUFFER_BYTES);
          if (room !== undefined && acc.bytes + chunk.length > room) {
            throw new StorageError('INSUFFICIENT_STORAGE', 'the space quota does not allow this upload');
          }
          if (limit !== undefined && acc.bytes + chunk.length > limit) {
            throw new StorageError('INVALID_ARGUMENT', `body longer than the declared ${limit} bytes`, {
              reason: 'size-mismatch',
            });
          }
          acc.update(chunk);
          buffered.push(chunk);
          bufferedBytes += chunk.length;
          if (bufferedBytes >= BUFFER_BYTES) {
            await writing; // back-pressure: at most one block in flight while the next is hashed
            if (syncError) throw syncError;
            await acc.drain?.(); // and the hashing threads not too far behind
            flush();
          }
        }
      }
      signal?.throwIfAborted();
      flush();
      await writing;
      await syncing;
      if (syncError) throw syncError;
    } catch (err) {
      await writing.catch(() => {});
      await syncing?.catch(() => {});
      await iterator.return?.(undefined).catch(() => {});
      throw err;
    }
    if (limit !== undefined && acc.bytes !== limit) {
      throw new StorageError('INVALID_ARGUMENT', `body of ${acc.bytes} bytes, ${limit} declared`, {
        reason: 'size-mismatch',
      });
    }
  }

  private async mkdirImpl(ref: NodeRef, _opts?: MutationOptions): Promise<ResourceInfo> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    if (!segs.length) throw new StorageError('ALREADY_EXISTS', 'the space root exists');
    const parentSegs = segs.slice(0, -1);
    await this.loadParent(sp, parentSegs);
    const done = await sp.commit(async (journal) => {
      const parent = await this.loadParent(sp, parentSegs, true);
      if (await fsp.lstat(sp.abs(segs)).catch(() => undefined)) {
        throw new StorageError('ALREADY_EXISTS', `"${printable(segs.at(-1))}" already exists`);
      }
      const rec: NodeRecord = { id: randomUUID(), p: parent.id, bt: Date.now(), ts: 0, tm: nowUs() };
      await sp.index.write(rec.id, parent.id, keyOf(segs));
      journal.begin({ dirs: [parentSegs] });
      try {
        await fsp.mkdir(sp.abs(segs));
      } catch (err) {
        await sp.index.remove(rec.id);
        throw toStorageError(err, `"${printable(segs.at(-1))}"`);
      }
      sp.writeHeld(segs, rec);
      await sp.propagateHeld(new Map([[keyOf(parentSegs), 0]]));
      return { rec, st: await fsp.lstat(sp.abs(segs)) };
    });
    await this.syncDir(sp.abs(parentSegs));
    return this.info(sp, segs, done.st, done.rec);
  }

  private async deleteImpl(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    if (!segs.length) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be deleted');
    const parentSegs = segs.slice(0, -1);
    await this.load(sp, segs); // fail early, outside the lock
    const tmpName = sp.tmpName('rm');
    // What is deleted, and reported, is what is there once the lock is held.
    const { info, cur } = await sp.commit(async (journal) => {
      const cur = await this.load(sp, segs, true);
      // A folder's lock id may be one of a lock inside it (a folder itself unlocked is no error).
      checkLockFor(lockOf(cur.rec.lk), opts?.lockId, !cur.st.isDirectory(), opts?.actor);
      if (cur.st.isDirectory()) await this.checkLocksInsideHeld(sp, segs, cur.rec, opts);
      const info = this.infoNow(sp, segs, cur.st, cur.rec);
      const size = cur.st.isDirectory() ? (cur.rec.ts ?? 0) : cur.st.size;
      const dir = cur.st.isDirectory();
      if (this.trash) {
        // The rename into the trash is the whole operation: a crash after it is repaired forwards;
        // one before it leaves the node in place, and recovery drops the trash facts written on it.
        journal.begin({ dirs: [parentSegs], totals: true, nodes: [{ id: cur.rec.id, at: segs }] });
        await this.options.hooks?.beforeRename?.('delete');
        await this.trashHeld(sp, segs, cur, opts?.actor);
        await this.options.hooks?.afterRename?.('delete');
        await sp.propagateHeld(new Map([[keyOf(parentSegs), -size]]));
        sp.adjustRootHeld({ tts: size, gv: dir });
      } else {
        await fsp.mkdir(sp.tmp, { recursive: true });
        journal.begin({ dirs: [parentSegs] });
        await this.options.hooks?.beforeRename?.('delete');
        await fsp.rename(sp.abs(segs), `${sp.tmp}/${tmpName}`);
        await this.options.hooks?.afterRename?.('delete');
        await sp.propagateHeld(new Map([[keyOf(parentSegs), -size]]));
        sp.adjustRootHeld({ gv: dir });
      }
      return { info, cur };
    });
    if (!this.trash) await sp.index.remove(cur.rec.id);
    sp.index.forget(cur.rec.id);
    if (cur.st.isDirectory()) sp.index.forgetAll();
    await this.syncDir(sp.abs(parentSegs));
    if (!this.trash) this.runInBackground(this.discard(sp, tmpName));
    return info;
  }

  private async moveImpl(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    if (src.spaceId !== dst.spaceId) {
      throw new StorageError('UNIMPLEMENTED', 'moving between spaces is not supported', {
        reason: 'cross-space',
      });
    }
    const sp = await this.space(src.spaceId);
    const from = await this.locate(sp, src);
    const to = await this.locate(sp, dst);
    if (!from.length) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be moved');
    if (!to.length) throw new StorageError('ALREADY_EXISTS', 'the space root exists');
    const fromKey = keyOf(from);
    const toKey = keyOf(to);
    if (fromKey === toKey)
      throw new StorageError('INVALID_ARGUMENT', 'source and destination are the same', {
        reason: 'into-itself',
      });
    if (toKey.startsWith(`${fromKey}/`)) {
      throw new StorageError('INVALID_ARGUMENT', 'cannot move a folder into itself', {
        reason: 'into-itself',
      });
    }
    await this.load(sp, from);
    await this.loadParent(sp, to.slice(0, -1));
    const mtime = await this.landingTime(sp, opts);
    let timing: { fh: fsp.FileHandle; st: fs.Stats; current: boolean } | undefined;
    const moving = sp.commit(async (journal) => {
      const cur = await this.load(sp, from, true);
      const parent = await this.loadParent(sp, to.slice(0, -1), true);
      const old = await this.peek(sp, to, true);
      if (old && !opts?.overwrite)
        throw new StorageError('ALREADY_EXISTS', `"${printable(to.at(-1))}" already exists`);
      if (old && fromKey.startsWith(`${toKey}/`)) {
        throw new StorageError('INVALID_ARGUMENT', 'the destination contains the source', {
          reason: 'into-itself',
        });
      }
      checkLockFor(lockOf(cur.rec.lk), opts?.lockId, !cur.st.isDirectory(), opts?.actor);
      const over = targetLockOptions(opts);
      if (old) checkLockFor(lockOf(old.rec.lk), over?.lockId, false, opts?.actor);
      if (cur.st.isDirectory()) await this.checkLocksInsideHeld(sp, from, cur.rec, opts);
      if (old?.st.isDirectory()) await this.checkLocksInsideHeld(sp, to, old.rec, over);
      // The file whose time is set where it lands, opened before anything changes (closed below).
      if (mtime !== undefined)
        timing = await this.openToTime(sp, from, cur.st, cur.rec).catch((err: unknown) => {
          if (opts?.mtimeBestEffort && StorageError.is(err, 'PERMISSION_DENIED')) return undefined;
          throw err;
        });
      // A lock moving in: the folders above its new place learn that first.
      if (cur.rec.lb || liveLock(lockOf(cur.rec.lk))) this.markLocksAboveHeld(sp, to);
      const size = cur.st.isDirectory() ? (cur.rec.ts ?? 0) : cur.st.size;
      // Two hard links of one file: rename(2) does nothing then, so the source name is unlinked.
      const sameInode = old !== undefined && old.st.ino === cur.st.ino && old.st.dev === cur.st.dev;
      const oldSize = old ? (old.st.isDirectory() ? (old.rec.ts ?? 0) : old.st.size) : 0;
      // What the move replaces goes to the trash (or, without a trash, aside to be removed).
      const aside =
        old && !sameInode ? (this.trash ? ['trash', old.rec.id] : ['tmp', sp.tmpName('rm')]) : undefined;
      // The time goes into the record before the rename: a recovery sets it where the file landed
      // (`times`) and drops it from one that never moved (`untimed`), so a crash leaves both or neither.
      journal.begin({
        dirs: [from.slice(0, -1), to.slice(0, -1)],
        nodes: [{ id: cur.rec.id, at: to }],
        ...(aside && { undo: [{ from: aside, to }], totals: this.trash }),
        ...(timing && { untimed: [from], times: [to] }),
      });
      if (timing) sp.writeHeld(from, { ...cur.rec, pm: mtime });
      await this.options.hooks?.beforeRename?.('move');
      if (aside && old) {
        await this.putAsideHeld(sp, to, old, aside, cur.st.isFile());
        await this.options.hooks?.afterRename?.('move-aside');
      }
      if (sameInode) await fsp.unlink(sp.abs(from));
      else await fsp.rename(sp.abs(from), sp.abs(to));
      await this.options.hooks?.afterRename?.('move');
      let rec: NodeRecord = { ...cur.rec, p: parent.id };
      // (a renamed file's record is written too when its checksums carry a confirmation: the
      // rename moved its ctime)
      if (timing) {
        sp.writeHeld(to, { ...rec, pm: mtime });
        // (a kernel that refuses the time after all, past the owner check above: a root-squashed
        // NFS mount, say. The move is done and stands; the answered info has the time it kept.)
        await sp.finishTimeHeld(to, this.durable, timing).catch((err: unknown) => {
          if (!StorageError.is(err, 'PERMISSION_DENIED')) throw err;
        });
        rec = sp.recordHeld(to)!;
      } else if (cur.rec.p !== parent.id || cur.rec.ckt !== undefined) sp.writeHeld(to, rec);
      await sp.index.write(rec.id, parent.id, toKey);
      const changes = new Map<string, number>();
      const add = (k: string, d: number) => changes.set(k, (changes.get(k) ?? 0) + d);
      add(keyOf(from.slice(0, -1)), -size);
      add(keyOf(to.slice(0, -1)), size - oldSize);
      await sp.propagateHeld(changes);
      sp.adjustRootHeld({
        tts: aside && this.trash ? oldSize : 0,
        gv: cur.st.isDirectory() || !!old?.st.isDirectory(),
      });
      return { rec, old: sameInode ? undefined : old, aside, st: await fsp.lstat(sp.abs(to)) };
    });
    const done = await moving.finally(() => timing?.fh.close().catch(() => {}));
    if (done.aside && !this.trash) this.runInBackground(this.discard(sp, done.aside.at(-1)!));
    // Cached paths below a moved or replaced folder are stale.
    if (done.st.isDirectory() || done.old?.st.isDirectory()) sp.index.forgetAll();
    sp.index.remember(done.rec.id, toKey);
    await this.syncDir(sp.abs(from.slice(0, -1)));
    await this.syncDir(sp.abs(to.slice(0, -1)));
    return this.info(sp, to, done.st, done.rec);
  }

  /** Move a node into the space's trash (lock held), recording where it was, when, and by whom. */
  private async trashHeld(
    sp: PosixSpace,
    segs: string[],
    cur: Loaded,
    actor?: string,
    /** A file about to be replaced by a rename over it: it stays in place until then ({@link setAside}). */
    replaced = false,
  ): Promise<void> {
    const rec: NodeRecord = {
      ...cur.rec,
      tr: { p: `/${segs.join('/')}`, at: Date.now(), ...(actor && { by: actor }) },
    };
    sp.writeHeld(segs, rec);
    await this.options.hooks?.beforeRename?.('trash');
    await fsp.mkdir(sp.trashDir, { recursive: true });
    // A node deleted before (and restored) left no item behind, so the id is free in the trash.
    await this.setAside(sp.abs(segs), `${sp.trashDir}/${cur.rec.id}`, cur.st, replaced);
  }

  /**
   * Put what a move or copy replaces at `segs` aside (`aside`: into the trash, or to a temp name to
   * be removed): a file replaced by a file keeps its path until the rename over it ({@link setAside}).
   */
  private async putAsideHeld(
    sp: PosixSpace,
    segs: string[],
    old: Loaded,
    aside: string[],
    incomingIsFile: boolean,
  ): Promise<void> {
    const inPlace = incomingIsFile && old.st.isFile();
    if (this.trash) return this.trashHeld(sp, segs, old, undefined, inPlace);
    await fsp.mkdir(sp.tmp, { recursive: true });
    await this.setAside(sp.abs(segs), `${sp.internal}/${aside.join('/')}`, old.st, inPlace);
  }

  /**
   * Put the node at `abs` (whose lstat is `st`) aside at `asideAbs` (a version, a trash item, a
   * temp name): moved there, or, for a file about to be replaced by a rename over it (`keepPath`),
   * given that second name as a hard link, so that readers (a listing, a download, a sync client,
   * another process) never find `abs` missing; that rename then leaves `asideAbs` its only name.
   * Where a hard link cannot be made (a filesystem without them, a name already taken), it is moved
   * as well. A commit that dies between the link and the rename leaves both names on one inode: its
   * recovery removes the second ({@link PosixSpace.undoHeld}). The node's cached record goes: its
   * ctime moves, so it could never be used again.
   */
  private async setAside(abs: string, asideAbs: string, st: fs.Stats, keepPath = true): Promise<void> {
    forgetCachedRecord(st);
    if (keepPath) {
      try {
        if (this.syncMetadata) fs.linkSync(abs, asideAbs);
        else await fsp.link(abs, asideAbs);
        return;
      } catch (err) {
        if (!CANNOT_LINK.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
    await fsp.rename(abs, asideAbs);
  }

  // ================================================================== copy

  private async copy(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    const ssp = await this.space(src.spaceId);
    const dsp = await this.space(dst.spaceId);
    const from = await this.locate(ssp, src);
    const to = await this.locate(dsp, dst);
    if (!to.length) throw new StorageError('ALREADY_EXISTS', 'the space root exists');
    const fromKey = keyOf(from);
    const toKey = keyOf(to);
    if (ssp === dsp) {
      if (fromKey === toKey)
        throw new StorageError('INVALID_ARGUMENT', 'source and destination are the same', {
          reason: 'into-itself',
        });
      if (fromKey === '' || toKey.startsWith(`${fromKey}/`)) {
        throw new StorageError('INVALID_ARGUMENT', 'cannot copy a folder into itself', {
          reason: 'into-itself',
        });
      }
    }
    const source = await this.load(ssp, from);
    const parentRec = await this.loadParent(dsp, to.slice(0, -1));
    const existing = await this.peek(dsp, to, false);
    if (existing && !opts?.overwrite)
      throw new StorageError('ALREADY_EXISTS', `"${printable(to.at(-1))}" already exists`);
    // (the copy is this process's own file, whose time it may set; it gets it before it moves in)
    if (opts?.mtime !== undefined && !source.st.isFile()) throw folderTimeRefused();
    const mtime = await this.landingTime(dsp, opts);

    // An early answer from the recorded sizes before copying a byte (the commit checks exactly).
    const room = await this.room(dsp, existing && !this.trash ? sizeOfLoaded(existing) : 0);
    if (room !== undefined && sizeOfLoaded(source) > room) {
      throw new StorageError('INSUFFICIENT_STORAGE', 'the space quota does not allow this copy');
    }

    const release = await dsp.holdLive();
    const stagingName = dsp.tmpName('cp');
    const staging = `${dsp.tmp}/${stagingName}`;
    try {
      await this.copyNode(ssp, from, source, dsp, staging, to, parentRec.id, opts?.signal, mtime);
      await this.options.hooks?.beforeCommit?.('copy');
      const done = await dsp.commit(async (journal) => {
        const parent = await this.loadParent(dsp, to.slice(0, -1), true);
        const old = await this.peek(dsp, to, true);
        if (old && !opts?.overwrite)
          throw new StorageError('ALREADY_EXISTS', `"${printable(to.at(-1))}" already exists`);
        if (old && ssp === dsp && fromKey.startsWith(`${toKey}/`)) {
          throw new StorageError('INVALID_ARGUMENT', 'the destination contains the source', {
            reason: 'into-itself',
          });
        }
        // Moved or deleted while it was copied: the walk then found only part of it (or nothing of
        // what was below it), a tree that never was. Nothing is copied; the caller may try again.
        if (!(await this.stillAt(ssp, from, source))) {
          throw new StorageError(
            'ABORTED',
            'the source was moved or deleted while it was copied; copy it again',
            {
              reason: CHANGED_WHILE_READ,
            },
          );
        }
        const over = targetLockOptions(opts);
        if (old) checkLockFor(lockOf(old.rec.lk), over?.lockId, false, opts?.actor);
        if (old?.st.isDirectory()) await this.checkLocksInsideHeld(dsp, to, old.rec, over);
        const top = decodeRecord(this.native.getxattrSync(staging, XATTR_NODE))!;
        if (top.p !== parent.id) {
          top.p = parent.id;
          this.native.setxattrSync(staging, XATTR_NODE, encodeRecord(top));
          await dsp.index.write(top.id, parent.id, toKey);
        }
        const st = await fsp.lstat(staging);
        const size = st.isDirectory() ? (top.ts ?? 0) : st.size;
        const oldSize = old ? (old.st.isDirectory() ? (old.rec.ts ?? 0) : old.st.size) : 0;
        dsp.checkQuotaHeld(size - (this.trash ? 0 : oldSize));
        const aside = old ? (this.trash ? ['trash', old.rec.id] : ['tmp', dsp.tmpName('rm')]) : undefined;
        journal.begin({
          dirs: [to.slice(0, -1)],
          ...(aside && { undo: [{ from: aside, to }], totals: this.trash }),
        });
        await this.options.hooks?.beforeRename?.('copy');
        if (aside && old) {
          await this.putAsideHeld(dsp, to, old, aside, st.isFile());
          await this.options.hooks?.afterRename?.('copy-aside');
        }
        await fsp.rename(staging, dsp.abs(to));
        await dsp.propagateHeld(new Map([[keyOf(to.slice(0, -1)), size - oldSize]]));
        dsp.adjustRootHeld({ tts: aside && this.trash ? oldSize : 0, gv: !!old?.st.isDirectory() });
        return { rec: top, st, old, aside };
      });
      if (done.aside && !this.trash) this.runInBackground(this.discard(dsp, done.aside.at(-1)!));
      await this.syncDir(dsp.abs(to.slice(0, -1)));
      return this.info(dsp, to, done.st, done.rec);
    } catch (err) {
      await this.discard(dsp, stagingName).catch(() => {});
      throw toStorageError(err, 'copy');
    } finally {
      release();
    }
  }

  /** Is the node `was` (its id, its kind) still at `segs`? Read without the space's lock. */
  private async stillAt(sp: PosixSpace, segs: string[], was: Loaded): Promise<boolean> {
    try {
      const st = await fsp.lstat(sp.abs(segs));
      if (st.isDirectory() !== was.st.isDirectory() || !(st.isFile() || st.isDirectory())) return false;
      return (await sp.record(segs))?.id === was.rec.id;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /**
   * Copy one node (recursively) to `target` in the destination's tmp folder, with new ids whose
   * index entries already name their final place. Symlinks and special files are skipped. A file
   * keeps its source's mtime, or gets `mtime`. Returns the bytes written (a folder: the sum below it).
   */
  private async copyNode(
    ssp: PosixSpace,
    from: string[],
    source: Loaded,
    dsp: PosixSpace,
    target: string,
    finalSegs: string[],
    parentId: string,
    signal: AbortSignal | undefined,
    mtime?: number,
  ): Promise<number> {
    signal?.throwIfAborted();
    const id = randomUUID();
    const rec: NodeRecord = { id, p: parentId, bt: Date.now() };
    if (source.st.isDirectory()) {
      await fsp.mkdir(target);
      let total = 0;
      const dir = await fsp.opendir(ssp.abs(from), { bufferSize: 256 });
      for await (const d of dir) {
        if (d.isSymbolicLink() || (from.length === 0 && d.name === RESERVED_ROOT_NAME)) continue;
        const child = [...from, d.name];
        const st = await fsp.lstat(ssp.abs(child)).catch(() => undefined);
        if (!st || !(st.isFile() || st.isDirectory())) continue;
        const childRec = (await ssp.record(child)) ?? (await ssp.commit(() => ssp.assimilateHeld(child)));
        // Count what was written: the source may have changed since it was looked at.
        total += await this.copyNode(
          ssp,
          child,
          { st, rec: childRec },
          dsp,
          `${target}/${d.name}`,
          [...finalSegs, d.name],
          id,
          signal,
        );
      }
      rec.ts = total;
      rec.tm = nowUs();
      await this.syncDir(target);
    } else {
      // Read the source through a descriptor that cannot be a symlink. Whatever file is there now
      // (a newer version, if it was replaced meanwhile) is copied, with the record of that very inode
      // (read through /proc/self/fd/N); the kernel copies from exactly that inode too.
      const src = await fsp.open(
        ssp.abs(from),
        fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
      );
      let mtimeMs: number;
      try {
        const fst = await src.stat();
        if (!fst.isFile())
          throw new StorageError('NOT_FOUND', `"${printable(from.at(-1))}" is no longer a file`);
        mtimeMs = fst.mtimeMs;
        const self = `/proc/self/fd/${src.fd}`;
        const srec = decodeRecord(await this.native.getxattr(self, XATTR_NODE));
        let copied = false;
        if (srec?.ck && srec.ckm === fst.mtimeMs && srec.cks === fst.size) {
          await fsp.copyFile(self, target, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
          const after = await src.stat();
          copied = after.mtimeMs === fst.mtimeMs && after.size === fst.size;
          if (copied) rec.ck = { ...srec.ck };
          else await fsp.unlink(target); // changed in place while copied: hash what we read instead
        }
        if (!copied) {
          const acc = new ChecksumAccumulator();
          const fh = await fsp.open(target, 'wx', 0o666);
          try {
            await this.streamInto(fh, src.createReadStream({ autoClose: false, start: 0 }), acc, { signal });
          } finally {
            await fh.close();
          }
          rec.ck = acc.digest();
        }
      } finally {
        await src.close();
      }
      const t = toUtimeSeconds(mtime ?? mtimeMs);
      await fsp.utimes(target, t, t);
      if (this.durable) {
        const fh = await fsp.open(target, 'r');
        await fh.sync().finally(() => fh.close());
      }
      const st = await fsp.lstat(target);
      rec.ckm = st.mtimeMs;
      rec.cks = st.size;
      Object.assign(rec, dsp.checksumsConfirmed());
    }
    if (source.rec.md) {
      const md = await ssp.readMetadata(from, source.rec);
      if (Object.keys(md).length) await this.storeMetadata(dsp, target, rec, md);
    }
    this.native.setxattrSync(target, XATTR_NODE, encodeRecord(rec));
    await dsp.index.write(id, parentId, keyOf(finalSegs));
    return rec.ts ?? rec.cks ?? 0;
  }

  // ================================================================== metadata

  private async setMetadata(
    ref: NodeRef,
    values: Readonly<Record<string, string>>,
    opts?: MutationOptions,
  ): Promise<void> {
    await this.changeMetadata(ref, (md) => Object.assign(md, values), opts);
  }

  private async unsetMetadata(ref: NodeRef, keys: readonly string[], opts?: MutationOptions): Promise<void> {
    await this.changeMetadata(
      ref,
      (md) => {
        for (const k of keys) delete md[k];
      },
      opts,
    );
  }

  /**
   * Metadata and a file's time changed as one. The record (metadata, and the new time as `pm`) is
   * written first, in one xattr write: before it nothing changed, after it the commit's intent
   * names the file, and a recovery sets the time from the record. Only then is the time set.
   */
  private async changeProperties(
    ref: NodeRef,
    change: MetadataChange,
    opts?: MutationOptions,
  ): Promise<ResourceInfo | undefined> {
    const keys = change.set !== undefined || change.unset !== undefined;
    const edit = (md: Record<string, string>) => {
      Object.assign(md, change.set ?? {});
      for (const k of change.unset ?? []) delete md[k];
    };
    const { mtime } = change;
    if (mtime === undefined) {
      await this.changeMetadata(ref, edit, opts);
      return undefined;
    }
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    await this.load(sp, segs); // fail early, outside the lock
    await this.requireHoldsTime(sp, mtime);
    const done = await sp.commit(async (journal) => {
      const { st, rec } = await this.load(sp, segs, true);
      checkLockFor(lockOf(rec.lk), opts?.lockId, true, opts?.actor);
      const timing = await this.openToTime(sp, segs, st, rec);
      const { fh } = timing;
      try {
        journal.begin({ dirs: [segs.slice(0, -1)], times: [segs] });
        await this.options.hooks?.beforeRename?.('properties');
        rec.pm = mtime;
        let dropOld: (() => Promise<void>) | undefined;
        if (keys) {
          const md = await sp.readMetadata(segs, rec);
          edit(md);
          dropOld = await this.storeMetadata(sp, sp.abs(segs), rec, md);
        }
        sp.writeHeld(segs, rec);
        await dropOld?.();
        await this.options.hooks?.afterRename?.('properties');
        await sp.finishTimeHeld(segs, this.durable, timing);
      } finally {
        await fh.close();
      }
      await sp.propagateHeld(new Map([[keyOf(segs.slice(0, -1)), 0]]));
      return { st: await fsp.lstat(sp.abs(segs)), rec: sp.recordHeld(segs)! };
    });
    return this.info(sp, segs, done.st, done.rec);
  }

  /**
   * Open a file whose time a commit is about to set (lock held; `st` and `rec` as loaded), without
   * following a symlink, before anything changes. A folder, a file whose time this process may not
   * set, and one replaced since `st` are refused. Its checksums are carried over to the new time
   * when they were current and it was not rewritten around Stowage since (the space's lock does not
   * hold others back): otherwise they stay behind, so the change is still seen.
   */
  private async openToTime(
    sp: PosixSpace,
    segs: string[],
    st: fs.Stats,
    rec: NodeRecord,
  ): Promise<{ fh: fsp.FileHandle; st: fs.Stats; current: boolean }> {
    if (!st.isFile()) throw folderTimeRefused();
    this.mayTime(st);
    const current = sp.checksumsCurrent(rec, st);
    const fh = await fsp.open(
      sp.abs(segs),
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
    try {
      const now = await fh.stat();
      if (!sameFile(now, st)) throw new StorageError('ABORTED', 'the file was replaced meanwhile; retry');
      const unchanged = now.mtimeMs === st.mtimeMs && now.size === st.size && now.ctimeMs === st.ctimeMs;
      return { fh, st: now, current: current && unchanged };
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /**
   * The time a move or copy sets where the file lands (see {@link MoveOptions.mtime}): refused
   * when the space cannot hold it, or left out with `mtimeBestEffort`.
   */
  private async landingTime(sp: PosixSpace, opts: MoveOptions | undefined): Promise<number | undefined> {
    const mtime = opts?.mtime;
    if (mtime === undefined) return undefined;
    if (!opts?.mtimeBestEffort) await this.requireHoldsTime(sp, mtime);
    else if (!(await this.holdsTime(sp, mtime))) return undefined;
    return mtime;
  }

  /** Refuse (INVALID_ARGUMENT, reason `time-out-of-range`) a time the space cannot hold. */
  private async requireHoldsTime(sp: PosixSpace, mtime: number): Promise<void> {
    if (!(await this.holdsTime(sp, mtime)))
      throw new StorageError('INVALID_ARGUMENT', 'this filesystem cannot store that modification time', {
        reason: 'time-out-of-range',
      });
  }

  /**
   * Refuse (PERMISSION_DENIED, reason `not-owner`) before anything changes when the file's time
   * cannot be set.
   */
  private mayTime(st: fs.Stats): void {
    // (utimes with a time needs the file's owner or CAP_FOWNER, which root has)
    const euid = process.geteuid?.();
    if (euid === undefined || euid === 0 || euid === st.uid) return;
    throw new StorageError('PERMISSION_DENIED', "only the file's owner may set its time here", {
      reason: 'not-owner',
    });
  }

  private async changeMetadata(
    ref: NodeRef,
    change: (md: Record<string, string>) => void,
    opts?: MutationOptions,
  ): Promise<void> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    await this.load(sp, segs);
    await sp.commit(async () => {
      const { rec } = await this.load(sp, segs, true);
      checkLockFor(lockOf(rec.lk), opts?.lockId, true, opts?.actor);
      const md = await sp.readMetadata(segs, rec);
      change(md);
      const dropOld = await this.storeMetadata(sp, sp.abs(segs), rec, md);
      // Written even when only a sidecar changed: the node's ctime moves, and observers in every
      // process (whose caches go by it) see the change on the node itself.
      sp.writeHeld(segs, rec);
      await dropOld();
    });
  }

  /**
   * Set a file's mtime in place (futimes on the file opened without following a symlink). Its
   * checksums stay confirmed when they were current: the record moves their mtime along, so
   * neither this process nor an observer takes the change for one made around Stowage. The folders
   * above get a new tree time (the file's etag changed). A time the filesystem cannot hold is
   * refused before the file is touched.
   */
  private async setMtime(ref: NodeRef, mtime: number, opts?: MutationOptions): Promise<ResourceInfo> {
    return (await this.changeProperties(ref, { mtime }, opts))!;
  }

  /**
   * Can the space's filesystem hold this mtime? It clamps one it cannot (ext4: 1901 to 2446)
   * without a word, and a clamped time cannot be put back exactly (utimes takes no nanoseconds),
   * so a time outside 1970-2038, which every filesystem holds, is tried on a scratch file first.
   */
  private async holdsTime(sp: PosixSpace, mtime: number): Promise<boolean> {
    if (mtime >= 0 && mtime < 2 ** 31 * 1000) return true;
    const release = await sp.holdLive();
    const tmpAbs = `${sp.tmp}/${sp.tmpName('up')}`;
    try {
      const fh = await this.createTemp(sp, () => fsp.open(tmpAbs, 'wx', 0o600));
      try {
        const t = toUtimeSeconds(mtime);
        await fh.utimes(t, t);
        return Math.abs((await fh.stat()).mtimeMs - mtime) < 1000;
      } finally {
        await fh.close();
        await fsp.unlink(tmpAbs).catch(() => {});
      }
    } finally {
      release();
    }
  }

  /**
   * Store metadata inline when small, in the id-keyed sidecar (written atomically) when large or
   * when the inode has no xattr room left. Updates `rec.md`, which the caller writes; it then calls
   * the returned function to drop the previous copy.
   */
  private async storeMetadata(
    sp: PosixSpace,
    abs: string,
    rec: NodeRecord,
    md: Record<string, string>,
  ): Promise<() => Promise<void>> {
    const json = Object.keys(md).length ? JSON.stringify(md) : undefined;
    const out = await this.storeDocument(abs, XATTR_META, sp.sidecar(rec.id), rec.md, json);
    if (out.flag) rec.md = out.flag;
    else delete rec.md;
    return out.drop;
  }

  /**
   * Store a node's JSON document (metadata, grants) in an xattr when it fits, else in a sidecar file
   * written atomically; `json` undefined removes it. Returns where it is now (the record flag: 1
   * inline, 2 sidecar) and how to drop the previous copy. Callers write the record first and drop
   * after, so a crash leaves at worst a stale extra copy, never a record pointing at nothing.
   */
  private async storeDocument(
    abs: string,
    xattr: string,
    sidecar: string,
    before: 1 | 2 | undefined,
    json: string | undefined,
  ): Promise<{ flag: 1 | 2 | undefined; drop: () => Promise<void> }> {
    const dropInline = async () => {
      await this.native.removexattr(abs, xattr).catch(() => {});
    };
    const dropSidecar = async () => {
      await fsp.unlink(sidecar).catch(() => {});
    };
    const keep = async () => {};
    if (json === undefined) {
      return { flag: undefined, drop: before === 1 ? dropInline : before === 2 ? dropSidecar : keep };
    }
    if (Buffer.byteLength(json) <= this.inlineMetadataBytes) {
      try {
        this.native.setxattrSync(abs, xattr, json);
        return { flag: 1, drop: before === 2 ? dropSidecar : keep };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOSPC' && code !== 'E2BIG' && code !== 'ERANGE') throw err;
      }
    }
    const tmp = `${sidecar}.tmp-${randomUUID()}`;
    await fsp.mkdir(path.dirname(sidecar), { recursive: true });
    try {
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(json);
        if (this.durable) await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, sidecar);
    } catch (err) {
      await fsp.unlink(tmp).catch(() => {});
      throw err;
    }
    return { flag: 2, drop: before === 1 ? dropInline : keep };
  }

  private async copySidecar(from: PosixSpace, fromId: string, to: PosixSpace, toId: string): Promise<void> {
    const md = parseMetadata(await fsp.readFile(from.sidecar(fromId)).catch(() => undefined));
    const file = to.sidecar(toId);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${randomUUID()}`;
    await fsp.writeFile(tmp, JSON.stringify(md));
    await fsp.rename(tmp, file);
  }

  // ================================================================== versions

  /** Where a version of a node lives: absolute, and relative to the space's internal folder. */
  private versionPath(sp: PosixSpace, id: string, key: string): { abs: string; rel: string[] } {
    const rel = ['versions', id.slice(0, 2), id, key];
    return { abs: `${sp.internal}/${rel.join('/')}`, rel };
  }

  /** Remove versions beyond the limit (oldest first); returns the bytes removed. */
  private async pruneVersionsHeld(sp: PosixSpace, id: string): Promise<number> {
    const dir = path.dirname(this.versionPath(sp, id, 'x').abs);
    const keys = (await fsp.readdir(dir).catch(() => [] as string[])).filter(isVersionKey).sort().reverse();
    let freed = 0;
    for (const k of keys.slice(this.keepVersions)) {
      const p = `${dir}/${k}`;
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st) continue;
      // Out of the tree under the lock; its bytes are freed in the background, so the writer does
      // not wait for the filesystem to release a big file's blocks (~0.3 s for 256 MiB on ext4).
      const name = sp.tmpName('old');
      await fsp.rename(p, `${sp.tmp}/${name}`);
      this.runInBackground(this.discard(sp, name));
      freed += st.size;
    }
    return freed;
  }

  private async fileForVersions(ref: NodeRef): Promise<{ sp: PosixSpace; segs: string[]; node: Loaded }> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    const node = await this.load(sp, segs);
    if (!node.st.isFile())
      throw new StorageError('FAILED_PRECONDITION', 'folders have no versions', { reason: 'is-folder' });
    return { sp, segs, node };
  }

  private async versionInfo(abs: string, id: string, key: string): Promise<FileVersion | undefined> {
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const rec = decodeRecord(await this.native.getxattr(abs, XATTR_NODE).catch(() => undefined));
    const valid = checksumsValid(rec, st);
    return {
      key,
      size: st.size,
      mtime: st.mtimeMs,
      etag: fileEtag(`${id}@${key}`, st.mtimeMs, st.size, valid ? rec!.ck!.sha1 : undefined),
      ...(valid && { checksums: { ...rec!.ck! } }),
    };
  }

  private async listVersions(ref: NodeRef): Promise<FileVersion[]> {
    const { sp, node } = await this.fileForVersions(ref);
    const dir = path.dirname(this.versionPath(sp, node.rec.id, 'x').abs);
    const keys = (await fsp.readdir(dir).catch(() => [] as string[])).filter(isVersionKey).sort().reverse();
    const out: FileVersion[] = [];
    for (const k of keys) {
      const v = await this.versionInfo(`${dir}/${k}`, node.rec.id, k);
      if (v) out.push(v);
    }
    return out;
  }

  private async readVersion(ref: NodeRef, key: string, opts?: ReadOptions): Promise<ReadResult> {
    const { sp, segs, node } = await this.fileForVersions(ref);
    if (!isVersionKey(key)) throw new StorageError('NOT_FOUND', 'no such version');
    const abs = this.versionPath(sp, node.rec.id, key).abs;
    const v = await this.versionInfo(abs, node.rec.id, key);
    if (!v) throw new StorageError('NOT_FOUND', 'no such version');
    const info: ResourceInfo = {
      ...this.infoNow(sp, segs, node.st, node.rec, opts),
      size: v.size,
      mtime: v.mtime,
      etag: v.etag,
      ...(v.checksums && { checksums: v.checksums }),
    };
    return this.serveFile(abs, info, opts);
  }

  private async restoreVersion(ref: NodeRef, key: string, opts?: MutationOptions): Promise<ResourceInfo> {
    const { sp, segs } = await this.fileForVersions(ref);
    if (!isVersionKey(key)) throw new StorageError('NOT_FOUND', 'no such version');
    const parentSegs = segs.slice(0, -1);
    const done = await sp.commit(async (journal) => {
      const cur = await this.load(sp, segs, true);
      if (!cur.st.isFile())
        throw new StorageError('FAILED_PRECONDITION', 'folders have no versions', { reason: 'is-folder' });
      checkLockFor(lockOf(cur.rec.lk), opts?.lockId, true, opts?.actor);
      const from = this.versionPath(sp, cur.rec.id, key);
      const vst = await fsp.lstat(from.abs).catch(() => undefined);
      if (!vst?.isFile()) throw new StorageError('NOT_FOUND', 'no such version');
      const parent = await this.loadParent(sp, parentSegs, true);
      // The version's inode becomes the file; it gets the resource's id, place, metadata, grants, lock.
      const old = decodeRecord(await this.native.getxattr(from.abs, XATTR_NODE)) ?? { id: cur.rec.id };
      const rec: NodeRecord = {
        id: cur.rec.id,
        p: parent.id,
        // (the current file's, by carryOver below; the version's when the current one has none)
        ...(old.bt !== undefined && { bt: old.bt }),
        ...(old.ck && { ck: old.ck, ckm: old.ckm, cks: old.cks, ...sp.checksumsConfirmed() }),
      };
      await this.carryOver(sp.abs(segs), cur.rec, from.abs, rec);
      this.native.setxattrSync(from.abs, XATTR_NODE, encodeRecord(rec));
      const aside = this.versionPath(sp, cur.rec.id, versionKey());
      journal.begin({ dirs: [parentSegs], undo: [{ from: aside.rel, to: segs }], totals: true });
      await this.options.hooks?.beforeRename?.('restore-version');
      await this.setAside(sp.abs(segs), aside.abs, cur.st);
      await this.options.hooks?.afterRename?.('restore-version-aside');
      await fsp.rename(from.abs, sp.abs(segs));
      await sp.propagateHeld(new Map([[keyOf(parentSegs), vst.size - cur.st.size]]));
      sp.adjustRootHeld({ vts: cur.st.size - vst.size });
      return { rec, st: await fsp.lstat(sp.abs(segs)) };
    });
    await this.syncDir(sp.abs(parentSegs));
    return this.info(sp, segs, done.st, done.rec);
  }

  // ================================================================== trash

  /** A node in the trash: the item (by id) and a path inside it. */
  private trashPath(sp: PosixSpace, key: string): { id: string; rel: string[]; abs: string } {
    const [id, ...rel] = String(key).split('/').filter(Boolean);
    if (!id || !isValidId(id)) throw new StorageError('NOT_FOUND', 'not in the trash');
    for (const s of rel) checkName(s);
    return { id, rel, abs: [`${sp.trashDir}/${id}`, ...rel].join('/') };
  }

  /** A recycle item from what is on disk (undefined for what is not a node). */
  private async recycleItem(
    sp: PosixSpace,
    abs: string,
    key: string,
    itemPath: string,
    top: NonNullable<NodeRecord['tr']>,
  ): Promise<RecycleItem | undefined> {
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (!st || !(st.isFile() || st.isDirectory())) return undefined;
    const rec = decodeRecord(await this.native.getxattr(abs, XATTR_NODE).catch(() => undefined));
    if (!rec) return undefined;
    const grants = rec.g ? await this.readGrants(sp, abs, rec) : [];
    return {
      key,
      id: { storageId: this.storageId, spaceId: sp.id, opaqueId: rec.id },
      ...(rec.p && { parentId: { storageId: this.storageId, spaceId: sp.id, opaqueId: rec.p } }),
      type: st.isDirectory() ? 'folder' : 'file',
      path: itemPath,
      size: st.isDirectory() ? (rec.ts ?? 0) : st.size,
      deleted: top.at,
      ...(top.by && { deletedBy: top.by }),
      ...(grants.length && { grants }),
    };
  }

  /** The deletion facts of a trash item (by its top-level id). */
  private async trashTop(sp: PosixSpace, id: string): Promise<NonNullable<NodeRecord['tr']>> {
    const top = decodeRecord(
      await this.native.getxattr(`${sp.trashDir}/${id}`, XATTR_NODE).catch(() => undefined),
    );
    if (!top?.tr) throw new StorageError('NOT_FOUND', 'not in the trash');
    return top.tr;
  }

  private async *listTrash(spaceId: string, opts?: { key?: string }): AsyncGenerator<RecycleItem> {
    const sp = await this.space(spaceId);
    if (!opts?.key) {
      for (const name of await fsp.readdir(sp.trashDir).catch(() => [] as string[])) {
        if (!isValidId(name)) continue;
        const abs = `${sp.trashDir}/${name}`;
        const rec = decodeRecord(await this.native.getxattr(abs, XATTR_NODE).catch(() => undefined));
        if (!rec?.tr) continue;
        const it = await this.recycleItem(sp, abs, name, rec.tr.p, rec.tr);
        if (it) yield it;
      }
      return;
    }
    const t = this.trashPath(sp, opts.key);
    const top = await this.trashTop(sp, t.id);
    const st = await fsp.lstat(t.abs).catch(() => undefined);
    if (!st) throw new StorageError('NOT_FOUND', 'not in the trash');
    if (!st.isDirectory())
      throw new StorageError('FAILED_PRECONDITION', 'not a folder', { reason: 'not-folder' });
    const base = [top.p === '/' ? '' : top.p, ...t.rel].join('/');
    for (const name of await fsp.readdir(t.abs)) {
      const it = await this.recycleItem(
        sp,
        `${t.abs}/${name}`,
        [t.id, ...t.rel, name].join('/'),
        `${base}/${name}`,
        top,
      );
      if (it) yield it;
    }
  }

  private async trashItem(spaceId: string, key: string): Promise<RecycleItem> {
    const sp = await this.space(spaceId);
    const t = this.trashPath(sp, key);
    const top = await this.trashTop(sp, t.id);
    const itemPath = t.rel.length ? [top.p === '/' ? '' : top.p, ...t.rel].join('/') : top.p;
    const it = await this.recycleItem(sp, t.abs, [t.id, ...t.rel].join('/'), itemPath, top);
    if (!it) throw new StorageError('NOT_FOUND', 'not in the trash');
    return it;
  }

  private async restoreTrash(
    spaceId: string,
    key: string,
    opts?: { target?: NodeRef } & MutationOptions,
  ): Promise<ResourceInfo> {
    const sp = await this.space(spaceId);
    const t = this.trashPath(sp, key);
    const done = await sp.commit(async (journal) => {
      const topAbs = `${sp.trashDir}/${t.id}`;
      const top = decodeRecord(await this.native.getxattr(topAbs, XATTR_NODE).catch(() => undefined));
      const st = await fsp.lstat(t.abs).catch(() => undefined);
      if (!top?.tr || !st || !(st.isFile() || st.isDirectory()))
        throw new StorageError('NOT_FOUND', 'not in the trash');
      const rec = decodeRecord(await this.native.getxattr(t.abs, XATTR_NODE));
      if (!rec) throw new StorageError('NOT_FOUND', 'not in the trash');
      let to: string[];
      if (opts?.target) {
        if (opts.target.spaceId !== sp.id) {
          throw new StorageError('UNIMPLEMENTED', 'restoring into another space is not supported', {
            reason: 'cross-space',
          });
        }
        to = await this.locate(sp, opts.target);
      } else {
        to = [...splitPath(top.tr.p), ...t.rel];
      }
      if (!to.length) throw new StorageError('INVALID_ARGUMENT', 'cannot restore over the space root');
      const parent = await this.loadParent(sp, to.slice(0, -1), true);
      if (await fsp.lstat(sp.abs(to)).catch(() => undefined)) {
        throw new StorageError('ALREADY_EXISTS', `"${printable(to.at(-1))}" already exists`);
      }
      const size = st.isDirectory() ? (rec.ts ?? 0) : st.size;
      if (rec.lb || liveLock(lockOf(rec.lk))) this.markLocksAboveHeld(sp, to);
      journal.begin({ dirs: [to.slice(0, -1)], nodes: [{ id: rec.id, at: to }], totals: true });
      await this.options.hooks?.beforeRename?.('restore');
      // The record keeps its trash facts until the node is out: a crash before the rename leaves a
      // complete trash item, one after it a live node that recovery finishes (parent, index, facts).
      await fsp.rename(t.abs, sp.abs(to));
      if (t.rel.length) this.shrinkTrashedHeld(sp, t, size);
      await this.options.hooks?.afterRename?.('restore');
      // (a file's checksums confirmed as of the lstat before its rename, when still current then)
      const restored = { ...(st.isFile() ? sp.confirmChecksums(rec, st) : rec), p: parent.id };
      delete restored.tr;
      sp.writeHeld(to, restored);
      await sp.index.write(rec.id, parent.id, keyOf(to));
      await sp.propagateHeld(new Map([[keyOf(to.slice(0, -1)), size]]));
      sp.adjustRootHeld({ tts: -size, gv: st.isDirectory() });
      return { rec: restored, to, st: await fsp.lstat(sp.abs(to)) };
    });
    if (done.st.isDirectory()) sp.index.forgetAll();
    await this.syncDir(sp.abs(done.to.slice(0, -1)));
    return this.info(sp, done.to, done.st, done.rec);
  }

  /** A node left a deleted folder: the folders it was in (inside the trash) hold that much less. */
  private shrinkTrashedHeld(sp: PosixSpace, t: { id: string; rel: string[] }, size: number): void {
    for (let i = t.rel.length - 1; i >= 0; i--) {
      const abs = [`${sp.trashDir}/${t.id}`, ...t.rel.slice(0, i)].join('/');
      const rec = decodeRecord(this.native.getxattrSync(abs, XATTR_NODE));
      if (!rec || rec.ts === undefined) continue;
      rec.ts = Math.max(0, rec.ts - size);
      this.native.setxattrSync(abs, XATTR_NODE, encodeRecord(rec));
    }
  }

  private async purgeTrash(spaceId: string, key?: string): Promise<void> {
    const sp = await this.space(spaceId);
    const gone: string[] = [];
    await sp.commit(async (journal) => {
      const keys =
        key === undefined
          ? (await fsp.readdir(sp.trashDir).catch(() => [] as string[])).filter(isValidId)
          : [key];
      journal.begin({ dirs: [], totals: true });
      let freed = 0;
      for (const k of keys) {
        const t = this.trashPath(sp, k);
        const st = await fsp.lstat(t.abs).catch(() => undefined);
        if (!st) {
          if (key !== undefined) throw new StorageError('NOT_FOUND', 'not in the trash');
          continue;
        }
        const rec = decodeRecord(await this.native.getxattr(t.abs, XATTR_NODE).catch(() => undefined));
        const size = st.isDirectory() ? (rec?.ts ?? 0) : st.size;
        const name = sp.tmpName('rm');
        await fsp.mkdir(sp.tmp, { recursive: true });
        await fsp.rename(t.abs, `${sp.tmp}/${name}`);
        if (t.rel.length) this.shrinkTrashedHeld(sp, t, size);
        freed += size;
        gone.push(name);
      }
      sp.adjustRootHeld({ tts: -freed });
    });
    // What was purged goes for good, with the versions of its files (in the background).
    for (const name of gone) this.runInBackground(this.discard(sp, name));
  }

  // ================================================================== locks

  private async setLock(ref: NodeRef, lock: Lock, opts?: MutationOptions): Promise<Lock> {
    const clean = newLock(lock, opts?.actor);
    return this.changeRecord(ref, (rec, sp, segs) => {
      // Folders above first: a crash in between leaves a hint too many, never a lock unseen.
      this.markLocksAboveHeld(sp, segs);
      const next = lockAfter(liveLock(lockOf(rec.lk)), clean);
      rec.lk = storedLock(next);
      return { ...next };
    });
  }

  private async refreshLock(ref: NodeRef, lock: Lock, existingLockId?: string): Promise<Lock> {
    const clean = newLock(lock);
    return this.changeRecord(ref, (rec) => {
      const current = liveLock(lockOf(rec.lk));
      checkLockChange(current, existingLockId ?? clean.lockId, clean.user);
      const next = lockAfter(current, clean, existingLockId ?? clean.lockId);
      rec.lk = storedLock(next);
      return { ...next };
    });
  }

  private async unlock(ref: NodeRef, lockId: string, opts?: MutationOptions): Promise<void> {
    await this.changeRecord(ref, (rec) => {
      checkLockChange(liveLock(lockOf(rec.lk)), lockId, opts?.actor);
      delete rec.lk;
    });
  }

  private async getLock(ref: NodeRef): Promise<Lock | undefined> {
    const sp = await this.space(ref.spaceId);
    const { rec } = await this.load(sp, await this.locate(sp, ref));
    return liveLock(lockOf(rec.lk));
  }

  /** Read-modify-write a node's record under the commit lock (locks, flags). */
  private async changeRecord<T>(
    ref: NodeRef,
    change: (rec: NodeRecord, sp: PosixSpace, segs: string[]) => T,
  ): Promise<T> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    await this.load(sp, segs);
    return sp.commit(async () => {
      const { rec } = await this.load(sp, segs, true);
      const out = change(rec, sp, segs);
      sp.writeHeld(segs, rec);
      return out;
    });
  }

  /** Mark every folder above `segs` as possibly holding a lock below (lock held). */
  private markLocksAboveHeld(sp: PosixSpace, segs: string[]): void {
    for (let i = segs.length - 1; i >= 0; i--) {
      const above = segs.slice(0, i);
      const rec = sp.recordHeld(above);
      if (!rec || rec.lb) continue;
      rec.lb = 1;
      sp.writeHeld(above, rec);
    }
  }

  /**
   * LOCKED when anything inside the folder at `segs` carries a live lock the request does not hold
   * (lock held). Follows the `lb` hints, and clears those that lead to no live lock.
   */
  private async checkLocksInsideHeld(
    sp: PosixSpace,
    segs: string[],
    rec: NodeRecord,
    opts: LockOptions | undefined,
  ): Promise<void> {
    const walk = async (dir: string[]): Promise<boolean> => {
      let found = false;
      for (const name of await fsp.readdir(sp.abs(dir)).catch(() => [] as string[])) {
        if (dir.length === 0 && name === RESERVED_ROOT_NAME) continue;
        const child = [...dir, name];
        const crec = await sp.record(child).catch(() => undefined);
        if (!crec) continue;
        const live = liveLock(lockOf(crec.lk));
        if (live) {
          checkLockInside(live, opts?.lockId, opts?.actor, opts?.heldLockIds, `/${child.join('/')}`);
          found = true;
        }
        if (crec.lb) {
          if (await walk(child)) found = true;
          else {
            delete crec.lb;
            sp.writeHeld(child, crec);
          }
        }
      }
      return found;
    };
    if (!rec.lb) return;
    if (!(await walk(segs))) {
      delete rec.lb;
      sp.writeHeld(segs, rec);
    }
  }

  // ================================================================== grants

  /** Grants stored on a node (inline or sidecar), expired ones left out. */
  private async readGrants(sp: PosixSpace, abs: string, rec: NodeRecord): Promise<Grant[]> {
    if (!rec.g) return [];
    const raw = await sp.readGrantsDocument(abs, rec);
    if (!raw) return [];
    // Fail closed: grants that cannot be read may have held a deny.
    const unreadable = () =>
      new StorageError(
        'INTERNAL',
        `unreadable grants on node ${rec.id}; fix or remove them (stowage fsck shows them)`,
      );
    let stored: unknown;
    try {
      stored = JSON.parse(raw.toString('utf8'));
    } catch {
      throw unreadable();
    }
    if (!Array.isArray(stored)) throw unreadable();
    const now = Date.now();
    const out: Grant[] = [];
    for (const s of stored as StoredGrant[]) {
      const g = decodeGrant(s);
      if (!g) throw unreadable();
      if (g.expires === undefined || g.expires > now) out.push(g);
    }
    return out;
  }

  /**
   * Write a node's grants (lock held); updates `rec.g`, which the caller writes before calling the
   * returned function to drop the previous copy.
   */
  private async storeGrants(
    sp: PosixSpace,
    abs: string,
    rec: NodeRecord,
    grants: Grant[],
  ): Promise<() => Promise<void>> {
    const json = grants.length ? JSON.stringify(grants.map(encodeGrant)) : undefined;
    const out = await this.storeDocument(abs, XATTR_GRANTS, sp.grantsSidecar(rec.id), rec.g, json);
    if (out.flag) rec.g = out.flag;
    else delete rec.g;
    return out.drop;
  }

  private async listGrants(ref: NodeRef): Promise<Grant[]> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    const { rec } = await this.load(sp, segs);
    return this.readGrants(sp, sp.abs(segs), rec);
  }

  private async changeGrants(
    ref: NodeRef,
    opts: MutationOptions | undefined,
    change: (grants: Grant[]) => Grant[],
  ): Promise<boolean> {
    const sp = await this.space(ref.spaceId);
    const segs = await this.locate(sp, ref);
    await this.load(sp, segs);
    return sp.commit(async (journal) => {
      const { rec } = await this.load(sp, segs, true);
      checkLockFor(lockOf(rec.lk), opts?.lockId, true, opts?.actor);
      const before = await this.readGrants(sp, sp.abs(segs), rec);
      const after = change(before);
      if (after === before) return false;
      // Grants first, then the space's grants version that tells every process to drop its cached
      // chains (bumped the other way round, a reader could cache the old grants under the new
      // version). A crash in between is finished on recovery, which bumps it.
      journal.begin({ dirs: [] });
      await this.options.hooks?.beforeRename?.('grant');
      const dropOld = await this.storeGrants(sp, sp.abs(segs), rec, after);
      sp.writeHeld(segs, rec); // even when only a sidecar changed (see setMetadata)
      await dropOld();
      await this.options.hooks?.afterRename?.('grant');
      sp.adjustRootHeld({ gv: true });
      return true;
    });
  }

  private async setGrant(ref: NodeRef, grant: Grant, opts?: MutationOptions): Promise<void> {
    const key = granteeKey(grant.grantee);
    await this.changeGrants(ref, opts, (grants) => [
      ...grants.filter((g) => granteeKey(g.grantee) !== key),
      grant,
    ]);
  }

  private async removeGrant(ref: NodeRef, grantee: Grantee, opts?: MutationOptions): Promise<boolean> {
    const key = granteeKey(grantee);
    return this.changeGrants(ref, opts, (grants) => {
      const kept = grants.filter((g) => granteeKey(g.grantee) !== key);
      return kept.length === grants.length ? grants : kept;
    });
  }

  /**
   * The node with its own grants, and the grants of every folder above it. The chain for a parent
   * path is cached in the process and stays valid while the space's grants version (`gv` on the
   * root, bumped by every grant change and folder move) is unchanged; checking it is one synchronous
   * read of the root's record.
   */
  private async inspect(ref: NodeRef, opts?: StatOptions): Promise<Inspected> {
    const sp = this.spaceNow(ref.spaceId) ?? (await this.space(ref.spaceId));
    const { segs, node } = await this.locateNode(sp, ref);
    const loaded = node ?? (await this.load(sp, segs));
    const gv = sp.grantsVersion();
    const inherited = segs.length ? await this.chain(sp, segs.slice(0, -1), gv) : [];
    const o = opts?.fields
      ? { ...opts, fields: [...opts.fields, 'grants' as Field] }
      : opts
        ? { ...opts, fields: WITH_GRANTS }
        : INSPECT_DEFAULT;
    const info = this.infoIsNow(loaded.st, loaded.rec, o)
      ? this.infoNow(sp, segs, loaded.st, loaded.rec, o)
      : await this.info(sp, segs, loaded.st, loaded.rec, o);
    if (!info.grants) info.grants = loaded.rec.g ? await this.readGrants(sp, sp.abs(segs), loaded.rec) : [];
    return { info, inherited };
  }

  /** Grants of each folder from the space root down to `segs` (inclusive). */
  private async chain(sp: PosixSpace, segs: string[], gv: number): Promise<Grant[][]> {
    return (await this.chainAt(sp, segs, gv)).chain;
  }

  /**
   * {@link chain}, with when it was read (its oldest part). A chain is its parent's and one more
   * folder's grants: the parent's, when kept, is not read again (whoever looks at every folder
   * above a node, from the deepest up, reads each folder once, not the square of the depth).
   */
  private async chainAt(
    sp: PosixSpace,
    segs: string[],
    gv: number,
  ): Promise<{ chain: Grant[][]; at: number }> {
    const key = keyOf(segs);
    const hit = sp.chains.get(key);
    const now = performance.now();
    // Grants edited around Stowage (setfattr by hand) do not bump the version: they count within
    // CHAIN_MAX_AGE_MS.
    if (hit && hit.gv === gv && now - hit.at < CHAIN_MAX_AGE_MS) return hit;
    const above = segs.length ? await this.chainAt(sp, segs.slice(0, -1), gv) : { chain: [], at: now };
    const rec = await sp.record(segs);
    const chain = [...above.chain, rec?.g ? await this.readGrants(sp, sp.abs(segs), rec) : []];
    const at = Math.min(above.at, now);
    if (sp.chains.size > 10_000) sp.chains.clear();
    sp.chains.set(key, { gv, chain, at });
    return { chain, at };
  }

  // ================================================================== removal

  /**
   * Remove a tree from a space's tmp folder. Upload temps are just unlinked; deleted or staged trees
   * also lose the index entries and sidecars of their nodes, unless the id lives on elsewhere.
   */
  private async discard(sp: PosixSpace, name: string, withVersions = true): Promise<void> {
    const abs = `${sp.tmp}/${name}`;
    if (name.startsWith('up-') || name.startsWith('old-')) {
      await fsp.unlink(abs).catch(() => {});
      return;
    }
    const gone = new Set<string>();
    const walk = async (p: string): Promise<void> => {
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st) return;
      if (st.isDirectory()) {
        for (const child of await fsp.readdir(p).catch(() => [] as string[])) {
          let at = `${p}/${child}`;
          if (tooDeep(at)) {
            // Too deep a path to go on by (a deep tree moved into a deep folder): what is below
            // goes up to the tmp folder first, as a removal of its own (a crash leaves it to the
            // next start's clean-up).
            const up = `${sp.tmp}/rm-${randomUUID()}`;
            await fsp.rename(at, up);
            at = up;
          }
          await walk(at);
        }
      }
      if (st.isFile() || st.isDirectory()) {
        const rec = decodeRecord(await this.native.getxattr(p, XATTR_NODE).catch(() => undefined));
        if (rec) {
          const entry = await sp.index.read(rec.id);
          if (!entry || !(await this.isAt(sp, entry.rel, rec.id))) {
            gone.add(rec.id);
            await sp.index.remove(rec.id);
            if (rec.md === 2) await fsp.unlink(sp.sidecar(rec.id)).catch(() => {});
            if (rec.g === 2) await fsp.unlink(sp.grantsSidecar(rec.id)).catch(() => {});
            if (withVersions && st.isFile()) await this.dropVersions(sp, rec.id);
          }
        }
      }
      if (st.isDirectory()) await fsp.rmdir(p).catch(() => fsp.rm(p, { recursive: true, force: true }));
      else await fsp.unlink(p).catch(() => {});
    };
    await walk(abs);
    // (the users' favorite marks of what is gone point nowhere now)
    await this.favorites.forget(sp.id, gone);
  }

  /**
   * Remove every version of a node that is gone for good, and their bytes from the space's count,
   * in one commit (a crash in between is repaired by recounting).
   */
  private async dropVersions(sp: PosixSpace, id: string): Promise<void> {
    const dir = path.dirname(this.versionPath(sp, id, 'x').abs);
    if (!(await fsp.lstat(dir).catch(() => undefined))) return;
    await sp.commit(async (journal) => {
      journal.begin({ dirs: [], totals: true });
      let bytes = 0;
      for (const k of await fsp.readdir(dir).catch(() => [] as string[])) {
        const st = await fsp.lstat(`${dir}/${k}`).catch(() => undefined);
        if (st?.isFile()) bytes += st.size;
      }
      await fsp.rm(dir, { recursive: true, force: true });
      sp.adjustRootHeld({ vts: -bytes });
    });
  }

  /** Remove a whole tree of the root's tmp folder without looking at ids (space deletion, staging leftovers). */
  private async removeTree(abs: string): Promise<void> {
    await removeTree(abs, () => `${this.root}/.stowage/tmp/rm-${randomUUID()}`);
  }

  close(): Promise<void> {
    return this.closeImpl().catch(rethrow('close'));
  }

  private async closeImpl(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.observers]) await w.close();
    this.closed = true;
    await this.idle();
    const seen = new Set<PosixSpace>();
    for (const { sp } of this.spaces.values()) {
      if (seen.has(sp)) continue;
      seen.add(sp);
      await sp.lock.close();
      sp.dropLive();
    }
    await this.rootLock.close();
  }
}

/** Longest a cached grant chain is trusted without re-reading it. */
const CHAIN_MAX_AGE_MS = 30_000;
/** How long a folder found reached without a symlink is taken for such while it keeps its inode, ms. */
const REAL_DIR_MAX_AGE_MS = 1_000;

/** Why `link(2)` may refuse where a rename would do: moved aside instead (see PosixDriver.setAside). */
const CANNOT_LINK = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK', 'EXDEV', 'EEXIST']);

let lastVersionUs = 0;

/**
 * A new version key: archive time in microseconds, strictly increasing in this process (keys are
 * made under the commit lock, so processes never interleave within one), and a random suffix.
 */
function versionKey(): string {
  lastVersionUs = nextTreeTime(lastVersionUs);
  return `${String(lastVersionUs).padStart(17, '0')}-${randomUUID().slice(0, 8)}`;
}

/** Version keys as we make them (anything else in a version folder is ignored). */
function isVersionKey(k: string): boolean {
  return /^\d{17}-[0-9a-f]{8}$/.test(k);
}

function rethrow(op: string): (err: unknown) => never {
  return (err) => {
    throw toStorageError(err, op);
  };
}

async function* guardIter<T>(op: string, it: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* it;
  } catch (err) {
    throw toStorageError(err, op);
  }
}

function name(alias: string): string {
  return alias.slice(alias.indexOf('/') + 1);
}

/** Write blocks at a position with writev, finishing short writes. */
/** What a write needs of its open temp file: a `FileHandle`, or {@link syncTempFile}. */
type TempFile = Pick<fsp.FileHandle, 'writev' | 'datasync' | 'sync' | 'utimes' | 'close'> & {
  stat(): Promise<fs.Stats>;
};

/**
 * A temp file behind a plain descriptor, written, stated and closed with synchronous calls (for
 * small bodies on a local filesystem: each costs less than a round trip to the thread pool); the
 * flushes to disk still go to the thread pool, where waiting is harmless.
 */
function syncTempFile(fd: number): TempFile {
  let open = true;
  return {
    writev: async (buffers, position) => ({
      bytesWritten: fs.writevSync(fd, buffers, position),
      buffers,
    }),
    datasync: () =>
      new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
    sync: () => new Promise<void>((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve()))),
    utimes: async (atime, mtime) => fs.futimesSync(fd, atime, mtime),
    stat: async () => fs.fstatSync(fd),
    close: async () => {
      if (!open) return;
      open = false;
      fs.closeSync(fd);
    },
  };
}

/**
 * `length` bytes of a file from `start`, read with synchronous calls: opened without following
 * symlinks and checked to be the file `st` saw (when given).
 */
function readSmall(
  abs: string,
  flags: number,
  start: number,
  length: number,
  name: string,
  st?: fs.Stats,
): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(abs, flags);
  } catch (err) {
    throw toStorageError(err, `"${printable(name)}"`);
  }
  try {
    const fst = fs.fstatSync(fd);
    if (!fst.isFile() || (st && !sameFile(fst, st))) {
      throw new StorageError('ABORTED', 'the file changed while it was being opened; retry', {
        reason: CHANGED_WHILE_READ,
      });
    }
    const bytes = Buffer.allocUnsafe(length);
    for (let got = 0; got < length; ) {
      const n = fs.readSync(fd, bytes, got, length - got, start + got);
      if (n === 0)
        throw new StorageError('ABORTED', 'the file got shorter while it was read; retry', {
          reason: CHANGED_WHILE_READ,
        });
      got += n;
    }
    return bytes;
  } catch (err) {
    throw toStorageError(err, 'read');
  } finally {
    fs.closeSync(fd);
  }
}

/** Give a read result whose bytes are in hand a `body` streaming them, made only when asked for. */
function withLazyBody(result: ReadResult, bytes: Buffer): ReadResult {
  let body: ReadResult['body'];
  return Object.defineProperty(result, 'body', {
    enumerable: true,
    configurable: true,
    get: () => {
      body ??= Readable.from([bytes], { objectMode: false });
      return body;
    },
  });
}

/** A new file (`wx`) opened on the thread pool, as a plain descriptor. */
function openFd(abs: string): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(abs, 'wx', 0o666, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

async function writeAll(fh: TempFile, blocks: Uint8Array[], position: number): Promise<void> {
  let at = position;
  let rest = blocks;
  while (rest.length) {
    const { bytesWritten } = await fh.writev(rest, at);
    if (bytesWritten === 0) throw new StorageError('INTERNAL', 'short write');
    at += bytesWritten;
    let n = bytesWritten;
    let i = 0;
    while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
    rest = rest.slice(i);
    if (n > 0) rest[0] = rest[0]!.subarray(n);
  }
}

/** The lock options that apply to a move's or copy's replaced destination. */
function targetLockOptions(opts: MoveOptions | undefined): MoveOptions | undefined {
  return opts?.targetLockId !== undefined ? { ...opts, lockId: opts.targetLockId } : opts;
}

/** Bytes of a loaded node: a file's size, a folder's recorded tree size. */
function sizeOfLoaded(n: { st: fs.Stats; rec: NodeRecord }): number {
  return n.st.isDirectory() ? (n.rec.ts ?? 0) : n.st.size;
}

/** statfs magic numbers of local filesystems (linux/magic.h). */
const LOCAL_FS_TYPES = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0x5346544e, // ntfs3
]);

/**
 * True when `dir` is on a filesystem known to be local (its metadata calls never wait for a server).
 * Only the root is checked: a network mount *below* the root needs `syncMetadata: false`. Overlayfs
 * is left out, as its lower layer may be anything.
 */
async function isLocalFilesystem(dir: string): Promise<boolean> {
  try {
    return LOCAL_FS_TYPES.has(Number((await fsp.statfs(dir)).type) >>> 0);
  } catch {
    return false;
  }
}

/** The length of a body given whole (text or bytes); undefined for a stream. */
function knownLength(body: Body): number | undefined {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.length;
  return undefined;
}

/** Etags computed from shared (frozen) records, with what they were computed from. */
const etags = new WeakMap<
  Readonly<NodeRecord>,
  { t: number; size: number; sha1: string | undefined; etag: string }
>();

/**
 * A file's etag (`size` >= 0, `t` its mtime in ms) or a folder's (`size` -1, `t` its tree time in
 * µs). For a shared record (a listing's), the last one is kept with it: listing a folder again
 * does not hash every entry again.
 */
function etagOf(rec: Readonly<NodeRecord>, t: number, size: number, sha1: string | undefined): string {
  const shared = Object.isFrozen(rec);
  if (shared) {
    const hit = etags.get(rec);
    if (hit && hit.t === t && hit.size === size && hit.sha1 === sha1) return hit.etag;
  }
  const etag = size < 0 ? folderEtag(rec.id, t) : fileEtag(rec.id, t, size, sha1);
  if (shared) etags.set(rec, { t, size, sha1, etag });
  return etag;
}
