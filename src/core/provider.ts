/**
 * The StorageProvider: the one entry point every door (TypeScript API, CS3, WebDAV) calls. It resolves
 * references to a driver and a validated {@link NodeRef}, enforces path safety, and (in later
 * issues) authorises against grants, checks locks and quota, and emits events.
 *
 * @module
 */
import type { Body, Driver, MutationOptions } from './driver.js';
import { StorageError } from './errors.js';
import { checkName, checkNotReserved, parseResourceId, printable, splitPath } from './refs.js';
import type {
  CreateSpaceInput,
  ListOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  Ref,
  Reference,
  ResourceId,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from './types.js';

/** Options for {@link StorageProvider}. */
export interface ProviderOptions {
  /** One driver, or several (each serving its own storage id). */
  drivers: Driver | readonly Driver[];
}

/** A resolved reference. */
export interface Resolved {
  driver: Driver;
  node: NodeRef;
}

/** Options for {@link StorageProvider.mkdir}. */
export interface MkdirOptions extends MutationOptions {
  /** Create missing parents and accept an existing folder (`mkdir -p`). */
  parents?: boolean;
}

/** Resolves references to drivers and is the one door-independent API of Stowage. */
export class StorageProvider {
  readonly drivers: readonly Driver[];
  private readonly byStorage = new Map<string, Driver>();
  private readonly spaceDriver = new Map<string, Driver>();
  private readonly aliasCache = new Map<string, { driver: Driver; spaceId: string }>();

  constructor(options: ProviderOptions) {
    const drivers = Array.isArray(options.drivers) ? options.drivers : [options.drivers as Driver];
    if (drivers.length === 0) throw new StorageError('INVALID_ARGUMENT', 'at least one driver is required');
    this.drivers = Object.freeze([...drivers]);
    for (const d of drivers) {
      if (this.byStorage.has(d.storageId)) {
        throw new StorageError('INVALID_ARGUMENT', `two drivers serve storage id "${d.storageId}"`);
      }
      this.byStorage.set(d.storageId, d);
    }
  }

  /** The driver serving a storage id (the first one for an empty id). */
  driverFor(storageId: string): Driver {
    const d = storageId ? this.byStorage.get(storageId) : this.drivers[0];
    if (!d) throw new StorageError('NOT_FOUND', `unknown storage "${printable(storageId)}"`);
    return d;
  }

  // ---------------------------------------------------------------- resolution

  /** Resolve a reference to a driver and a validated node reference. */
  async resolve(ref: Ref): Promise<Resolved> {
    const r: Reference = typeof ref === 'string' ? parseRefString(ref) : ref;
    if (r === null || typeof r !== 'object') {
      throw new StorageError('INVALID_ARGUMENT', 'a reference is required', { reason: 'invalid-path' });
    }
    if (r.resourceId !== undefined) {
      const id =
        typeof r.resourceId === 'string' ? parseResourceId(r.resourceId) : checkResourceId(r.resourceId);
      const driver = await this.driverForSpace(id.spaceId, id.storageId);
      const segments = splitPath(r.path);
      const atRoot = id.opaqueId === id.spaceId;
      checkNotReserved(segments, atRoot);
      return {
        driver,
        node: atRoot
          ? { spaceId: id.spaceId, segments }
          : { spaceId: id.spaceId, nodeId: id.opaqueId, segments },
      };
    }
    if (r.space !== undefined) {
      const { driver, spaceId } = await this.spaceByIdOrAlias(r.space);
      const segments = splitPath(r.path);
      checkNotReserved(segments, true);
      return { driver, node: { spaceId, segments } };
    }
    // Absolute path: /<type>/<alias>/<rest>
    const all = splitPath(r.path);
    if (all.length < 2) {
      throw new StorageError('NOT_FOUND', `no space at "${printable(r.path ?? '')}"`);
    }
    const { driver, spaceId } = await this.spaceByIdOrAlias(`${all[0]}/${all[1]}`);
    const segments = all.slice(2);
    checkNotReserved(segments, true);
    return { driver, node: { spaceId, segments } };
  }

  private async driverForSpace(spaceId: string, storageId: string): Promise<Driver> {
    if (storageId) return this.driverFor(storageId);
    const cached = this.spaceDriver.get(spaceId);
    if (cached) return cached;
    return (await this.spaceByIdOrAlias(spaceId)).driver;
  }

  private async spaceByIdOrAlias(key: string): Promise<{ driver: Driver; spaceId: string }> {
    if (typeof key !== 'string' || key.length === 0 || key.includes('\0')) {
      throw new StorageError('INVALID_ARGUMENT', 'invalid space', { reason: 'invalid-path' });
    }
    const hit = this.aliasCache.get(key);
    if (hit) return hit;
    if (this.drivers.length === 1) {
      const driver = this.drivers[0]!;
      const space = await driver.getSpace(key);
      return this.remember(key, driver, space);
    }
    for (const driver of this.drivers) {
      try {
        return this.remember(key, driver, await driver.getSpace(key));
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND')) throw err;
      }
    }
    throw new StorageError('NOT_FOUND', `space "${printable(key)}" not found`);
  }

  private remember(key: string, driver: Driver, space: Space): { driver: Driver; spaceId: string } {
    const v = { driver, spaceId: space.id };
    if (this.aliasCache.size > 10_000) this.aliasCache.clear();
    this.aliasCache.set(key, v);
    this.spaceDriver.set(space.id, driver);
    return v;
  }

  private forget(space: Space): void {
    this.aliasCache.delete(space.id);
    this.aliasCache.delete(space.alias);
    this.spaceDriver.delete(space.id);
  }

  // ---------------------------------------------------------------- spaces

  /** Spaces of every driver, streamed. */
  async *listSpaces(filter?: SpaceFilter): AsyncGenerator<Space> {
    for (const driver of this.drivers) yield* driver.listSpaces(filter);
  }

  /** A space by id or alias (`project/demo`). */
  async getSpace(idOrAlias: string): Promise<Space> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    return driver.getSpace(spaceId);
  }

  /** Create a space on the driver for `storageId` (default: the first driver). */
  async createSpace(input: CreateSpaceInput, storageId = ''): Promise<Space> {
    const driver = this.driverFor(storageId);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot create spaces`);
    if (input.type !== 'personal' && input.type !== 'project') {
      throw new StorageError('INVALID_ARGUMENT', `unknown space type "${printable(input.type)}"`);
    }
    if (typeof input.name !== 'string' || input.name.trim() === '' || input.name.length > 255) {
      throw new StorageError('INVALID_ARGUMENT', 'a space needs a name of 1-255 characters');
    }
    if (input.quota !== undefined && !(Number.isSafeInteger(input.quota) && input.quota >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'quota must be a non-negative integer');
    }
    const space = await feature.create(input);
    this.spaceDriver.set(space.id, driver);
    return space;
  }

  async updateSpace(idOrAlias: string, input: UpdateSpaceInput): Promise<Space> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot change spaces`);
    return feature.update(spaceId, input);
  }

  async deleteSpace(idOrAlias: string): Promise<void> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot delete spaces`);
    const space = await driver.getSpace(spaceId);
    await feature.delete(spaceId);
    this.forget(space);
  }

  // ---------------------------------------------------------------- resources

  async stat(ref: Ref, opts?: StatOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    return driver.stat(node, opts);
  }

  /** Children of a folder, streamed. */
  async *list(ref: Ref, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    yield* driver.list(node, opts);
  }

  async read(ref: Ref, opts?: ReadOptions): Promise<ReadResult> {
    const { driver, node } = await this.resolve(ref);
    return driver.read(node, opts);
  }

  async write(ref: Ref, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node);
    if (opts?.size !== undefined && !(Number.isSafeInteger(opts.size) && opts.size >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'size must be a non-negative integer');
    }
    if (opts?.mtime !== undefined && !Number.isFinite(opts.mtime)) {
      throw new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds');
    }
    return driver.write(node, body, opts);
  }

  async mkdir(ref: Ref, opts?: MkdirOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node);
    if (!opts?.parents) return driver.mkdir(node, opts);
    let last: ResourceInfo | undefined;
    for (let i = 1; i <= node.segments.length; i++) {
      const step: NodeRef = { ...node, segments: node.segments.slice(0, i) };
      try {
        last = await driver.mkdir(step, opts);
      } catch (err) {
        if (!StorageError.is(err, 'ALREADY_EXISTS')) throw err;
        last = await driver.stat(step);
        if (last.type !== 'folder') {
          throw new StorageError('ALREADY_EXISTS', `"${step.segments.join('/')}" exists and is a file`);
        }
      }
    }
    return last!;
  }

  async delete(ref: Ref, opts?: MutationOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node, 'a space root cannot be deleted this way; delete the space');
    return driver.delete(node, opts);
  }

  async move(src: Ref, dst: Ref, opts?: MoveOptions): Promise<ResourceInfo> {
    const a = await this.resolve(src);
    const b = await this.resolve(dst);
    requireName(a.node, 'a space root cannot be moved');
    requireName(b.node);
    if (a.driver !== b.driver || a.node.spaceId !== b.node.spaceId) {
      throw new StorageError('UNIMPLEMENTED', 'moving between spaces is not supported; copy and delete', {
        reason: 'cross-space',
      });
    }
    return a.driver.move(a.node, b.node, opts);
  }

  async copy(src: Ref, dst: Ref, opts?: MoveOptions): Promise<ResourceInfo> {
    const a = await this.resolve(src);
    const b = await this.resolve(dst);
    requireName(b.node);
    if (a.driver !== b.driver) {
      throw new StorageError('UNIMPLEMENTED', 'copying between storages is not supported yet', {
        reason: 'cross-space',
      });
    }
    const feature = a.driver.features.copy;
    if (!feature) throw new StorageError('UNIMPLEMENTED', `storage "${a.driver.storageId}" cannot copy`);
    return feature.copy(a.node, b.node, opts);
  }

  /** Set arbitrary metadata keys (others are kept). */
  async setMetadata(
    ref: Ref,
    values: Readonly<Record<string, string>>,
    opts?: MutationOptions,
  ): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.metadata;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no arbitrary metadata`);
    checkMetadata(values);
    return feature.set(node, values, opts);
  }

  /** Remove arbitrary metadata keys. */
  async unsetMetadata(ref: Ref, keys: readonly string[], opts?: MutationOptions): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.metadata;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no arbitrary metadata`);
    for (const k of keys) checkMetadataKey(k);
    return feature.unset(node, keys, opts);
  }

  /** Close every driver. */
  async close(): Promise<void> {
    await Promise.all(this.drivers.map((d) => d.close()));
  }
}

/** Largest arbitrary-metadata value accepted, in UTF-8 bytes. */
export const MAX_METADATA_VALUE_BYTES = 64 * 1024;

function checkMetadataKey(k: string): void {
  if (typeof k !== 'string' || k.length === 0 || Buffer.byteLength(k) > 255 || k.includes('\0')) {
    throw new StorageError('INVALID_ARGUMENT', `invalid metadata key "${printable(k)}"`);
  }
}

function checkMetadata(values: Readonly<Record<string, string>>): void {
  if (values === null || typeof values !== 'object') {
    throw new StorageError('INVALID_ARGUMENT', 'metadata must be an object of strings');
  }
  for (const [k, v] of Object.entries(values)) {
    checkMetadataKey(k);
    if (typeof v !== 'string' || v.includes('\0')) {
      throw new StorageError('INVALID_ARGUMENT', `metadata "${printable(k)}" must be a string without NUL`);
    }
    if (Buffer.byteLength(v) > MAX_METADATA_VALUE_BYTES) {
      throw new StorageError('INVALID_ARGUMENT', `metadata "${printable(k)}" is over 64 KiB`, {
        reason: 'metadata-too-large',
      });
    }
  }
}

function requireName(node: NodeRef, message = 'the space root cannot be replaced'): void {
  if (node.segments.length === 0 && (node.nodeId === undefined || node.nodeId === node.spaceId)) {
    throw new StorageError('INVALID_ARGUMENT', message, { reason: 'invalid-path' });
  }
  for (const s of node.segments) checkName(s);
}

function checkResourceId(id: ResourceId): ResourceId {
  if (
    !id ||
    typeof id.spaceId !== 'string' ||
    typeof id.opaqueId !== 'string' ||
    !id.spaceId ||
    !id.opaqueId ||
    (id.storageId !== undefined && typeof id.storageId !== 'string')
  ) {
    throw new StorageError('INVALID_ARGUMENT', 'invalid resource id', { reason: 'invalid-path' });
  }
  for (const part of [id.storageId ?? '', id.spaceId, id.opaqueId]) {
    if (part.includes('\0') || part.includes('/') || part.length > 512) {
      throw new StorageError('INVALID_ARGUMENT', 'invalid resource id', { reason: 'invalid-path' });
    }
  }
  return { storageId: id.storageId ?? '', spaceId: id.spaceId, opaqueId: id.opaqueId };
}

/**
 * Parse a reference string: `/alias/path` (absolute) or `storage$space!node/rel/path` (id-based).
 */
export function parseRefString(s: string): Reference {
  if (typeof s !== 'string' || s.length === 0) {
    throw new StorageError('INVALID_ARGUMENT', 'a reference is required', { reason: 'invalid-path' });
  }
  if (s.startsWith('/')) return { path: s };
  const slash = s.indexOf('/');
  const idPart = slash < 0 ? s : s.slice(0, slash);
  const rest = slash < 0 ? '' : s.slice(slash + 1);
  return { resourceId: parseResourceId(idPart), path: rest };
}
