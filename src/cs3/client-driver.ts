/**
 * A {@link Driver} over the CS3 wire: every call goes through a CS3 gRPC provider and its HTTP data
 * plane (a Stowage `serve`, or any Reva provider for what CS3 defines). The whole conformance suite
 * runs through it, which is how the gRPC door is tested.
 *
 * What CS3 has no field for travels in `opaque` (`stowage.*` keys): a Reva provider ignores it, so
 * against Reva exact mtimes, all three checksums, non-trivial conditions and atomic overwrite-moves
 * degrade to what CS3 says. CS3 has no copy, so this driver has none.
 *
 * @module
 */
import http from 'node:http';
import https from 'node:https';
import { bodyChunks } from '../core/body.js';
import type { Body, Driver, Features, Inspected, MutationOptions } from '../core/driver.js';
import { folderTimeRefused, StorageError } from '../core/errors.js';
import type { Grant, Grantee } from '../core/permissions.js';
import type {
  CreateSpaceInput,
  Field,
  FileVersion,
  ListOptions,
  Lock,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  RecycleItem,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from '../core/types.js';
import { DEFAULT_FIELDS } from '../core/types.js';
import {
  conditionHeaders,
  exactly,
  httpFailure,
  httpRequest,
  ifRangeValue,
  infoFrom,
  readResultOf,
} from '../http/client.js';
import { Cs3Client, type Cs3ClientOptions } from './client.js';
import {
  fromCs3Info,
  fromCs3Space,
  fromCs3Version,
  fromGrant,
  fromLock,
  opaque,
  opaqueJson,
  opaqueString,
  toGrant,
  toGrantee,
  toLock,
} from './convert.js';
import * as P from './gen/cs3/storage/provider/v1beta1/resources.js';
import { ListStorageSpacesRequest_Filter_Type as FilterType } from './gen/cs3/storage/provider/v1beta1/spaces_api.js';

/** Options for {@link createCs3ClientDriver}. */
export interface Cs3ClientDriverOptions extends Cs3ClientOptions {
  /** gRPC address of the provider, `host:port`. */
  address: string;
  /** The provider's storage id; asked from the server when absent. */
  storageId?: string;
}

/** CS3 field mask paths per field; favorites are not the storage's business in CS3 (none). */
const FIELD_PATHS: Readonly<Record<Field, string | undefined>> = {
  parentId: 'parent_id',
  checksums: 'checksum',
  mimeType: 'mime_type',
  permissions: 'permission_set',
  lock: 'lock',
  metadata: 'arbitrary_metadata',
  grants: 'grants',
  favorite: undefined,
};

/** Connect to a CS3 provider. */
export async function createCs3ClientDriver(opts: Cs3ClientDriverOptions): Promise<Driver> {
  const client = new Cs3Client(opts.address, opts);
  let storageId = opts.storageId;
  if (!storageId) {
    const res = await client.spacesOk('listStorageSpaces', {
      filters: [{ type: FilterType.TYPE_SPACE_TYPE, spaceType: '+none' }],
    });
    storageId = opaqueJson<string[]>(res.opaque, 'stowage.storage_ids')?.[0];
    if (!storageId) {
      client.close();
      throw new StorageError('UNAVAILABLE', `${opts.address} did not say its storage id; pass storageId`);
    }
  }
  return new Cs3ClientDriver(client, storageId);
}

class Cs3ClientDriver implements Driver {
  readonly kind = 'cs3';
  readonly features: Features;
  private readonly agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  };

  constructor(
    private readonly c: Cs3Client,
    readonly storageId: string,
  ) {
    this.features = Object.freeze({
      metadata: Object.freeze({
        set: async (r: NodeRef, values: Readonly<Record<string, string>>, o?: MutationOptions) => {
          await this.c.providerOk('setArbitraryMetadata', {
            ref: this.ref(r),
            arbitraryMetadata: { metadata: { ...values } },
            lockId: o?.lockId ?? '',
          });
        },
        unset: async (r: NodeRef, keys: readonly string[], o?: MutationOptions) => {
          await this.c.providerOk('unsetArbitraryMetadata', {
            ref: this.ref(r),
            arbitraryMetadataKeys: [...keys],
            lockId: o?.lockId ?? '',
          });
        },
      }),
      mtime: Object.freeze({
        // Reva's drivers take the key `mtime` (Unix seconds) as the file's modification time.
        set: async (r: NodeRef, mtime: number, o?: MutationOptions) => {
          await this.c.providerOk('setArbitraryMetadata', {
            ref: this.ref(r),
            arbitraryMetadata: { metadata: { mtime: String(mtime / 1000) } },
            lockId: o?.lockId ?? '',
          });
          return this.stat(r);
        },
      }),
      spaces: Object.freeze({
        create: (i: CreateSpaceInput) => this.createSpace(i),
        update: (id: string, i: UpdateSpaceInput) => this.updateSpace(id, i),
        delete: async (id: string) => {
          await this.c.spacesOk('deleteStorageSpace', {
            id: { opaqueId: id },
            opaque: opaque({ purge: 'true' }),
          });
        },
      }),
      grants: Object.freeze({
        list: async (r: NodeRef) =>
          (await this.c.providerOk('listGrants', { ref: this.ref(r) })).grants.map(fromGrant),
        set: async (r: NodeRef, g: Grant, o?: MutationOptions) => {
          await this.c.providerOk('addGrant', {
            ref: this.ref(r),
            grant: toGrant(g),
            lockId: o?.lockId ?? '',
          });
        },
        remove: async (r: NodeRef, g: Grantee, o?: MutationOptions) => {
          await this.c.providerOk('removeGrant', {
            ref: this.ref(r),
            grant: { grantee: toGrantee(g) },
            lockId: o?.lockId ?? '',
          });
          return true;
        },
        inspect: (r: NodeRef, o?: StatOptions) => this.inspect(r, o),
      }),
      locks: Object.freeze({
        get: async (r: NodeRef) => fromLock((await this.c.providerOk('getLock', { ref: this.ref(r) })).lock),
        set: async (r: NodeRef, l: Lock) => {
          await this.c.providerOk('setLock', { ref: this.ref(r), lock: toLock(l) });
          return (await this.features.locks!.get(r)) ?? l;
        },
        refresh: async (r: NodeRef, l: Lock, existing?: string) => {
          await this.c.providerOk('refreshLock', {
            ref: this.ref(r),
            lock: toLock(l),
            existingLockId: existing ?? '',
          });
          return (await this.features.locks!.get(r)) ?? l;
        },
        unlock: async (r: NodeRef, lockId: string) => {
          await this.c.providerOk('unlock', { ref: this.ref(r), lock: { lockId } });
        },
      }),
      trash: Object.freeze({
        list: (spaceId: string, o?: { key?: string }) => this.listTrash(spaceId, o?.key),
        get: (spaceId: string, key: string) => this.trashItem(spaceId, key),
        restore: (spaceId: string, key: string, o?: { target?: NodeRef } & MutationOptions) =>
          this.restoreTrash(spaceId, key, o),
        purge: async (spaceId: string, key?: string) => {
          await this.c.providerOk('purgeRecycle', { ref: this.rootRef(spaceId), key: key ?? '' });
        },
      }),
      versions: Object.freeze({
        list: async (r: NodeRef): Promise<FileVersion[]> =>
          (await this.c.providerOk('listFileVersions', { ref: this.ref(r) })).versions.map(fromCs3Version),
        read: (r: NodeRef, key: string, o?: ReadOptions) => this.readVersion(r, key, o),
        restore: async (r: NodeRef, key: string, o?: MutationOptions) => {
          await this.c.providerOk('restoreFileVersion', { ref: this.ref(r), key, lockId: o?.lockId ?? '' });
          return this.stat(r);
        },
      }),
      quota: Object.freeze({ enforced: true as const }),
    });
  }

  // ---------------------------------------------------------------- references

  private ref(r: NodeRef): P.Reference {
    return {
      resourceId: { storageId: this.storageId, spaceId: r.spaceId, opaqueId: r.nodeId ?? r.spaceId },
      path: r.segments.length ? `./${r.segments.join('/')}` : '.',
    };
  }

  private rootRef(spaceId: string): P.Reference {
    return this.ref({ spaceId, segments: [] });
  }

  private mask(opts?: StatOptions): { fieldMask: string[]; arbitraryMetadataKeys: string[] } {
    const fields = opts?.fields ?? DEFAULT_FIELDS;
    const keys = opts?.metadataKeys;
    const paths = fields.flatMap((f) => FIELD_PATHS[f] ?? []);
    if (keys && !paths.includes('arbitrary_metadata')) paths.push('arbitrary_metadata');
    return {
      // An empty mask means "everything": ask for the identity fields at least.
      fieldMask: paths.length ? paths : ['id'],
      arbitraryMetadataKeys: keys === '*' ? ['*'] : keys ? [...keys] : [],
    };
  }

  // ---------------------------------------------------------------- spaces

  async *listSpaces(filter?: SpaceFilter): AsyncGenerator<Space> {
    const filters: {
      type: FilterType;
      id?: { opaqueId: string };
      spaceType?: string;
      owner?: { opaqueId: string };
    }[] = [];
    if (filter?.type) filters.push({ type: FilterType.TYPE_SPACE_TYPE, spaceType: filter.type });
    if (filter?.id) filters.push({ type: FilterType.TYPE_ID, id: { opaqueId: filter.id } });
    if (filter?.ownerId) filters.push({ type: FilterType.TYPE_OWNER, owner: { opaqueId: filter.ownerId } });
    const res = await this.c.spacesOk('listStorageSpaces', {
      filters,
      opaque: opaque({ 'stowage.include_disabled': filter?.includeDisabled ? 'true' : 'false' }),
    });
    for (const s of res.storageSpaces) yield fromCs3Space(s);
  }

  async getSpace(idOrAlias: string): Promise<Space> {
    const byPath = idOrAlias.includes('/');
    const res = await this.c.spacesOk('listStorageSpaces', {
      filters: [
        byPath
          ? { type: FilterType.TYPE_PATH, path: `/${idOrAlias}` }
          : { type: FilterType.TYPE_ID, id: { opaqueId: idOrAlias } },
      ],
      opaque: opaque({ 'stowage.include_disabled': 'true' }),
    });
    const s = res.storageSpaces[0];
    if (!s) throw new StorageError('NOT_FOUND', 'no such space');
    return fromCs3Space(s);
  }

  private async createSpace(i: CreateSpaceInput): Promise<Space> {
    if (i.quota !== undefined && !(Number.isSafeInteger(i.quota) && i.quota >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'a quota is a non-negative number of bytes');
    }
    const res = await this.c.spacesOk('createStorageSpace', {
      type: i.type,
      name: i.name,
      ...(i.owner && {
        owner: {
          id: { opaqueId: i.owner.id, idp: i.owner.idp ?? '' },
          username: i.owner.username ?? '',
          displayName: i.owner.displayName ?? '',
        },
      }),
      opaque: opaque({
        spaceAlias: i.alias,
        spaceid: i.id,
        description: i.description,
        ...(i.quota !== undefined && { 'stowage.quota': String(i.quota) }),
      }),
    });
    return fromCs3Space(res.storageSpace);
  }

  private async updateSpace(id: string, i: UpdateSpaceInput): Promise<Space> {
    if (i.quota !== undefined && i.quota !== null && !(Number.isSafeInteger(i.quota) && i.quota >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'a quota is a non-negative number of bytes');
    }
    if (i.disabled === true) {
      await this.c.spacesOk('deleteStorageSpace', { id: { opaqueId: id } });
    }
    const changes =
      i.name !== undefined || i.description !== undefined || i.quota !== undefined || i.disabled === false;
    if (changes) {
      const res = await this.c.spacesOk('updateStorageSpace', {
        storageSpace: { id: { opaqueId: id }, name: i.name ?? '' },
        opaque: opaque({
          ...(i.description !== undefined && { description: i.description ?? '' }),
          ...(i.quota !== undefined && { 'stowage.quota': i.quota === null ? '' : String(i.quota) }),
          ...(i.disabled === false && { restore: 'true' }),
        }),
      });
      return fromCs3Space(res.storageSpace);
    }
    return this.getSpace(id);
  }

  // ---------------------------------------------------------------- core

  async stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo> {
    const res = await this.c.providerOk('stat', { ref: this.ref(ref), ...this.mask(opts) }, opts);
    return fromCs3Info(res.info);
  }

  async *list(ref: NodeRef, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    for await (const msg of this.c.providerStream(
      'listContainerStream',
      { ref: this.ref(ref), ...this.mask(opts) },
      opts,
    )) {
      if (msg.info) yield fromCs3Info(msg.info);
    }
  }

  async read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    const res = await this.c.providerOk('initiateFileDownload', { ref: this.ref(ref) }, opts);
    return this.download(res.protocols, opts, () => this.stat(ref));
  }

  private async readVersion(ref: NodeRef, key: string, opts?: ReadOptions): Promise<ReadResult> {
    const id = ref.nodeId ?? (await this.stat(ref, { fields: [] })).id.opaqueId;
    const res = await this.c.providerOk(
      'initiateFileDownload',
      {
        ref: {
          resourceId: { storageId: this.storageId, spaceId: ref.spaceId, opaqueId: `${id}.REV.${key}` },
        },
      },
      opts,
    );
    return this.download(res.protocols, opts, () => this.stat(ref));
  }

  private async download(
    protocols: P.FileDownloadProtocol[],
    opts: ReadOptions | undefined,
    fallback: () => Promise<ResourceInfo>,
  ): Promise<ReadResult> {
    const endpoint = protocols.find((p) => p.protocol === 'simple') ?? protocols[0];
    if (!endpoint) throw new StorageError('UNAVAILABLE', 'the provider offered no download endpoint');
    const headers: Record<string, string> = {};
    const r = opts?.range;
    if (r)
      headers.range = r.suffix !== undefined ? `bytes=-${r.suffix}` : `bytes=${r.start ?? 0}-${r.end ?? ''}`;
    Object.assign(headers, conditionHeaders(opts?.conditions));
    if (opts?.ifRange) headers['if-range'] = ifRangeValue(opts.ifRange);
    const res = await this.request('GET', endpoint.downloadEndpoint, headers, undefined, opts?.signal);
    const status = res.statusCode ?? 0;
    if (![200, 206, 304, 412, 416].includes(status)) throw await httpFailure(res);
    const info = infoFrom(res) ?? (await fallback());
    return readResultOf(res, info);
  }

  async write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    opts?.signal?.throwIfAborted();
    const res = await this.c.providerOk('initiateFileUpload', {
      ref: this.ref(ref),
      lockId: opts?.lockId ?? '',
      opaque: opaque({
        ...(opts?.size !== undefined && { 'Upload-Length': String(opts.size) }),
        ...(opts?.checksums && { 'stowage.checksums': opts.checksums }),
        ...(opts?.mtime !== undefined && { 'X-OC-Mtime': String(opts.mtime / 1000) }),
        ...(opts?.conditions && { 'stowage.conditions': opts.conditions }),
      }),
    });
    if (opts?.size === 0) {
      // The provider created the (empty) file at initiate time; only a body that is not empty fails.
      for await (const chunk of bodyChunks(body)) {
        if (chunk.length) {
          throw new StorageError('INVALID_ARGUMENT', 'body longer than the declared 0 bytes', {
            reason: 'size-mismatch',
          });
        }
      }
      return this.stat(ref);
    }
    const endpoint = res.protocols.find((p) => p.protocol === 'simple');
    if (!endpoint) throw new StorageError('UNAVAILABLE', 'the provider offered no simple upload endpoint');
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (opts?.size !== undefined) headers['content-length'] = String(opts.size);
    if (opts?.lockId) headers['x-lock-id'] = opts.lockId;
    const source = opts?.size === undefined ? bodyChunks(body) : exactly(bodyChunks(body), opts.size);
    const up = await this.request('PUT', endpoint.uploadEndpoint, headers, source, opts?.signal);
    if (up.statusCode !== 200 && up.statusCode !== 201 && up.statusCode !== 204) throw await httpFailure(up);
    up.resume();
    return infoFrom(up) ?? this.stat(ref);
  }

  async mkdir(ref: NodeRef): Promise<ResourceInfo> {
    await this.c.providerOk('createContainer', { ref: this.ref(ref) });
    return this.stat(ref);
  }

  async delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    const info = await this.stat(ref);
    await this.c.providerOk('delete', { ref: this.ref(ref), lockId: opts?.lockId ?? '' });
    return info;
  }

  /**
   * A Move. A time to land with goes along in the opaque map (`X-OC-Mtime`, Unix seconds), which a
   * Stowage provider sets in the same step; where the file lands without it (Reva's providers do
   * not read it), it is set afterwards as `mtime` metadata.
   */
  async move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    const mtime = opts?.mtime;
    if (mtime !== undefined && (await this.stat(src, { fields: [] })).type === 'folder')
      throw folderTimeRefused();
    await this.c.providerOk('move', {
      source: this.ref(src),
      destination: this.ref(dst),
      lockId: opts?.lockId ?? '',
      opaque: opaque({
        ...(opts?.overwrite && { 'stowage.overwrite': 'true' }),
        ...(mtime !== undefined && { 'X-OC-Mtime': String(mtime / 1000) }),
      }),
    });
    const info = await this.stat(dst);
    if (mtime === undefined || Math.abs(info.mtime - mtime) < 1) return info;
    const timed = this.features.mtime!.set(dst, mtime, { ...(opts?.lockId && { lockId: opts.lockId }) });
    return opts?.mtimeBestEffort ? timed.catch(() => info) : timed;
  }

  /** The node and the grants of every folder above it (ListGrants on each, from the root down). */
  private async inspect(ref: NodeRef, opts?: StatOptions): Promise<Inspected> {
    const fields = [...(opts?.fields ?? DEFAULT_FIELDS), 'grants' as Field];
    const info = await this.stat(ref, { ...opts, fields });
    const segs = info.path.split('/').filter(Boolean);
    const inherited: Grant[][] = [];
    for (let i = 0; i < segs.length; i++) {
      inherited.push(await this.features.grants!.list({ spaceId: ref.spaceId, segments: segs.slice(0, i) }));
    }
    if (!info.grants) info.grants = await this.features.grants!.list(ref);
    return { info, inherited };
  }

  // ---------------------------------------------------------------- trash

  private async *listTrash(spaceId: string, key?: string): AsyncGenerator<RecycleItem> {
    for await (const msg of this.c.providerStream('listRecycleStream', {
      ref: this.rootRef(spaceId),
      key: key ?? '',
    })) {
      if (msg.recycleItem) yield this.recycleItem(msg.recycleItem);
    }
  }

  private recycleItem(i: P.RecycleItem): RecycleItem {
    const idString = opaqueString(i.opaque, 'stowage.id');
    const [storageId = this.storageId, rest = ''] = (idString ?? '').split('$');
    const [spaceId = '', opaqueId = ''] = rest.split('!');
    const path = i.ref?.path ?? '';
    const out: RecycleItem = {
      key: i.key,
      id: idString
        ? { storageId, spaceId, opaqueId }
        : { storageId: this.storageId, spaceId: '', opaqueId: i.key },
      type: i.type === P.ResourceType.RESOURCE_TYPE_CONTAINER ? 'folder' : 'file',
      path: path.startsWith('./') ? path.slice(1) : path.startsWith('/') ? path : `/${path}`,
      size: i.size,
      deleted: Number(
        opaqueString(i.opaque, 'stowage.deleted') ?? (i.deletionTime ? i.deletionTime.seconds * 1000 : 0),
      ),
    };
    const parent = opaqueString(i.opaque, 'stowage.parent');
    if (parent) {
      const [ps = this.storageId, pr = ''] = parent.split('$');
      const [psp = '', po = ''] = pr.split('!');
      out.parentId = { storageId: ps, spaceId: psp, opaqueId: po };
    }
    const by = opaqueString(i.opaque, 'stowage.deleted_by');
    if (by) out.deletedBy = by;
    const grants = opaqueJson<Grant[]>(i.opaque, 'stowage.grants');
    if (grants) out.grants = grants;
    return out;
  }

  private async trashItem(spaceId: string, key: string): Promise<RecycleItem> {
    const k = key.replace(/\/+$/, '');
    const cut = k.lastIndexOf('/');
    for await (const item of this.listTrash(spaceId, cut < 0 ? undefined : k.slice(0, cut))) {
      if (item.key === k) return item;
    }
    throw new StorageError('NOT_FOUND', 'not in the trash');
  }

  private async restoreTrash(
    spaceId: string,
    key: string,
    o?: { target?: NodeRef } & MutationOptions,
  ): Promise<ResourceInfo> {
    const item = await this.trashItem(spaceId, key);
    await this.c.providerOk('restoreRecycleItem', {
      ref: this.rootRef(spaceId),
      key,
      ...(o?.target && { restoreRef: this.ref(o.target) }),
      lockId: o?.lockId ?? '',
    });
    return this.stat({ spaceId, nodeId: item.id.opaqueId, segments: [] });
  }

  // ---------------------------------------------------------------- http

  private request(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: Body | undefined,
    signal: AbortSignal | undefined,
  ): Promise<http.IncomingMessage> {
    return httpRequest(this.agents, method, url, headers, body, signal);
  }

  async close(): Promise<void> {
    this.c.close();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
