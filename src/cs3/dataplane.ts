/**
 * The HTTP data plane that CS3's `InitiateFileUpload`/`InitiateFileDownload` point at, on the
 * model of Reva's dataprovider:
 *
 * - `/data/simple/<token>`: PUT uploads, GET/HEAD downloads (ranges, conditions).
 * - `/data/spaces/<token>`: the same (Reva's `spaces` protocol name).
 * - `/data/tus/<token>`: TUS 1.0 (core, creation, creation-with-upload, creation-defer-length,
 *   termination, checksum, expiration), resumable across restarts ({@link TusUploads}).
 *
 * Every request is authorised by a short-lived transfer token (HS256, signed by the server at
 * initiate time), taken from the last path segment or from `X-Reva-Transfer` (a Reva datagateway's
 * token whose `target` is one of our endpoints is accepted too). The token names the user, and the
 * request runs as that user's session, so grants are checked again when bytes move.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseChecksumHeader } from '../core/checksums.js';
import { codeToHttp, type ErrorCode, StorageError, toStorageError } from '../core/errors.js';
import type { Origin } from '../core/events.js';
import { liveLock } from '../core/locks.js';
import type { StorageProvider } from '../core/provider.js';
import type { Checksums, Conditions, WriteOptions } from '../core/types.js';
import {
  abortOnClose,
  etagNow,
  header,
  infoHeaders,
  intHeader,
  landedBefore,
  mtimeHeader,
  readOptions,
  refuseBody,
  sendRead,
  uploadLength,
  wantsInfo,
} from '../http/common.js';
import { type JwtClaims, signJwt, verifyJwt } from './jwt.js';
import { TUS_CHECKSUMS, TusUploads, type UploadState } from './tus.js';

/** What an upload token carries: who, where, and the options given at initiate time. */
export interface UploadGrant {
  /** The user's id. */
  u: string;
  /** The target, as a Stowage reference string (`storage$space!node/rel` or `/alias/path`). */
  r: string;
  size?: number;
  checksums?: Checksums;
  /** Client mtime, ms since epoch. */
  mtime?: number;
  ifMatch?: string;
  ifNotExist?: boolean;
  ifUnmodifiedSince?: number;
  /** Any other conditions (Stowage's own clients send them whole). */
  c?: Conditions;
  lockId?: string;
  /** The door that started the upload, for its events (default: CS3). */
  o?: Origin;
}

/** What a download token carries. */
export interface DownloadGrant {
  u: string;
  r: string;
  /** A version key: serve that version. */
  v?: string;
}

/** Options for {@link DataPlane}. */
export interface DataPlaneOptions {
  /** The system provider (requests run as the token's user through `provider.as`). */
  provider: StorageProvider;
  /** Secret of the transfer tokens (Reva's `transfer_shared_secret`). */
  secret: string;
  /** Public base URL of the data plane, ending in `/data`. */
  dataUrl: string;
  /** Where resumable uploads live between requests. */
  uploads: TusUploads;
  /** Life of a simple upload/download token, seconds (default 600). */
  transferTtlSeconds?: number;
  /** Life of a resumable upload (and of its token), seconds (default 86400). */
  uploadTtlSeconds?: number;
  /**
   * Resumable uploads a user may have in progress at once (default 100). One more drops the
   * user's least recently active upload idle for a minute, or when all are active is refused with
   * 507. Each is bounded by its space's free quota too, so staged bytes stay bounded.
   */
  maxUploadsPerUser?: number;
  log?: (message: string, err?: unknown) => void;
}

const TUS_VERSION = '1.0.0';
const TUS_EXTENSIONS = 'creation,creation-with-upload,creation-defer-length,termination,checksum,expiration';

/** The data plane: signs endpoints for the gRPC door and serves them over HTTP. */
export class DataPlane {
  private readonly transferTtl: number;
  private readonly uploadTtl: number;
  private readonly maxUploads: number;

  constructor(private readonly opts: DataPlaneOptions) {
    this.transferTtl = opts.transferTtlSeconds ?? 600;
    this.uploadTtl = opts.uploadTtlSeconds ?? 86_400;
    this.maxUploads = opts.maxUploadsPerUser ?? 100;
  }

  /**
   * A transfer token. Each one is new (`jti`): a TUS upload is keyed by its token, and two uploads
   * initiated alike within a second (same user, target and options) were one upload, the second
   * refused as finished. One token still finds one upload (a retried POST, a HEAD first, two
   * creations at once).
   */
  private sign(
    kind: 'up' | 'down',
    grant: UploadGrant | DownloadGrant,
    ttl: number,
    protocol?: UploadProtocol,
  ): string {
    const now = Math.floor(Date.now() / 1000);
    const jti = randomBytes(16).toString('base64url');
    return signJwt(
      {
        iat: now,
        exp: now + ttl,
        jti,
        aud: ['reva'],
        stowage: { k: kind, ...grant, ...(protocol && { p: protocol }) },
      },
      this.opts.secret,
    );
  }

  /**
   * Simple upload tokens used (by `jti`, until they expire, ms) or in use: each is good for one
   * upload, as a Reva data server's upload session is, so a URL seen in a log or a browser's
   * history cannot overwrite the file again. One whose upload failed may be used again.
   */
  private readonly spent = new Map<string, number>();
  private pruned = 0;

  /** Take a simple upload token for its one upload (NOT_FOUND when it was used already). */
  private spend(g: Granted): () => void {
    const now = Date.now();
    if (this.spent.size > 1000 && now - this.pruned > 1000) {
      this.pruned = now;
      for (const [k, exp] of this.spent) if (exp < now) this.spent.delete(k);
    }
    if (!g.jti) return () => {};
    if (this.spent.has(g.jti)) throw new StorageError('NOT_FOUND', 'this upload URL was used already');
    this.spent.set(g.jti, g.exp ?? now + this.transferTtl * 1000);
    return () => this.spent.delete(g.jti!);
  }

  /** Endpoints for an upload: `simple` (one PUT) and `tus` (resumable), and when they expire (ms). */
  uploadEndpoints(grant: UploadGrant): { simple: string; tus: string; expires: number } {
    return {
      simple: `${this.opts.dataUrl}/simple/${this.sign('up', grant, this.transferTtl, 'simple')}`,
      tus: `${this.opts.dataUrl}/tus/${this.sign('up', grant, this.uploadTtl, 'tus')}`,
      expires: Date.now() + this.uploadTtl * 1000,
    };
  }

  /** Endpoints for a download (`simple`, and `spaces` as Reva names the same thing). */
  downloadEndpoints(grant: DownloadGrant): { simple: string; spaces: string } {
    const token = this.sign('down', grant, this.transferTtl);
    return { simple: `${this.opts.dataUrl}/simple/${token}`, spaces: `${this.opts.dataUrl}/spaces/${token}` };
  }

  /** The grant a request carries: its last path segment, or `X-Reva-Transfer`. */
  private grantOf(req: IncomingMessage, segment: string | undefined): Granted {
    const candidates = [segment, header(req, 'x-reva-transfer')].filter((t): t is string => !!t);
    let failure: unknown = new StorageError('UNAUTHENTICATED', 'no transfer token');
    for (const token of candidates) {
      try {
        const claims = verifyJwt(token, this.opts.secret);
        const own = ownGrant(claims, token) ?? this.viaGateway(claims);
        if (own) return own;
        failure = new StorageError('UNAUTHENTICATED', 'not a transfer token of this server');
      } catch (err) {
        failure = err;
      }
    }
    throw failure;
  }

  /** A Reva datagateway's token: its `target` is one of our endpoints, whose own token decides. */
  private viaGateway(c: JwtClaims): Granted | undefined {
    if (typeof c.target !== 'string' || !c.target.startsWith(`${this.opts.dataUrl}/`)) return undefined;
    const token = c.target.split('?')[0]!.split('/').pop()!;
    return ownGrant(verifyJwt(token, this.opts.secret), token);
  }

  /** The request handler (mount it at the root of an HTTP server). */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.route(req, res).catch((err) => this.fail(res, err));
  };

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const base = new URL(this.opts.dataUrl).pathname.replace(/\/+$/, '');
    if (!url.pathname.startsWith(`${base}/`)) throw new StorageError('NOT_FOUND', 'not a data plane path');
    const [protocol, ...rest] = url.pathname.slice(base.length + 1).split('/');
    const segment = rest.at(-1) || undefined;
    const method = (header(req, 'x-http-method-override') ?? req.method ?? 'GET').toUpperCase();
    if (protocol === 'tus') return this.tus(req, res, method, segment);
    if (protocol !== 'simple' && protocol !== 'spaces')
      throw new StorageError('NOT_FOUND', 'unknown protocol');
    const grant = this.grantOf(req, segment);
    if (method === 'PUT' && grant.kind === 'up') {
      // (a TUS upload's token is good for that upload alone, on its TUS endpoint, for its day)
      if (grant.p === 'tus') throw new StorageError('PERMISSION_DENIED', 'this token is for a TUS upload');
      const giveBack = this.spend(grant);
      return this.put(req, res, grant).catch((err) => {
        giveBack();
        throw err;
      });
    }
    if ((method === 'GET' || method === 'HEAD') && grant.kind === 'down') {
      return this.get(req, res, grant, method === 'HEAD');
    }
    throw new StorageError('UNIMPLEMENTED', `${method} is not what this token is for`);
  }

  /** The session a transfer runs as: its user, and the door that started it (default: CS3). */
  private readonly guards = new Map<
    Origin,
    (session: StorageProvider, grant: UploadGrant) => Promise<void>
  >();

  /**
   * A check a door makes before an upload it started is written (a resumable one may finish a day
   * later): the WebDAV door refuses one into a folder another user has locked since. It throws
   * to refuse (a {@link StorageError}).
   */
  setCommitGuard(
    origin: Origin,
    guard: (session: StorageProvider, grant: UploadGrant) => Promise<void>,
  ): void {
    this.guards.set(origin, guard);
  }

  private async guard(session: StorageProvider, g: UploadGrant, lockId: string | undefined): Promise<void> {
    await this.guards.get(g.o ?? 'cs3')?.(session, g);
    if (lockId && g.o === 'webdav') await this.holderOnly(g, lockId);
  }

  /**
   * For an upload the WebDAV door started, a lock id counts for its lock's holder only (RFC 4918
   * §6.4: a token is its creator's, shared lock or not), as the door's own PUT has it: `X-Lock-Id`
   * can carry any token the client read in DAV:lockdiscovery. (CS3 keeps its rule, the
   * provider's: a shared lock's id is the capability, which the editors of one office document
   * share.) A lock without a holder (the system's) is left to the provider, as is an id that is
   * not the lock's.
   */
  private async holderOnly(g: UploadGrant, lockId: string): Promise<void> {
    const lock = await this.opts.provider.getLock(g.r).catch((err) => {
      if (StorageError.is(err, 'NOT_FOUND') || StorageError.is(err, 'UNIMPLEMENTED')) return undefined;
      throw err;
    });
    const live = liveLock(lock);
    if (live?.lockId === lockId && live.user && live.user !== g.u)
      throw new StorageError('LOCKED', 'the resource is locked by another user');
  }

  private session(userId: string, origin?: Origin): Promise<StorageProvider> {
    return this.opts.provider.as(userId, { origin: origin ?? 'cs3' });
  }

  // ---------------------------------------------------------------- simple upload

  private writeOptions(req: IncomingMessage, g: UploadGrant, signal: AbortSignal): WriteOptions {
    const conditions: Conditions = { ...g.c };
    if (g.ifMatch) conditions.ifMatch = [g.ifMatch];
    if (g.ifNotExist) conditions.ifNoneMatch = '*';
    if (g.ifUnmodifiedSince !== undefined) conditions.ifUnmodifiedSince = g.ifUnmodifiedSince;
    const checksums = g.checksums ?? parseChecksumHeader(header(req, 'oc-checksum'));
    const mtime = g.mtime ?? mtimeHeader(header(req, 'x-oc-mtime'));
    const lockId = g.lockId ?? header(req, 'x-lock-id');
    return {
      ...(g.size !== undefined && { size: g.size }),
      ...(checksums && { checksums }),
      ...(mtime !== undefined && { mtime }),
      ...(Object.keys(conditions).length && { conditions }),
      ...(lockId && { lockId }),
      signal,
    };
  }

  private async put(req: IncomingMessage, res: ServerResponse, g: UploadGrant): Promise<void> {
    const session = await this.session(g.u, g.o);
    const length = intHeader(header(req, 'content-length'));
    const opts = this.writeOptions(req, g, abortOnClose(req, res));
    if (opts.size === undefined && length !== undefined) opts.size = length;
    opts.upload = {};
    await this.guard(session, g, opts.lockId);
    const info = await session.write(g.r, req, opts);
    res.writeHead(200, { ...infoHeaders(info, wantsInfo(req)), 'content-length': '0' });
    res.end();
  }

  // ---------------------------------------------------------------- download

  private async get(
    req: IncomingMessage,
    res: ServerResponse,
    g: DownloadGrant,
    head: boolean,
  ): Promise<void> {
    const session = await this.session(g.u);
    const opts = readOptions(req, res);
    const r = g.v ? await session.readVersion(g.r, g.v, opts) : await session.read(g.r, opts);
    await sendRead(req, res, r, head, {
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(r.info.name)}`,
    });
  }

  // ---------------------------------------------------------------- tus

  private tusHeaders(res: ServerResponse, st?: UploadState, offset = st && toldOffset(st)): void {
    res.setHeader('tus-resumable', TUS_VERSION);
    res.setHeader('cache-control', 'no-store');
    if (st) {
      res.setHeader('upload-offset', String(offset));
      if (st.length !== undefined) res.setHeader('upload-length', String(st.length));
      else res.setHeader('upload-defer-length', '1');
      res.setHeader('upload-expires', new Date(st.expires).toUTCString());
    }
  }

  private async tus(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    segment?: string,
  ): Promise<void> {
    if (method === 'OPTIONS') {
      res.writeHead(204, {
        'tus-resumable': TUS_VERSION,
        'tus-version': TUS_VERSION,
        'tus-extension': TUS_EXTENSIONS,
        'tus-checksum-algorithm': TUS_CHECKSUMS.join(','),
      });
      res.end();
      return;
    }
    const resumable = header(req, 'tus-resumable');
    if (resumable !== undefined && resumable !== TUS_VERSION) {
      res.writeHead(412, { 'tus-version': TUS_VERSION });
      res.end();
      return;
    }
    const g = this.grantOf(req, segment);
    if (g.kind !== 'up') throw new StorageError('PERMISSION_DENIED', 'not an upload token');
    if (g.p === 'simple') throw new StorageError('PERMISSION_DENIED', 'this token is for a simple upload');
    const id = TusUploads.idFor(g.token);
    const uploads = this.opts.uploads;
    if (method === 'POST') {
      // Creation: the upload is the token's; the Location carries the token.
      const length = uploadLength(req);
      const deferred = header(req, 'upload-defer-length') === '1';
      if (length === undefined && !deferred && g.size === undefined) {
        throw new StorageError('INVALID_ARGUMENT', 'Upload-Length or Upload-Defer-Length is required');
      }
      if (length !== undefined && g.size !== undefined && length !== g.size) {
        throw new StorageError(
          'INVALID_ARGUMENT',
          'Upload-Length differs from the size given at initiate time',
        );
      }
      const existing = await uploads.get(id);
      if (existing?.done) throw new StorageError('NOT_FOUND', 'the upload is finished or was terminated');
      // Created before (a retried POST, or a HEAD first): a length it brings is declared now.
      if (existing && length !== undefined) await this.declareLength(g, existing, length);
      const st = existing ?? (await this.create(g, id, length ?? g.size));
      const location = `${this.opts.dataUrl}/tus/${g.token}`;
      if (header(req, 'content-type') === 'application/offset+octet-stream') {
        return this.patch(req, res, g, st, location);
      }
      this.tusHeaders(res, st);
      res.writeHead(201, { location });
      res.end();
      return;
    }
    let st = await uploads.get(id);
    if (st?.done) throw new StorageError('NOT_FOUND', 'the upload is finished or was terminated');
    if (!st && (method === 'HEAD' || method === 'PATCH')) {
      // Created at initiate time (ocdav's flow): the first request makes it.
      st = await this.create(g, id, g.size);
    }
    if (!st) throw new StorageError('NOT_FOUND', 'no such upload');
    if (method === 'HEAD') {
      this.tusHeaders(res, st);
      res.writeHead(200, { 'content-length': '0' });
      res.end();
      return;
    }
    if (method === 'DELETE') {
      await uploads.end(st);
      this.tusHeaders(res);
      res.writeHead(204);
      res.end();
      return;
    }
    if (method === 'PATCH') return this.patch(req, res, g, st);
    throw new StorageError('UNIMPLEMENTED', `${method} is not part of this tus server`);
  }

  /**
   * Start an upload of `g.u`'s: refused (507) when the user has too many in progress, or when its
   * length does not fit the target space's free quota (staged bytes live outside every space).
   */
  private async create(g: UploadGrant, id: string, length: number | undefined): Promise<UploadState> {
    if (length !== undefined) await this.checkRoom(g, length);
    return this.opts.uploads.create(
      {
        id,
        offset: 0,
        expires: Date.now() + this.uploadTtl * 1000,
        target: undefined,
        user: g.u,
        ...(length !== undefined && { length }),
      },
      { maxPerUser: this.maxUploads },
    );
  }

  /**
   * Bytes the target space has room for: the rest of its quota, bounded by the free space of the
   * storage beneath (infinite when neither is known).
   */
  private async room(g: UploadGrant): Promise<number> {
    const quota = await this.opts.provider.getQuota(g.r);
    return quota.available ?? Number.POSITIVE_INFINITY;
  }

  private async checkRoom(g: UploadGrant, length: number): Promise<void> {
    if (length > (await this.room(g))) {
      throw new StorageError('INSUFFICIENT_STORAGE', 'no room for this upload (its quota, or the disk)');
    }
  }

  /** The client says the length (deferred until now): it may not change, and must fit the quota. */
  private async declareLength(g: UploadGrant, st: UploadState, length: number): Promise<void> {
    if (st.length !== undefined) {
      if (st.length !== length) throw new StorageError('INVALID_ARGUMENT', 'the upload length cannot change');
      return;
    }
    await this.checkRoom(g, length);
    await this.opts.uploads.setLength(st, length);
  }

  private async patch(
    req: IncomingMessage,
    res: ServerResponse,
    g: UploadGrant & { token: string },
    st: UploadState,
    location?: string,
  ): Promise<void> {
    const uploads = this.opts.uploads;
    if (header(req, 'content-type') !== 'application/offset+octet-stream') {
      const e = new StorageError(
        'INVALID_ARGUMENT',
        'a tus PATCH carries Content-Type: application/offset+octet-stream',
        { reason: 'bad-header' },
      );
      return this.fail(res, e, 415);
    }
    const offset = intHeader(header(req, 'upload-offset'));
    if (offset === undefined && location === undefined) {
      throw new StorageError('INVALID_ARGUMENT', 'Upload-Offset is required');
    }
    // A complete upload not written yet (see toldOffset) takes its last byte again, or nothing.
    const resent = st.offset === st.length && offset === toldOffset(st) && offset !== st.offset;
    if ((offset ?? 0) !== st.offset && !resent) {
      this.tusHeaders(res, st);
      res.writeHead(409, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'ABORTED', message: `the upload is at offset ${toldOffset(st)}` }));
      return;
    }
    const length = uploadLength(req);
    if (length !== undefined) await this.declareLength(g, st, length);
    const sum = header(req, 'upload-checksum');
    let checksum: { algo: string; digest: string } | undefined;
    if (sum) {
      const [algo, digest] = sum.trim().split(/\s+/);
      if (!algo || !digest || !(TUS_CHECKSUMS as readonly string[]).includes(algo.toLowerCase())) {
        const e = new StorageError(
          'INVALID_ARGUMENT',
          `Upload-Checksum is "<algorithm> <base64 digest>", the algorithm one of ${TUS_CHECKSUMS.join(', ')}`,
          { reason: 'bad-header' },
        );
        return this.fail(res, e, 400);
      }
      checksum = { algo: algo.toLowerCase(), digest };
    }
    // A length not given yet bounds nothing: the space's free quota does.
    const max = st.length !== undefined ? st.length - st.offset : (await this.room(g)) - st.offset;
    try {
      if (resent) await TusUploads.verifyResent(req, checksum);
      else
        await uploads.append(st, req, {
          ...(Number.isFinite(max) && { max: Math.max(0, max) }),
          ...(checksum && { checksum }),
        });
    } catch (err) {
      if (st.length === undefined && StorageError.is(err) && err.reason === 'size-mismatch') {
        throw new StorageError('INSUFFICIENT_STORAGE', 'the space quota does not allow this upload');
      }
      if (StorageError.is(err) && err.reason === 'checksum-mismatch') {
        this.tusHeaders(res, st);
        return this.fail(res, err, 460); // tus: Checksum Mismatch
      }
      throw err;
    }
    if (location) res.setHeader('location', location);
    if (st.length !== undefined && st.offset === st.length) {
      // Complete: write it through the user's session, then drop the staged bytes either way.
      const done = st;
      // (not aborted when the client goes away: every byte is here; only a termination stops it)
      await uploads.commit(done, async (bytes, signal) => {
        const session = await this.session(g.u, g.o);
        const opts = this.writeOptions(req, g, signal);
        opts.size = done.length;
        opts.upload = { id: done.id };
        await this.guard(session, g, opts.lockId);
        // Sent again after the process stopped during its write or right after it: done if that
        // write landed, 412 if the file changed to something else since.
        let info = done.before !== undefined && (await landedBefore(session, g.r, done.before, () => bytes));
        if (!info) {
          // (kept, synced, before the write starts)
          const now = await etagNow(session, g.r);
          if (now !== undefined) await uploads.writing(done, now);
          info = await session.write(g.r, bytes, opts);
        }
        for (const [k, v] of Object.entries(infoHeaders(info, wantsInfo(req)))) res.setHeader(k, v);
      });
      this.tusHeaders(res, st, st.offset);
    } else this.tusHeaders(res, st);
    res.writeHead(location ? 201 : 204);
    res.end();
  }

  // ---------------------------------------------------------------- errors

  /** Answer an error as JSON (`status` overrides the code's own, for tus's 415 and 460). */
  private fail(res: ServerResponse, err: unknown, status?: number): void {
    const e = toStorageError(err, 'transfer');
    if (e.code === 'INTERNAL') this.opts.log?.('data plane request failed', err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // Reva answers a checksum mismatch with its own 419.
    status ??= e.reason === 'checksum-mismatch' ? 419 : httpStatus(e.code);
    const body = JSON.stringify(e.toJSON());
    refuseBody(res.req, res);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'x-stowage-error': Buffer.from(body).toString('base64url'),
      'tus-resumable': TUS_VERSION,
    });
    res.end(body);
  }
}

/** A verified grant, with the token it came in (tus uploads are keyed by it). */
/** The protocol an upload token was signed for (none: signed before tokens said). */
type UploadProtocol = 'simple' | 'tus';

/** What a token grants, with the token, its id and expiry (ms), and its upload protocol. */
type Granted = (
  | ({ kind: 'up' } & UploadGrant & { p?: UploadProtocol })
  | ({ kind: 'down' } & DownloadGrant & { p?: undefined })
) & { token: string; jti?: string; exp?: number };

function ownGrant(c: JwtClaims, token: string): Granted | undefined {
  const s = c.stowage as ({ k?: unknown } & Partial<UploadGrant> & Partial<DownloadGrant>) | undefined;
  if (!s || (s.k !== 'up' && s.k !== 'down') || typeof s.u !== 'string' || typeof s.r !== 'string')
    return undefined;
  const { k, ...rest } = s;
  const id = {
    token,
    ...(typeof c.jti === 'string' && { jti: c.jti }),
    ...(typeof c.exp === 'number' && { exp: c.exp * 1000 }),
  };
  return k === 'up'
    ? { kind: 'up', ...(rest as UploadGrant & { p?: UploadProtocol }), ...id }
    : { kind: 'down', ...(rest as DownloadGrant), ...id };
}

function httpStatus(code: ErrorCode): number {
  return codeToHttp[code];
}

/**
 * The offset a client is told: a complete upload whose file is not written yet (its commit is
 * running, or was cut short by a restart) is told all its bytes but the last. A client that
 * resumes it (tus-js-client after a dropped answer) sends that byte again, and that PATCH writes
 * the file; told the whole length, it would take the upload for done though nothing was written.
 */
function toldOffset(st: UploadState): number {
  return st.length !== undefined && st.length > 0 && st.offset === st.length ? st.length - 1 : st.offset;
}
