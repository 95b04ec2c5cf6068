/**
 * The CS3 gRPC door: `cs3.storage.provider.v1beta1.ProviderAPI` and `SpacesAPI` over a
 * {@link StorageProvider}, as a Reva storage provider answers them. Every call is authenticated
 * (Reva's `x-access-token` JWT) and runs as that user's session, so grants decide what it may do.
 * Domain errors travel in `status` with gRPC OK, as CS3 does; a request that does not decode is
 * answered `CODE_INVALID_ARGUMENT` the same way.
 *
 * @module
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import type * as grpc from '@grpc/grpc-js';
import { applyPropertyChange } from '../core/changes.js';
import { StorageError } from '../core/errors.js';
import type { Grant } from '../core/permissions.js';
import type { ListSpacesFilter, StorageProvider } from '../core/provider.js';
import { formatResourceId, parseResourceId } from '../core/refs.js';
import type {
  Conditions,
  Field,
  Ref,
  Reference,
  ResourceInfo,
  SpaceType,
  StatOptions,
} from '../core/types.js';
import { favoriteFlag, mtimeHeader } from '../http/common.js';
import {
  errorStatus,
  fromGrant,
  fromGrantee,
  fromTimestamp,
  lockFromRequest,
  OC_FAVORITE,
  ok,
  opaque,
  opaqueJson,
  opaqueString,
  type PathStyle,
  toCs3Info,
  toCs3RecycleItem,
  toCs3Space,
  toCs3Version,
  toGrant,
  toLock,
  unquoteEtag,
} from './convert.js';
import type { DataPlane, UploadGrant } from './dataplane.js';
import * as api from './gen/cs3/storage/provider/v1beta1/provider_api.js';
import * as P from './gen/cs3/storage/provider/v1beta1/resources.js';
import * as spacesApi from './gen/cs3/storage/provider/v1beta1/spaces_api.js';
import { type JwtClaims, requireFullScope, tokenUser, verifyJwt } from './jwt.js';

/** Options for {@link Cs3Service}. */
export interface Cs3ServiceOptions {
  /** The system provider, with the identity source users are matched against. */
  provider: StorageProvider;
  /** Secret of the access tokens (Reva's `jwt_secret`). */
  jwtSecret: string;
  /** Where `InitiateFileUpload`/`Download` point. */
  dataPlane: DataPlane;
  /** Tell gateways the data plane may be reached directly (Reva's `expose_data_server`; default false). */
  exposeDataServer?: boolean;
  /**
   * Most bytes of one unary `ListContainer` answer (default 9,500,000, under the 10,240,000 a Reva
   * gateway accepts). A larger folder is answered in pages: `next_page_token` says where to go on.
   */
  maxListBytes?: number;
  log?: (message: string, err?: unknown) => void;
}

const MALFORMED = Symbol('malformed');
const FIELD_MASK: Readonly<Record<string, Field>> = {
  parent_id: 'parentId',
  checksum: 'checksums',
  mime_type: 'mimeType',
  permission_set: 'permissions',
  lock: 'lock',
  arbitrary_metadata: 'metadata',
  grants: 'grants',
};
const ALL_FIELDS: readonly Field[] = ['parentId', 'checksums', 'mimeType', 'permissions', 'lock'];
const REV = '.REV.';

type Session = StorageProvider;

/** Requests and sessions, ready for grpc-js. */
export class Cs3Service {
  private readonly sessions = new Map<string, { session: Session; until: number }>();
  private readonly maxListBytes: number;

  constructor(private readonly opts: Cs3ServiceOptions) {
    if (!opts.jwtSecret) throw new StorageError('INVALID_ARGUMENT', 'a JWT secret is required');
    if (!opts.provider.identity) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        'the provider needs an identity source to match token users',
      );
    }
    this.maxListBytes = opts.maxListBytes ?? 9_500_000;
  }

  // ---------------------------------------------------------------- auth

  /** The session of the user an access token names (UNAUTHENTICATED when it does not verify). */
  async session(token: string | undefined): Promise<Session> {
    if (!token) throw new StorageError('UNAUTHENTICATED', 'no access token (x-access-token)');
    const hit = this.sessions.get(token);
    if (hit && hit.until > Date.now()) return hit.session;
    const claims: JwtClaims = verifyJwt(token, this.opts.jwtSecret);
    requireFullScope(claims);
    const who = tokenUser(claims);
    const identity = this.opts.provider.identity!;
    const user =
      (await identity.getUser(who.opaqueId)) ??
      (who.username ? await identity.getUser(who.username) : undefined);
    if (!user)
      throw new StorageError('UNAUTHENTICATED', 'the token names a user this provider does not know');
    const session = await this.opts.provider.as(user, { origin: 'cs3' });
    if (this.sessions.size >= 1000) this.sessions.clear();
    // Until the token expires, and at most a minute, so identity changes are seen.
    this.sessions.set(token, {
      session,
      until: Math.min((claims.exp as number) * 1000, Date.now() + 60_000),
    });
    return session;
  }

  // ---------------------------------------------------------------- grpc-js plumbing

  /** Service definition and implementation of ProviderAPI, for `server.addService`. */
  providerService(): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
    return [harden(api.ProviderAPIService, api), this.providerImpl()];
  }

  /** Service definition and implementation of SpacesAPI. */
  spacesService(): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
    return [harden(spacesApi.SpacesAPIService, spacesApi), this.spacesImpl()];
  }

  private unary<Req>(
    fn: (req: Req, s: Session) => Promise<Record<string, unknown>>,
  ): grpc.handleUnaryCall<Req, Record<string, unknown>> {
    return (call, callback) => {
      this.run(call.request, call.metadata, fn).then(
        (res) => callback(null, { ...res, status: ok() }),
        (err) => callback(null, { status: this.failure(err) }),
      );
    };
  }

  private stream<Req>(
    fn: (req: Req, s: Session, send: (msg: Record<string, unknown>) => Promise<void>) => Promise<void>,
  ): grpc.handleServerStreamingCall<Req, Record<string, unknown>> {
    return (call) => {
      let cancelled = false;
      call.on('cancelled', () => {
        cancelled = true;
      });
      const send = async (msg: Record<string, unknown>) => {
        if (cancelled) throw new StorageError('CANCELLED', 'the client went away');
        if (!call.write({ ...msg, status: ok() })) await new Promise((r) => call.once('drain', r));
      };
      this.run(call.request, call.metadata, (req: Req, s) => fn(req, s, send)).then(
        () => call.end(),
        (err) => {
          if (!cancelled) call.write({ status: this.failure(err) });
          call.end();
        },
      );
    };
  }

  private async run<Req, T>(
    request: Req,
    md: grpc.Metadata,
    fn: (req: Req, s: Session) => Promise<T>,
  ): Promise<T> {
    const malformed = (request as { [MALFORMED]?: unknown })?.[MALFORMED];
    if (malformed !== undefined) {
      throw new StorageError('INVALID_ARGUMENT', 'the request is not a valid protobuf message of its type');
    }
    const token = md.get('x-access-token')[0];
    const s = await this.session(typeof token === 'string' ? token : token?.toString());
    return fn(request, s);
  }

  private failure(err: unknown) {
    if (!(err instanceof StorageError) || err.code === 'INTERNAL') this.opts.log?.('CS3 call failed', err);
    return errorStatus(err);
  }

  // ---------------------------------------------------------------- ProviderAPI

  private providerImpl(): grpc.UntypedServiceImplementation {
    const unimplemented = (what: string) =>
      this.unary(async () => {
        throw new StorageError('UNIMPLEMENTED', `${what} is not supported by this provider`);
      });
    return {
      stat: this.unary(async (req: api.StatRequest, s) => {
        const t = target(req.ref);
        const info = await s.stat(t.ref, statOptions(req.fieldMask, req.arbitraryMetadataKeys));
        return { info: toCs3Info(info, t.style) };
      }),
      listContainer: this.unary((req: api.ListContainerRequest, s) => this.listContainer(req, s)),
      listContainerStream: this.stream(async (req: api.ListContainerStreamRequest, s, send) => {
        const t = target(req.ref);
        for await (const info of s.list(t.ref, statOptions(req.fieldMask, req.arbitraryMetadataKeys))) {
          await send({ info: toCs3Info(info, t.style) });
        }
      }),
      createContainer: this.unary(async (req: api.CreateContainerRequest, s) => {
        await s.mkdir(target(req.ref).ref);
        return {};
      }),
      touchFile: this.unary(async (req: api.TouchFileRequest, s) => {
        const mtime = mtimeHeader(opaqueString(req.opaque, 'X-OC-Mtime'));
        const lockId = req.lockId || opaqueString(req.opaque, 'lockid');
        try {
          await s.write(target(req.ref).ref, '', {
            size: 0,
            conditions: { ifNoneMatch: '*' },
            ...(mtime !== undefined && { mtime }),
            ...(lockId && { lockId }),
          });
        } catch (err) {
          if (StorageError.is(err, 'FAILED_PRECONDITION') && err.reason === 'condition') {
            throw new StorageError('ALREADY_EXISTS', 'the file exists');
          }
          throw err;
        }
        return {};
      }),
      delete: this.unary(async (req: api.DeleteRequest, s) => {
        const gone = await s.delete(target(req.ref).ref, lockOpt(req.lockId, req.opaque));
        return { opaque: opaque({ opaque_id: gone.id.opaqueId }) };
      }),
      move: this.unary(async (req: api.MoveRequest, s) => {
        const overwrite = opaqueString(req.opaque, 'stowage.overwrite') === 'true';
        // (the time the file lands with, as Stowage's own client sends it: see InitiateFileUpload)
        const mtime = mtimeHeader(opaqueString(req.opaque, 'X-OC-Mtime'));
        await s.move(target(req.source).ref, target(req.destination).ref, {
          ...lockOpt(req.lockId, req.opaque),
          ...(overwrite && { overwrite }),
          ...(mtime !== undefined && { mtime }),
        });
        return {};
      }),
      getPath: this.unary(async (req: api.GetPathRequest, s) => {
        if (!req.resourceId) throw new StorageError('INVALID_ARGUMENT', 'a resource id is required');
        const info = await s.stat(target({ resourceId: req.resourceId, path: '' }).ref, { fields: [] });
        return { path: info.path };
      }),
      getQuota: this.unary(async (req: api.GetQuotaRequest, s) => {
        const q = await s.getQuota(target(req.ref).ref);
        return {
          totalBytes: q.total ?? 0,
          usedBytes: q.used,
          // (as Reva: what is left of the quota, or the storage's free space without one)
          opaque: opaque({ ...(q.available !== undefined && { remaining: String(q.available) }) }),
        };
      }),
      initiateFileUpload: this.unary((req: api.InitiateFileUploadRequest, s) => this.initiateUpload(req, s)),
      initiateFileDownload: this.unary((req: api.InitiateFileDownloadRequest, s) =>
        this.initiateDownload(req, s),
      ),
      listFileVersions: this.unary(async (req: api.ListFileVersionsRequest, s) => {
        const versions = await s.listVersions(target(req.ref).ref);
        return { versions: versions.map(toCs3Version) };
      }),
      restoreFileVersion: this.unary(async (req: api.RestoreFileVersionRequest, s) => {
        await s.restoreVersion(target(req.ref).ref, req.key, lockOpt(req.lockId, req.opaque));
        return {};
      }),
      listRecycle: this.unary(async (req: api.ListRecycleRequest, s) => {
        const items: P.RecycleItem[] = [];
        await this.recycle(req, s, async (item) => {
          items.push(item);
        });
        return { recycleItems: items };
      }),
      listRecycleStream: this.stream(async (req: api.ListRecycleStreamRequest, s, send) => {
        await this.recycle(req, s, (item) => send({ recycleItem: item }));
      }),
      restoreRecycleItem: this.unary(async (req: api.RestoreRecycleItemRequest, s) => {
        const space = await spaceOf(req.ref, s);
        await s.restoreTrash(space, req.key, {
          ...(req.restoreRef && { target: target(req.restoreRef).ref }),
          ...lockOpt(req.lockId, req.opaque),
        });
        return {};
      }),
      purgeRecycle: this.unary(async (req: api.PurgeRecycleRequest, s) => {
        await s.purgeTrash(await spaceOf(req.ref, s), req.key || undefined);
        return {};
      }),
      addGrant: this.unary(async (req: api.AddGrantRequest, s) => {
        await s.setGrant(target(req.ref).ref, fromGrant(req.grant), lockOpt(req.lockId, req.opaque));
        return {};
      }),
      updateGrant: this.unary(async (req: api.UpdateGrantRequest, s) => {
        await s.setGrant(target(req.ref).ref, fromGrant(req.grant), lockOpt(req.lockId, req.opaque));
        return {};
      }),
      removeGrant: this.unary(async (req: api.RemoveGrantRequest, s) => {
        await s.removeGrant(
          target(req.ref).ref,
          fromGrantee(req.grant?.grantee),
          lockOpt(req.lockId, req.opaque),
        );
        return {};
      }),
      denyGrant: this.unary(async (req: api.DenyGrantRequest, s) => {
        await s.denyGrant(target(req.ref).ref, fromGrantee(req.grantee), lockOpt(req.lockId, req.opaque));
        return {};
      }),
      listGrants: this.unary(async (req: api.ListGrantsRequest, s) => {
        const grants: Grant[] = await s.listGrants(target(req.ref).ref);
        return { grants: grants.map(toGrant) };
      }),
      setArbitraryMetadata: this.unary(async (req: api.SetArbitraryMetadataRequest, s) => {
        // The key `mtime` (Unix seconds) sets the file's modification time, as Reva's drivers do.
        // And OC_FAVORITE ("1"/"0") marks it as one of the user's favorites, or not. All or nothing.
        const { mtime, [OC_FAVORITE]: fav, ...rest } = req.arbitraryMetadata?.metadata ?? {};
        const ms = mtime === undefined ? undefined : mtimeHeader(mtime, 'mtime');
        const favorite = fav === undefined ? undefined : favoriteValue(fav);
        const ref = target(req.ref).ref;
        const lock = lockOpt(req.lockId, req.opaque);
        // (nothing at all: still an answer about the resource and the right to change it)
        if (!Object.keys(rest).length && ms === undefined && favorite === undefined)
          await s.setMetadata(ref, {}, lock);
        const failed = await applyPropertyChange(
          s,
          ref,
          { set: rest, ...(ms !== undefined && { mtime: ms }), ...(favorite !== undefined && { favorite }) },
          lock,
        );
        if (failed) throw failed.error;
        return {};
      }),
      unsetArbitraryMetadata: this.unary(async (req: api.UnsetArbitraryMetadataRequest, s) => {
        const ref = target(req.ref).ref;
        const keys = req.arbitraryMetadataKeys.filter((k) => k !== OC_FAVORITE);
        const lock = lockOpt(req.lockId, req.opaque);
        if (!req.arbitraryMetadataKeys.length) await s.unsetMetadata(ref, [], lock);
        const unmark = keys.length < req.arbitraryMetadataKeys.length;
        const failed = await applyPropertyChange(
          s,
          ref,
          { unset: keys, ...(unmark && { favorite: false }) },
          lock,
        );
        if (failed) throw failed.error;
        return {};
      }),
      setLock: this.unary(async (req: api.SetLockRequest, s) => {
        await s.setLock(target(req.ref).ref, lockFromRequest(req.lock));
        return {};
      }),
      getLock: this.unary(async (req: api.GetLockRequest, s) => {
        const lock = await s.getLock(target(req.ref).ref);
        return lock ? { lock: toLock(lock) } : {};
      }),
      refreshLock: this.unary(async (req: api.RefreshLockRequest, s) => {
        await s.refreshLock(target(req.ref).ref, lockFromRequest(req.lock), req.existingLockId || undefined);
        return {};
      }),
      unlock: this.unary(async (req: api.UnlockRequest, s) => {
        if (!req.lock?.lockId) throw new StorageError('INVALID_ARGUMENT', 'unlock needs the lock id');
        await s.unlock(target(req.ref).ref, req.lock.lockId);
        return {};
      }),
      createHome: this.unary(async (_req: api.CreateHomeRequest, s) => {
        await s.personalSpace();
        return {};
      }),
      getHome: this.unary(async (_req: api.GetHomeRequest, s) => {
        return { path: `/${(await s.personalSpace()).alias}` };
      }),
      createSymlink: unimplemented('CreateSymlink'),
      createReference: unimplemented('CreateReference'),
      // Labels as CERN's Reva marks favorites with them: `favorite`, the user's own mark.
      addLabel: this.unary(async (req: api.AddLabelRequest, s) => {
        checkFavoriteLabel(req, s);
        await s.setFavorite(target(req.ref).ref, true);
        return {};
      }),
      removeLabel: this.unary(async (req: api.RemoveLabelRequest, s) => {
        checkFavoriteLabel(req, s);
        await s.setFavorite(target(req.ref).ref, false);
        return {};
      }),
    };
  }

  /**
   * A whole listing in one message when it fits in `maxListBytes`; else (or with `page_size`) one
   * page, and `next_page_token` (the position to go on from) for the rest.
   */
  private async listContainer(req: api.ListContainerRequest, s: Session): Promise<Record<string, unknown>> {
    const t = target(req.ref);
    const start = req.pageToken ? Number(req.pageToken) : 0;
    if (!Number.isSafeInteger(start) || start < 0)
      throw new StorageError('INVALID_ARGUMENT', 'invalid page token');
    const pageSize = req.pageSize > 0 ? req.pageSize : Number.POSITIVE_INFINITY;
    const infos: P.ResourceInfo[] = [];
    let bytes = 0;
    let position = 0;
    let next = '';
    for await (const info of s.list(t.ref, statOptions(req.fieldMask, req.arbitraryMetadataKeys))) {
      if (position++ < start) continue;
      const cs3 = toCs3Info(info, t.style);
      const size = P.ResourceInfo.encode(P.ResourceInfo.fromPartial(cs3)).finish().length + 6;
      if (infos.length >= pageSize || (infos.length > 0 && bytes + size > this.maxListBytes)) {
        next = String(start + infos.length);
        break;
      }
      infos.push(cs3);
      bytes += size;
    }
    return { infos, nextPageToken: next };
  }

  private async recycle(
    req: api.ListRecycleRequest,
    s: Session,
    each: (item: P.RecycleItem) => Promise<void>,
  ): Promise<void> {
    const space = await spaceOf(req.ref, s);
    const root = (await s.getSpace(space)).root;
    const from = fromTimestamp(req.fromTs);
    const to = fromTimestamp(req.toTs);
    for await (const item of s.listTrash(space, req.key ? { key: req.key } : undefined)) {
      if (from && item.deleted < from) continue;
      if (to && item.deleted > to) continue;
      await each(toCs3RecycleItem(item, root));
    }
  }

  private async initiateUpload(
    req: api.InitiateFileUploadRequest,
    s: Session,
  ): Promise<Record<string, unknown>> {
    const t = target(req.ref);
    const existing = await s.stat(t.ref, { fields: ['permissions'] }).catch((err) => {
      if (StorageError.is(err, 'NOT_FOUND')) return undefined;
      throw err;
    });
    if (existing?.type === 'folder') {
      throw new StorageError('FAILED_PRECONDITION', 'a folder is in the way', { reason: 'is-folder' });
    }
    if (req.ifNotExist && existing) throw new StorageError('ALREADY_EXISTS', 'the file exists');
    if (req.ifMatch && (!existing || unquoteEtag(req.ifMatch) !== existing.etag)) {
      throw new StorageError('ABORTED', 'the etag does not match', { reason: 'condition' });
    }
    const ius = fromTimestamp(req.ifUnmodifiedSince);
    if (ius !== undefined && existing && Math.floor(existing.mtime / 1000) > Math.floor(ius / 1000)) {
      throw new StorageError('ABORTED', 'the file changed since', { reason: 'condition' });
    }
    // Fail early when the user may not write there (the upload is authorised again when bytes come).
    const perms = existing?.permissions ?? (await parentPermissions(s, t.ref));
    if (perms && !perms.initiateFileUpload)
      throw new StorageError('PERMISSION_DENIED', 'not allowed: upload');
    const o = req.opaque;
    const length = opaqueString(o, 'Upload-Length');
    const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
    const checksums =
      opaqueJson<UploadGrant['checksums']>(o, 'stowage.checksums') ??
      parseUploadChecksum(opaqueString(o, 'Upload-Checksum'));
    const mtime = mtimeHeader(opaqueString(o, 'X-OC-Mtime'));
    const lockId = req.lockId || opaqueString(o, 'lockid');
    const conditions = opaqueJson<Conditions>(o, 'stowage.conditions');
    const grant: UploadGrant = {
      u: s.principal!.userId,
      r: refString(t.ref),
      ...(size !== undefined && { size }),
      ...(checksums && { checksums }),
      ...(mtime !== undefined && { mtime }),
      ...(req.ifMatch && { ifMatch: unquoteEtag(req.ifMatch) }),
      ...(req.ifNotExist && { ifNotExist: true }),
      ...(ius !== undefined && { ifUnmodifiedSince: ius }),
      ...(conditions && { c: conditions }),
      ...(lockId && { lockId }),
    };
    if (size === 0) {
      // Nothing to transfer: the file is created now (as OpenCloud does).
      await s.write(t.ref, '', {
        size: 0,
        ...(checksums && { checksums }),
        ...(mtime !== undefined && { mtime }),
        ...(lockId && { lockId }),
        conditions: {
          ...conditions,
          ...(req.ifMatch && { ifMatch: [unquoteEtag(req.ifMatch)] }),
          ...(req.ifNotExist && { ifNoneMatch: '*' as const }),
        },
      });
    }
    const ep = this.opts.dataPlane.uploadEndpoints(grant);
    const expose = this.opts.exposeDataServer ?? false;
    const checksumsOffered = [
      { type: P.ResourceChecksumType.RESOURCE_CHECKSUM_TYPE_SHA1, priority: 100 },
      { type: P.ResourceChecksumType.RESOURCE_CHECKSUM_TYPE_MD5, priority: 200 },
      { type: P.ResourceChecksumType.RESOURCE_CHECKSUM_TYPE_ADLER32, priority: 300 },
    ];
    return {
      ...(existing ? {} : { opaque: opaque({ created: 'true' }) }),
      protocols: [
        { protocol: 'simple', uploadEndpoint: ep.simple, availableChecksums: checksumsOffered, expose },
        {
          protocol: 'tus',
          uploadEndpoint: ep.tus,
          availableChecksums: checksumsOffered,
          expose,
          expiration: { seconds: Math.floor(ep.expires / 1000), nanos: 0 },
        },
      ],
    };
  }

  private async initiateDownload(
    req: api.InitiateFileDownloadRequest,
    s: Session,
  ): Promise<Record<string, unknown>> {
    let version: string | undefined;
    let ref = req.ref;
    const opaqueId = ref?.resourceId?.opaqueId ?? '';
    const rev = opaqueId.indexOf(REV);
    if (ref?.resourceId && rev > 0) {
      // Reva's way to name a version: <node id>.REV.<key>.
      version = opaqueId.slice(rev + REV.length);
      ref = { ...ref, resourceId: { ...ref.resourceId, opaqueId: opaqueId.slice(0, rev) } };
    }
    const t = target(ref);
    const info = await s.stat(t.ref, { fields: ['permissions'] });
    if (info.type === 'folder')
      throw new StorageError('FAILED_PRECONDITION', 'a folder has no content', { reason: 'is-folder' });
    if (info.permissions && !info.permissions.initiateFileDownload) {
      throw new StorageError('PERMISSION_DENIED', 'not allowed: download');
    }
    const ep = this.opts.dataPlane.downloadEndpoints({
      u: s.principal!.userId,
      r: refString(t.ref),
      ...(version && { v: version }),
    });
    const expose = this.opts.exposeDataServer ?? false;
    return {
      protocols: [
        { protocol: 'simple', downloadEndpoint: ep.simple, expose },
        { protocol: 'spaces', downloadEndpoint: ep.spaces, expose },
      ],
    };
  }

  // ---------------------------------------------------------------- SpacesAPI

  private spacesImpl(): grpc.UntypedServiceImplementation {
    return {
      createStorageSpace: this.unary(async (req: spacesApi.CreateStorageSpaceRequest, s) => {
        const o = req.opaque;
        const quota = req.quota?.quotaMaxBytes;
        const owner = req.owner?.id?.opaqueId;
        const space = await s.createSpace({
          type: req.type as SpaceType,
          name: req.name,
          ...(owner && {
            owner: {
              id: owner,
              ...(req.owner?.username && { username: req.owner.username }),
              ...(req.owner?.displayName && { displayName: req.owner.displayName }),
              ...(req.owner?.id?.idp && { idp: req.owner.id.idp }),
            },
          }),
          ...(quota ? { quota } : {}),
          ...(opaqueString(o, 'stowage.quota') !== undefined && {
            quota: Number(opaqueString(o, 'stowage.quota')),
          }),
          ...(opaqueString(o, 'spaceAlias') && { alias: opaqueString(o, 'spaceAlias')! }),
          ...(opaqueString(o, 'spaceid') && { id: opaqueString(o, 'spaceid')! }),
          ...(opaqueString(o, 'description') !== undefined && {
            description: opaqueString(o, 'description')!,
          }),
        });
        return { storageSpace: toCs3Space(space) };
      }),
      listStorageSpaces: this.unary(async (req: spacesApi.ListStorageSpacesRequest, s) => {
        // Which storage ids this provider serves (Stowage's client asks to learn its own).
        const ids = {
          opaque: opaque({ 'stowage.storage_ids': this.opts.provider.drivers.map((d) => d.storageId) }),
        };
        const filter: ListSpacesFilter = {
          includeDisabled: opaqueString(req.opaque, 'stowage.include_disabled') !== 'false',
        };
        if (opaqueString(req.opaque, 'unrestricted') === 'true') filter.unrestricted = true;
        const F = spacesApi.ListStorageSpacesRequest_Filter_Type;
        let memberOf: Set<string> | undefined; // TYPE_USER: the spaces that user can see
        for (const f of req.filters) {
          if (f.type === F.TYPE_ID && f.id?.opaqueId) filter.id = spaceIdOf(f.id.opaqueId);
          else if (f.type === F.TYPE_SPACE_TYPE && f.spaceType) {
            // Registry pseudo types (+grant, +mountpoint) name nothing a provider holds.
            if (f.spaceType !== 'personal' && f.spaceType !== 'project') return { ...ids, storageSpaces: [] };
            filter.type = f.spaceType;
          } else if (f.type === F.TYPE_OWNER && f.owner?.opaqueId) filter.ownerId = f.owner.opaqueId;
          else if (f.type === F.TYPE_PATH && f.path) {
            const alias = f.path.replace(/^\/+|\/+$/g, '');
            try {
              const sp = await s.getSpace(alias);
              filter.id = sp.id;
            } catch (err) {
              if (StorageError.is(err, 'NOT_FOUND')) return { ...ids, storageSpaces: [] };
              throw err;
            }
          } else if (f.type === F.TYPE_USER && f.user?.opaqueId && f.user.opaqueId !== s.principal?.userId) {
            // Another user's spaces, as far as the caller may see them (an admin sees them all).
            let them: Session;
            try {
              them = await this.opts.provider.as(f.user.opaqueId);
            } catch (err) {
              if (StorageError.is(err, 'UNAUTHENTICATED')) return { ...ids, storageSpaces: [] };
              throw err;
            }
            memberOf = new Set();
            for await (const sp of them.listSpaces({ includeDisabled: filter.includeDisabled }))
              memberOf.add(sp.id);
          }
          // TYPE_USER naming the caller: what a session lists anyway.
        }
        const out: P.StorageSpace[] = [];
        for await (const sp of s.listSpaces(filter))
          if (!memberOf || memberOf.has(sp.id)) out.push(toCs3Space(sp));
        return { ...ids, storageSpaces: out };
      }),
      updateStorageSpace: this.unary(async (req: spacesApi.UpdateStorageSpaceRequest, s) => {
        const sp = req.storageSpace;
        if (!sp?.id?.opaqueId && !sp?.root) throw new StorageError('INVALID_ARGUMENT', 'which space?');
        const id = sp.root?.spaceId || spaceIdOf(sp.id!.opaqueId);
        const o = req.opaque;
        const field = req.field;
        const input: Parameters<Session['updateSpace']>[1] = {};
        const name = field?.name ?? sp.name;
        if (name) input.name = name;
        const description = field?.description ?? opaqueString(o, 'description');
        if (description !== undefined) input.description = description === '' ? null : description;
        const quota = field?.quota ?? sp.quota;
        if (quota) input.quota = quota.quotaMaxBytes === 0 ? null : quota.quotaMaxBytes;
        const exact = opaqueString(o, 'stowage.quota');
        if (exact !== undefined) input.quota = exact === '' ? null : Number(exact);
        if (opaqueString(o, 'restore') !== undefined) input.disabled = false;
        const space = await s.updateSpace(id, input);
        return { storageSpace: toCs3Space(space) };
      }),
      deleteStorageSpace: this.unary(async (req: spacesApi.DeleteStorageSpaceRequest, s) => {
        if (!req.id?.opaqueId) throw new StorageError('INVALID_ARGUMENT', 'which space?');
        const id = spaceIdOf(req.id.opaqueId);
        // OpenCloud's two steps: the first call disables, a second one with `purge` deletes.
        if (opaqueString(req.opaque, 'purge') !== undefined) {
          await s.deleteSpace(id);
          return {};
        }
        const space = await s.updateSpace(id, { disabled: true });
        return { opaque: opaque({ spacename: space.name }) };
      }),
    };
  }
}

// ------------------------------------------------------------------ helpers

/**
 * Service definitions that never throw on bad input: a request that does not decode becomes a
 * marker the handler answers with INVALID_ARGUMENT, and answers are completed with defaults.
 */
function harden(service: Record<string, unknown>, messages: Record<string, unknown>): grpc.ServiceDefinition {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(
    service as Record<string, grpc.MethodDefinition<unknown, unknown>>,
  )) {
    const type = `${name[0]!.toUpperCase()}${name.slice(1)}Response`;
    const res = messages[type] as {
      fromPartial(o: unknown): unknown;
      encode(o: unknown, w: BinaryWriter): BinaryWriter;
    };
    out[name] = {
      ...def,
      requestDeserialize: (b: Buffer) => {
        try {
          return def.requestDeserialize(b);
        } catch (err) {
          return { [MALFORMED]: err };
        }
      },
      // Answers built by this module are complete messages; anything partial gets its defaults.
      // One writer serves every answer (serialising is synchronous): its buffer stays grown.
      responseSerialize: (v: unknown) => {
        try {
          return wrap(res.encode(v, shared.writer).finish());
        } catch {
          shared.writer = new BinaryWriter();
          return wrap(res.encode(res.fromPartial(v), shared.writer).finish());
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

const shared = { writer: new BinaryWriter() };

/** A Buffer over the bytes (no copy: `finish()` hands out a fresh array). */
function wrap(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** A CS3 reference as a Stowage one, and how answers should write paths. */
export function target(r: P.Reference | undefined): { ref: Ref; style: PathStyle } {
  if (!r) throw new StorageError('INVALID_ARGUMENT', 'a reference is required');
  const id = r.resourceId;
  if (id && (id.spaceId || id.opaqueId)) {
    const spaceId = id.spaceId || id.opaqueId;
    const resourceId = { storageId: id.storageId, spaceId, opaqueId: id.opaqueId || spaceId };
    let path = r.path ?? '';
    if (path === '.' || path === './') path = '';
    else if (path.startsWith('./')) path = path.slice(2);
    const ref: Reference = { resourceId, path };
    return { ref, style: { relative: true } };
  }
  const path = r.path ?? '';
  if (!path.startsWith('/'))
    throw new StorageError('INVALID_ARGUMENT', 'a reference needs a resource id or an absolute path');
  const segs = path.split('/').filter(Boolean);
  if (segs.length < 2) throw new StorageError('NOT_FOUND', 'no space at that path');
  return { ref: path, style: { relative: false, alias: `${segs[0]}/${segs[1]}` } };
}

/** A Stowage reference in its string form (for transfer tokens). */
function refString(ref: Ref): string {
  if (typeof ref === 'string') return ref;
  const id = ref.resourceId as { storageId: string; spaceId: string; opaqueId: string };
  return ref.path ? `${formatResourceId(id)}/${ref.path}` : formatResourceId(id);
}

/** The space id of a space reference (a resource id, or an absolute alias path). */
async function spaceOf(r: P.Reference | undefined, s: Session): Promise<string> {
  const t = target(r);
  if (typeof t.ref === 'string')
    return (await s.getSpace(t.ref.split('/').filter(Boolean).slice(0, 2).join('/'))).id;
  return (t.ref.resourceId as { spaceId: string }).spaceId;
}

/** A space id from a StorageSpaceId string (`storage$space!node`, or bare). */
function spaceIdOf(s: string): string {
  try {
    return parseResourceId(s).spaceId;
  } catch {
    throw new StorageError('INVALID_ARGUMENT', 'invalid space id');
  }
}

function statOptions(mask: readonly string[] | undefined, asked: readonly string[]): StatOptions {
  const paths = mask ?? [];
  let fields: Field[];
  if (paths.length === 0 || paths.includes('*')) fields = [...ALL_FIELDS];
  else fields = paths.map((p) => FIELD_MASK[p]).filter((f): f is Field => f !== undefined);
  if (paths.includes('*') && !fields.includes('metadata')) fields.push('metadata');
  // The user's favorite mark, when asked for by its key (not with '*': it is not metadata).
  const keys = asked.includes(OC_FAVORITE) ? asked.filter((k) => k !== OC_FAVORITE) : asked;
  if (keys !== asked) fields.push('favorite');
  const opts: StatOptions = { fields };
  if (keys.length) opts.metadataKeys = keys.includes('*') ? '*' : keys;
  else if (paths.includes('*') || paths.includes('arbitrary_metadata')) opts.metadataKeys = '*';
  return opts;
}

/**
 * The one label kept here is `favorite`, for the session's own user: a request naming another
 * user is refused, as is any other label.
 */
function checkFavoriteLabel(req: api.AddLabelRequest | api.RemoveLabelRequest, s: Session): void {
  if (req.label !== 'favorite')
    throw new StorageError(
      'UNIMPLEMENTED',
      `only the label "favorite" is kept here, not ${JSON.stringify(req.label.slice(0, 100))}`,
    );
  const user = s.principal?.userId;
  if (!user) throw new StorageError('UNAUTHENTICATED', 'labels are per user: no user in the token');
  if (req.userId?.opaqueId && req.userId.opaqueId !== user)
    throw new StorageError('PERMISSION_DENIED', "a user's labels are set by that user alone");
}

/** A favorite mark as CS3 metadata sets it ({@link favoriteFlag}). */
function favoriteValue(v: string): boolean {
  const on = favoriteFlag(v);
  if (on === undefined) throw new StorageError('INVALID_ARGUMENT', `${OC_FAVORITE} takes 1 or 0`);
  return on;
}

function lockOpt(lockId: string, o: P.ResourceInfo['opaque']): { lockId?: string } {
  const id = lockId || opaqueString(o, 'lockid');
  return id ? { lockId: id } : {};
}

/** `Upload-Checksum` as ocdav sends it: `<algo> <hex>`. */
function parseUploadChecksum(v: string | undefined): UploadGrant['checksums'] {
  const m = v && /^(sha1|md5|adler32)\s+([0-9a-fA-F]+)$/i.exec(v.trim());
  return m ? ({ [m[1]!.toLowerCase()]: m[2]!.toLowerCase() } as UploadGrant['checksums']) : undefined;
}

/** What the user may do in the folder a new file would go into (undefined when unknown). */
async function parentPermissions(s: Session, ref: Ref): Promise<ResourceInfo['permissions']> {
  let parent: Ref;
  if (typeof ref === 'string') {
    parent = ref.replace(/\/[^/]+\/?$/, '');
  } else {
    const path = (ref.path ?? '').replace(/\/+$/, '');
    if (!path) return undefined;
    parent = {
      resourceId: ref.resourceId!,
      path: path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '',
    };
  }
  try {
    return (await s.stat(parent, { fields: ['permissions'] })).permissions;
  } catch (err) {
    if (StorageError.is(err, 'NOT_FOUND')) {
      throw new StorageError('FAILED_PRECONDITION', 'parent folder does not exist', {
        reason: 'parent-missing',
      });
    }
    throw err;
  }
}
