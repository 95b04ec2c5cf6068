/**
 * The WebDAV door: RFC 4918 (classes 1, 2 and 3) plus the ownCloud/OpenCloud dialect sync clients
 * need, on `node:http` `(req, res)`, streamed end to end.
 *
 * Endpoints (each resolves to one space, then a path in it):
 * - `/remote.php/webdav/...`, `/remote.php/dav/files/<user>/...`, `/dav/files/<user>/...`: the
 *   user's personal space (created on first use);
 * - `/dav/spaces/<space id>/...`, `/remote.php/dav/spaces/<space id>/...`: any space the user
 *   holds a grant in (the id may be given as `<storage>$<space>`);
 * - `/remote.php/dav/uploads/<user>/<transfer id>/...`: chunked uploads (chunking NG);
 * - `/dav/spaces/trash-bin/<space id>/...`, `/remote.php/dav/trash-bin/<user>/...` and
 *   `/remote.php/dav/meta/<file id>/v/...`: the trash and versions ({@link MetaEndpoints});
 * - `/status.php`, `/ocs/v{1,2}.php/cloud/{capabilities,user}`: what clients ask before syncing;
 * - `/`: OPTIONS says the server speaks WebDAV (Windows asks there first, whatever folder it is
 *   given); GET, HEAD and PROPFIND are sent on to the personal space (302), as Nextcloud does.
 *
 * Every request runs as the authenticated user's session (HTTP Basic against the identity
 * source, or a Bearer Reva token), so grants are checked before anything reaches a driver.
 *
 * @module
 */
import { createHash, randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { applyPropertyChange } from '../core/changes.js';
import { mergeChecksums, parseChecksumHeader, parseDigestHeader } from '../core/checksums.js';
import { checkWriteConditions, evaluateConditions, parseHttpDate } from '../core/conditions.js';
import { type ErrorCode, StorageError, toStorageError } from '../core/errors.js';
import type { StorageEvent } from '../core/events.js';
import { replaceFile } from '../core/files.js';
import type { User } from '../core/identity.js';
import { guardsBelow, type LockMeta, lockMeta, lockTokens } from '../core/locks.js';
import type { QuotaInfo, StorageProvider } from '../core/provider.js';
import { formatResourceId, printable, sameId, splitPath } from '../core/refs.js';
import type {
  Checksums,
  Field,
  Lock,
  MoveOptions,
  ReadResult,
  Reference,
  ResourceId,
  ResourceInfo,
  Space,
  StatOptions,
} from '../core/types.js';
import type { DataPlane } from '../cs3/dataplane.js';
import { requireFullScope, tokenUser, verifyJwt } from '../cs3/jwt.js';
import { IDLE_BEFORE_DROPPED_MS } from '../cs3/tus.js';
import {
  abortOnClose,
  favoriteFlag,
  header,
  httpDate,
  infoHeaders,
  intHeader,
  isoSeconds,
  landedBefore,
  mtimeHeader,
  ocPermissions,
  quoteEtag,
  readOptions,
  refuseBody,
  requestConditions,
  sendRead,
  uploadLength,
  wantsInfo,
} from '../http/common.js';
import {
  clientAddressOf,
  SignInRefused,
  SignInThrottle,
  type SignInThrottleOptions,
} from '../http/sign-ins.js';
import { type IfList, parseIf, submittedTokens } from './ifheader.js';
import { MEDIA_TYPE_KEYWORDS, MTIME_KEYWORDS, parseQuery, type SearchQuery } from './kql.js';
import { type Fill, type Kept, ListingCache, type ListingCacheOptions } from './listing-cache.js';
import { MetaEndpoints } from './meta.js';
import {
  holdsTextOnly,
  isElementOf,
  keptValue,
  LOCAL_NAME,
  propertyKey,
  propertyOfKey,
} from './properties.js';
import {
  destinationTaken,
  emptyProp,
  encodeMountSegments,
  encodeName,
  encodeSegments,
  HttpError,
  MULTISTATUS_HEAD,
  overwriteOf,
  type PropName,
  propstats,
  readPropfind,
  type Session,
  send,
  sendMadeOrReplaced,
  spaceIdOf,
  type Target,
  targetRef,
  type Who,
  withoutRepeats,
  XML_TYPE,
} from './shared.js';
import { StagedChunks } from './staged.js';
import {
  BodyBudget,
  child,
  DAV,
  esc,
  escText,
  OC,
  parseXml,
  readBody,
  ST,
  serialise,
  serialiseContent,
  type XmlElement,
} from './xml.js';

/** Options of {@link WebDav}. */
export interface WebDavOptions {
  /** The system provider; it needs an identity source (Basic auth checks passwords against it). */
  provider: StorageProvider;
  /** Secret of Reva access tokens accepted as `Authorization: Bearer` (optional). */
  jwtSecret?: string;
  /**
   * How password sign-ins (Basic) are held in check: an address that keeps failing must wait (429
   * with `Retry-After`), and few passwords are checked at once (see {@link SignInThrottle}).
   * Credentials already checked (kept for a minute) pass without it. Default: its defaults.
   */
  signIns?: SignInThrottleOptions;
  /**
   * The address a request comes from, as failed sign-ins are counted (default: the peer's, an IPv6
   * one by its /64). Behind a reverse proxy, every client has the proxy's: read the client's from
   * what the proxy adds (`X-Forwarded-For`'s last entry, say), and trust it from the proxy only.
   */
  clientAddress?: (req: IncomingMessage) => string;
  /** Folder for chunked uploads in progress (default: none, chunking is not offered). */
  uploadsDir?: string;
  /**
   * The data plane whose TUS endpoints take resumable uploads created by `POST` on a folder of a
   * space (as OpenCloud's web client does); without it, no TUS.
   */
  tus?: DataPlane;
  /** Answer `Depth: infinity` PROPFINDs (default false: 403 propfind-finite-depth). */
  allowDepthInfinity?: boolean;
  /**
   * Most resources one search (REPORT `oc:search-files` other than `is:favorite`) looks at as it
   * walks the tree (default 100,000: ~1 s of the server's time here); a search cut short ends
   * with a 507 entry, as RFC 5323 §2.4 marks truncated results. 0: no walks (such searches 501).
   */
  searchMaxVisits?: number;
  /**
   * Keep rendered `Depth: 1` listings until something they show changes (default off). Turn
   * it on only where every change reaches the provider's events: the observer runs (as with
   * `stowage serve`), or nothing writes around Stowage. See {@link ListingCache}.
   */
  listingCache?: boolean | ListingCacheOptions;
  /** Realm of the Basic challenge (default "Stowage"). */
  realm?: string;
  /**
   * XML request bodies (PROPFIND, PROPPATCH, LOCK, REPORT; 1 MiB each at most) are read into
   * memory: `maxBytes` of them at once, all connections together (default 64 MiB; past that, 503
   * with Retry-After), each sent whole within `deadlineMs` (default 30 s; past that, 408).
   */
  xmlBodies?: { maxBytes?: number; deadlineMs?: number };
  /** Failures worth a look (never passwords or tokens). */
  log?: (message: string, err?: unknown) => void;
}

const AUTH_TTL_MS = 60_000;
const NO_ROOM = 'no room for this upload (the space quota, or the storage beneath)';
const MAX_LOCK_SECONDS = 7 * 24 * 3600;
const DEFAULT_LOCK_SECONDS = 3600;
const WEBDAV_LOCK_APP = 'webdav';
/** Most resources a Depth: infinity LOCK looks at for conflicting locks below it. */
const MAX_LOCK_WALK = 100_000;
/** A folder's HTML index is sorted up to this many entries (held meanwhile); past it, streamed as listed. */
const INDEX_SORTED = 5000;
/** Names as people read them: case aside, numbers by value. */
const byName = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
/** Default of {@link WebDavOptions.searchMaxVisits}. */
const MAX_SEARCH_VISITS = 100_000;
/** Largest search limit whose results are held until the search is done, and the rest counted. */
const MAX_COUNTED_RESULTS = 1000;
/** Most bytes of rendered results one search holds before it streams them (and gives no total). */
const MAX_HELD_BYTES = 1 << 20;
/**
 * Longest a search holds its results before it sends them and streams the rest, without a total:
 * well within the server's idle timeout and a proxy's wait for a first byte (nginx: 60 s).
 */
const MAX_HOLD_MS = 5000;

const LIVE_DAV = new Set([
  'creationdate',
  'resourcetype',
  'getcontentlength',
  'getlastmodified',
  'getetag',
  'getcontenttype',
  'lockdiscovery',
  'supportedlock',
  'quota-used-bytes',
  'quota-available-bytes',
  'supported-report-set',
]);
const LIVE_OC = new Set([
  'id',
  'file-parent',
  'fileid',
  'permissions',
  'checksums',
  'size',
  'data-fingerprint',
  'share-types',
  'downloadURL',
  'dDC',
  'owner-id',
  'owner-display-name',
  'favorite',
]);
/** The base of a personal endpoint's mount (`remote.php/webdav`, `[remote.php/]dav/files/<user>`). */
const PERSONAL_MOUNT = /^\/(?:remote\.php\/webdav|(?:remote\.php\/)?dav\/files\/[^/]+)$/;

/** What allprop answers besides dead properties (RFC 4918 §9.1: the live props it defines). */
const ALLPROP: PropName[] = [
  'creationdate',
  'resourcetype',
  'getcontentlength',
  'getlastmodified',
  'getetag',
  'getcontenttype',
  'lockdiscovery',
  'supportedlock',
].map((local) => ({ ns: DAV, local }));

/**
 * The live properties propname may name (those a resource has): allprop's, the quota's (RFC 4331
 * §2 keeps them out of allprop but wants them named here), the reports REPORT answers, `oc:`'s.
 */
const PROPNAME: PropName[] = [
  ...ALLPROP,
  ...['quota-used-bytes', 'quota-available-bytes', 'supported-report-set'].map((local) => ({
    ns: DAV,
    local,
  })),
  ...[...LIVE_OC].map((local) => ({ ns: OC, local })),
];

/** Stowage's properties that come with the quota: a space root's usage, broken down. */
const ST_USAGE = new Set(['usage-files', 'usage-trash', 'usage-versions']);
/** Stowage's own live properties (exact values the DAV ones round or leave out). */
const LIVE_ST = new Set(['mtime', 'created', 'path', ...ST_USAGE]);
/** Whether a property needs the quota of the resource it is asked of. */
const needsQuota = (p: PropName) =>
  (p.ns === DAV && p.local.startsWith('quota-')) || (p.ns === ST && ST_USAGE.has(p.local));

function isLive(p: PropName): boolean {
  return (
    (p.ns === DAV && LIVE_DAV.has(p.local)) ||
    (p.ns === OC && LIVE_OC.has(p.local)) ||
    (p.ns === ST && LIVE_ST.has(p.local))
  );
}

/** Metadata key of a dead property (see {@link propertyKey}). */
const deadKey = propertyKey;

/** The key Stowage kept a dead property under before (Clark notation, `{ns}name`): still read. */
function legacyKey(p: PropName): string {
  return `{${p.ns}}${p.local}`;
}

/** The metadata keys a dead property may be found under, the current one first. */
const keysOf = (p: PropName): string[] => [deadKey(p), legacyKey(p)];

/** `oc:favorite`'s key among a PROPPATCH's changes. */
const FAVORITE = deadKey({ ns: OC, local: 'favorite' });

/** Methods that change their target, whose HTTP preconditions the handler checks itself. */
const CONDITIONAL = new Set(['DELETE', 'COPY', 'MOVE', 'PROPPATCH', 'LOCK', 'UNLOCK', 'MKCOL']);

/** The WebDAV door. Mount it on an HTTP server: `if (!(await dav.handle(req, res))) ...`. */
export class WebDav {
  private readonly auth = new Map<string, { user: User; session: Session; until: number }>();
  private readonly signIns: SignInThrottle;
  /** The trash and versions endpoints. */
  private readonly meta = new MetaEndpoints(
    {
      target: (p, who) => this.target(p, who),
      personalSpace: (user, session) => this.personalSpace(user, session),
      destinationPath: (req) => this.destinationPath(req),
      checkLocks: (req, t, info, membership, requestUri) =>
        this.checkLocks(req, t, info, membership, requestUri),
      checkIf: (req, t, info, guarding) => this.checkIf(req, t, info, guarding),
      peek: (t) => this.peek(t, t.segs),
      bodies: () => this.bodies,
    },
    () => this.opts.allowDepthInfinity === true,
  );
  /** Each user's personal space, looked up (or created) once a minute, not on every request. */
  private readonly personalSpaces = new Map<string, { space: Promise<Space>; until: number }>();
  private readonly realm: string;
  private readonly listings: ListingCache | undefined;

  /** What XML request bodies may take, all connections together. */
  private readonly bodies: BodyBudget;
  /** The bytes each user holds in chunked uploads. */
  private readonly staged = new StagedChunks();
  /** Chunked transfers (their folders) whose `.file` MOVE is assembling them now. */
  private readonly assembling = new Set<string>();
  /** Removes chunked transfers nobody finished (see {@link sweepUploads}). */
  private readonly sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: WebDavOptions) {
    this.signIns = new SignInThrottle(opts.signIns);
    if (!opts.provider.identity) {
      throw new StorageError('INVALID_ARGUMENT', 'WebDAV needs a provider with an identity source');
    }
    this.realm = opts.realm ?? 'Stowage';
    this.bodies = new BodyBudget(opts.xmlBodies?.maxBytes, opts.xmlBodies?.deadlineMs);
    if (opts.listingCache) {
      this.listings = new ListingCache(
        opts.provider.events,
        typeof opts.listingCache === 'object' ? opts.listingCache : {},
      );
    }
    opts.tus?.setCommitGuard('webdav', (session, g) => this.uploadGuard(session, g.r, g.u));
    if (opts.uploadsDir) {
      // Transfers nobody finished go after a day, whether or not their user comes back.
      const sweep = () =>
        void this.sweepUploads().catch((err) => opts.log?.('sweeping chunked uploads', err));
      this.sweeper = setInterval(sweep, SWEEP_EVERY_MS).unref();
      setImmediate(sweep);
    }
  }

  /**
   * Before a TUS upload this door started is written: the locks it was checked against when it
   * began may have changed since (it can take a day). A folder above it locked Depth: infinity, or
   * its folder locked at all when the file is new, by someone else than the uploader refuses it
   * (the PATCH that finishes it carries no If header; the file's own lock is the write's to check).
   */
  private async uploadGuard(session: Session, ref: string, userId: string): Promise<void> {
    const slash = ref.indexOf('/');
    const root = slash < 0 ? ref : ref.slice(0, slash);
    const segs = slash < 0 ? [] : ref.slice(slash + 1).split('/');
    const exists = (await session.stat(ref, { fields: [] }).catch(notFound)) !== undefined;
    // Its folders all the way up, also above a node it was started below (a share reached by id).
    const base = await this.opts.provider.stat(root, { fields: [] }).catch(notFound);
    if (!base) return; // (gone: the write says so)
    for (const lock of await this.locksAbove(base.id.spaceId, [...splitPath(base.path), ...segs], !exists)) {
      if (lock.user !== userId)
        throw new StorageError('LOCKED', 'a folder above the upload was locked meanwhile');
    }
  }

  /** Rendered listings kept (when enabled): hits, misses, entries and bytes. */
  listingCacheStats(): ReturnType<ListingCache['stats']> | undefined {
    return this.listings?.stats();
  }

  /** Stop listening to the provider's events (the provider stays open). */
  close(): void {
    this.listings?.close();
    clearInterval(this.sweeper);
  }

  /** Remove every user's chunked transfers untouched for a day (and what finished ones left). */
  private async sweepUploads(): Promise<void> {
    const dir = this.opts.uploadsDir!;
    for (const user of await fsp.readdir(dir).catch(() => [] as string[])) {
      const userDir = path.join(dir, user);
      await sweepTransfers(userDir, (t) => this.staged.forget(userDir, t));
    }
  }

  /** Bytes the user's staged chunks may take in all: what their personal space's quota has left. */
  private async stagingRoom(who: Who): Promise<number> {
    const quota = await this.personalSpace(who.user, who.session).then(
      (sp) => who.session.getQuota({ space: sp.id, path: '' }),
      () => undefined,
    );
    return quota?.remaining ?? Number.POSITIVE_INFINITY;
  }

  /** Answer a request if it is ours (true), or leave it alone (false). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = req.url ?? '/';
    const rawPath = url.split('?')[0]!;
    // `OPTIONS *` asks about the server, not a resource (RFC 9110 §9.3.7): what it speaks, no more.
    if (rawPath === '*' && req.method === 'OPTIONS') {
      req.resume();
      await this.options(req, res);
      return true;
    }
    if (rawPath === '/') {
      this.serverRoot(req, res);
      return true;
    }
    if (!this.claims(rawPath)) return false;
    try {
      await this.dispatch(req, res, rawPath);
    } catch (err) {
      this.fail(req, res, err);
    }
    return true;
  }

  /**
   * The server's root, which is no resource: Windows' WebClient sends OPTIONS there before it
   * maps any folder of the server (no WebDAV answer, no drive); a browser or a client pointed at
   * the bare server is sent on to the personal space. Nothing here needs credentials.
   */
  private serverRoot(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const method = (req.method ?? 'GET').toUpperCase();
    if (method === 'OPTIONS') {
      void this.options(req, res);
      return;
    }
    if (method === 'GET' || method === 'HEAD' || method === 'PROPFIND') {
      res.writeHead(302, { location: '/remote.php/webdav/', 'content-length': '0' });
      res.end();
      return;
    }
    this.fail(
      req,
      res,
      new HttpError(405, 'the server root is not a resource: see /remote.php/webdav/').allowing(
        'OPTIONS, GET, HEAD, PROPFIND',
      ),
    );
  }

  private claims(p: string): boolean {
    return (
      p === '/status.php' ||
      p === '/events' ||
      p.startsWith('/ocs/') ||
      p === '/remote.php/webdav' ||
      p.startsWith('/remote.php/webdav/') ||
      p.startsWith('/remote.php/dav/') ||
      p.startsWith('/dav/')
    );
  }

  // ---------------------------------------------------------------- errors

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    let status: number;
    let message: string;
    let davError: string | undefined;
    let hrefs: string[] | undefined;
    let code: string | undefined;
    let reason: string | undefined;
    if (err instanceof HttpError) {
      status = err.status;
      message = err.message;
      davError = err.davError;
      hrefs = err.hrefs;
      code = err.as?.code;
      reason = err.as?.reason;
    } else {
      const e = toStorageError(err, 'request');
      status = statusOf(e, req.method ?? '');
      message = e.message;
      code = e.code;
      reason = e.reason;
      if (e.code === 'INTERNAL') this.opts.log?.(`WebDAV ${req.method} failed`, err);
      if (e.code === 'UNAUTHENTICATED') status = 401;
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = { 'content-type': XML_TYPE };
    if (status === 401) headers['www-authenticate'] = `Basic realm="${this.realm}", charset="UTF-8"`;
    if (status === 405) headers.allow = (err instanceof HttpError && err.allow) || this.allowed();
    if (status === 503 || status === 429)
      headers['retry-after'] = String((err instanceof HttpError && err.retryAfter) || 2);
    const body =
      `<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">` +
      (davError
        ? hrefs?.length
          ? `<d:${davError}>${hrefs.map((h) => `<d:href>${esc(h)}</d:href>`).join('')}</d:${davError}>`
          : `<d:${davError}/>`
        : '') +
      `<s:exception>${esc(exceptionName(status))}</s:exception><s:message>${esc(message)}</s:message>` +
      (code ? `<st:code xmlns:st="urn:stowage">${code}</st:code>` : '') +
      (reason ? `<st:reason xmlns:st="urn:stowage">${reason}</st:reason>` : '') +
      '</d:error>';
    headers['content-length'] = String(Buffer.byteLength(body));
    refuseBody(req, res);
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  // ---------------------------------------------------------------- auth

  private async authenticate(req: IncomingMessage): Promise<Who> {
    const h = header(req, 'authorization');
    if (!h) throw new StorageError('UNAUTHENTICATED', 'authentication required');
    const key = createHash('sha256').update(h).digest('base64');
    const now = Date.now();
    const hit = this.auth.get(key);
    if (hit && hit.until > now) return hit;
    const identity = this.opts.provider.identity!;
    let user: User | undefined;
    let until = now + AUTH_TTL_MS;
    const m = /^(\w+)\s+(.+)$/.exec(h.trim());
    const word = h.trim().split(/\s/, 1)[0] ?? '';
    const scheme = word.toLowerCase();
    if ((scheme === 'basic' || scheme === 'bearer') && !m)
      throw new StorageError('UNAUTHENTICATED', `malformed ${word} credentials`);
    if (scheme === 'basic') {
      const decoded = Buffer.from(m![2]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new StorageError('UNAUTHENTICATED', 'malformed Basic credentials');
      const address = (this.opts.clientAddress ?? clientAddressOf)(req);
      try {
        user = await this.signIns.check(address, () =>
          identity.authenticate(decoded.slice(0, colon), decoded.slice(colon + 1)),
        );
      } catch (err) {
        if (!(err instanceof SignInRefused)) throw err;
        throw new HttpError(err.status, err.message, undefined, {
          code: 'UNAVAILABLE',
          reason: err.status === 429 ? 'too-many-sign-ins' : 'busy',
        }).retrying(err.retryAfter);
      }
    } else if (scheme === 'bearer' && this.opts.jwtSecret) {
      const claims = verifyJwt(m![2]!, this.opts.jwtSecret);
      requireFullScope(claims);
      const tu = tokenUser(claims);
      user =
        (await identity.getUser(tu.opaqueId)) ??
        (tu.username ? await identity.getUser(tu.username) : undefined);
      if (typeof claims.exp === 'number') until = Math.min(until, claims.exp * 1000);
    }
    if (!user && scheme !== 'basic' && !(scheme === 'bearer' && this.opts.jwtSecret))
      throw new StorageError(
        'UNAUTHENTICATED',
        `${this.opts.jwtSecret ? 'Basic and Bearer authentication are' : 'Basic authentication is'} supported here, not ${printable(word)}`,
      );
    if (!user)
      throw new StorageError(
        'UNAUTHENTICATED',
        scheme === 'basic' ? 'wrong user name or password' : 'the token is not valid here',
      );
    const session = await this.opts.provider.as(user, { origin: 'webdav' });
    if (this.auth.size > 1000) this.auth.clear();
    const entry = { user, session, until };
    this.auth.set(key, entry);
    return entry;
  }

  // ---------------------------------------------------------------- routing

  private async dispatch(req: IncomingMessage, res: ServerResponse, rawPath: string): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    if (rawPath === '/status.php') return this.status(req, res);
    const who = await this.authenticate(req);
    if (rawPath.startsWith('/ocs/')) return this.ocs(req, res, rawPath, who.user);
    if (rawPath === '/events') return this.events(req, res, who);
    if (rawPath.startsWith('/remote.php/dav/uploads/')) return this.uploads(req, res, rawPath, who);
    const segs = this.segments(rawPath);
    const dav = segs[0] === 'remote.php' ? 2 : 1;
    if (MetaEndpoints.kind(segs, dav)) return this.meta.handle(req, res, segs, dav, who);
    // `.../dav/spaces/` itself: only the web UIs' search (REPORT) is answered.
    if (method === 'REPORT' && segs.length === dav + 1 && segs[dav] === 'spaces' && segs[dav - 1] === 'dav')
      return this.report(req, res, undefined, who, segs.slice(0, dav));
    const t = await this.targetOf(segs, who);
    if (t.segs.length && rawPath.endsWith('/')) t.collection = true;
    if (CONDITIONAL.has(method)) await this.checkConditions(req, t, method);
    switch (method) {
      case 'OPTIONS':
        return this.options(req, res);
      case 'PROPFIND':
        return this.propfind(req, res, t);
      case 'PROPPATCH':
        return this.proppatch(req, res, t);
      case 'MKCOL':
        return this.mkcol(req, res, t);
      case 'GET':
      case 'HEAD':
        return this.get(req, res, t, method === 'HEAD');
      case 'PUT':
        return this.put(req, res, t);
      case 'DELETE':
        return this.delete(req, res, t);
      case 'COPY':
      case 'MOVE':
        return this.copyMove(req, res, t, method === 'MOVE');
      case 'LOCK':
        return this.lock(req, res, t);
      case 'UNLOCK':
        return this.unlock(req, res, t);
      case 'REPORT':
        return this.report(req, res, t, who, segs[0] === 'dav' ? ['dav'] : ['remote.php', 'dav']);
      case 'POST':
        if (this.opts.tus && header(req, 'tus-resumable')) return this.tusCreate(req, res, t, this.opts.tus);
        throw new HttpError(
          405,
          this.opts.tus
            ? 'POST is only for TUS uploads here (with a Tus-Resumable header)'
            : 'TUS uploads are not offered here (this server has no data plane to finish them on)',
        );
      default:
        throw new HttpError(405, `${method} is not supported here`);
    }
  }

  /** Decode a raw path into segments; `%2f`, `.`, `..` and NUL are refused. */
  private segments(raw: string): string[] {
    const out: string[] = [];
    for (const part of raw.split('/')) {
      if (!part) continue;
      let s: string;
      try {
        s = decodeURIComponent(part);
      } catch {
        throw new HttpError(400, 'malformed percent-encoding in the URL');
      }
      if (s.includes('/') || s.includes('\0') || s === '.' || s === '..') {
        throw new StorageError('INVALID_ARGUMENT', `invalid name in the URL: ${JSON.stringify(s)}`, {
          reason: 'invalid-path',
        });
      }
      out.push(s);
    }
    return out;
  }

  /** Resolve a path under one of our mounts to a space and a path in it. */
  private target(rawPath: string, who: Who): Promise<Target> {
    return this.targetOf(this.segments(rawPath), who);
  }

  private async targetOf(segs: string[], who: Who): Promise<Target> {
    const { session, user } = who;
    const personal = async (baseSegs: string[], rest: string[]) => ({
      session,
      user,
      space: await this.personalSpace(user, session),
      segs: rest,
      base: encodeMountSegments(baseSegs),
    });
    // remote.php/webdav/...
    if (segs[0] === 'remote.php' && segs[1] === 'webdav') return personal(segs.slice(0, 2), segs.slice(2));
    const dav = segs[0] === 'remote.php' ? 2 : 1; // index after ".../dav"
    if ((segs[0] === 'remote.php' && segs[1] === 'dav') || segs[0] === 'dav') {
      const kind = segs[dav];
      const name = segs[dav + 1];
      if (kind === 'files' && name !== undefined) {
        if (name !== user.username && name !== user.id) throw new StorageError('NOT_FOUND', 'not found');
        return personal(segs.slice(0, dav + 2), segs.slice(dav + 2));
      }
      if (kind === 'spaces' && name !== undefined) {
        const id = spaceIdOf(name);
        const node = name.includes('!') ? name.slice(name.indexOf('!') + 1) : undefined;
        let space: Space;
        try {
          space = await session.getSpace(id);
        } catch (err) {
          // A share of a folder: its holder may not see the space root, only the node.
          if (!node || !StorageError.is(err, 'NOT_FOUND')) throw err;
          const storageId = name.includes('$') ? name.slice(0, name.indexOf('$')) : '';
          const at = await session.stat(
            { resourceId: { storageId, spaceId: id, opaqueId: node } },
            { fields: [] },
          );
          space = {
            id,
            storageId: at.id.storageId,
            type: 'project',
            name: at.name,
            alias: '',
            root: { storageId: at.id.storageId, spaceId: id, opaqueId: id },
            used: 0,
            mtime: at.mtime,
            etag: at.etag,
          };
        }
        return {
          session,
          user,
          space,
          segs: segs.slice(dav + 2),
          ...(node && node !== space.id && { nodeId: node }),
          base: encodeMountSegments(segs.slice(0, dav + 2)),
        };
      }
    }
    throw new StorageError('NOT_FOUND', 'not found');
  }

  private personalSpace(user: User, session: Session): Promise<Space> {
    const now = Date.now();
    const hit = this.personalSpaces.get(user.id);
    if (hit && hit.until > now) return hit.space;
    if (this.personalSpaces.size > 1000) this.personalSpaces.clear();
    const space = session.personalSpace();
    space.catch(() => this.personalSpaces.delete(user.id));
    this.personalSpaces.set(user.id, { space, until: now + AUTH_TTL_MS });
    return space;
  }

  private ref(t: Target, segs = t.segs): Reference {
    return targetRef(t, segs);
  }

  private href(t: Target, segs: readonly string[], folder: boolean): string {
    const p = `${t.base}${encodeSegments(segs)}`;
    return folder ? `${p}/` : p;
  }

  // ---------------------------------------------------------------- OPTIONS

  /**
   * The methods a resource allows: of a file, a folder, or (no type: not looked up) any resource.
   * POST creates TUS uploads, in a folder or at a new file's name.
   */
  private allowed(type?: 'file' | 'folder'): string {
    if (type === 'file') return ALLOW_FILE;
    const post = this.opts.tus ? ', POST' : '';
    return `${type === 'folder' ? ALLOW_FOLDER : ALLOW}${post}`;
  }

  private async options(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.writeHead(200, {
      dav: '1, 2, 3',
      'ms-author-via': 'DAV',
      allow: this.allowed(),
      'accept-ranges': 'bytes',
      ...(this.opts.tus && TUS_HEADERS),
      'content-length': '0',
    });
    res.end();
  }

  // ---------------------------------------------------------------- TUS (creation on a folder)

  /**
   * `POST` with `Tus-Resumable` on a folder (the file's name in `Upload-Metadata: filename`) or on
   * the file's own URL: checked like a PUT, then handed to the data plane under a signed upload
   * token; the answer's `Location` is the data plane's, where the client PATCHes the rest.
   */
  private async tusCreate(
    req: IncomingMessage,
    res: ServerResponse,
    t: Target,
    plane: DataPlane,
  ): Promise<void> {
    const meta = parseUploadMetadata(header(req, 'upload-metadata'));
    let target = t;
    const here = await this.peek(t, t.segs);
    if (meta.filename !== undefined) {
      if (here && here.type !== 'folder')
        throw new HttpError(409, 'POST a TUS upload to a folder, with its filename');
      // A name, or a path below the folder (the ownCloud client sends "/sub/file.txt").
      const rel = meta.filename
        .split('/')
        .filter(Boolean)
        .map((p) => this.segments(`/${encodeURIComponent(p)}`)[0]);
      if (!rel.length || rel.some((p) => p === undefined))
        throw new StorageError('INVALID_ARGUMENT', 'invalid filename', { reason: 'invalid-path' });
      target = { ...t, segs: [...t.segs, ...(rel as string[])] };
    } else if (isRoot(t) || here?.type === 'folder') {
      throw new HttpError(400, 'Upload-Metadata needs a filename to upload into a folder');
    }
    const existing = target === t ? here : await this.peek(target, target.segs);
    if (existing?.type === 'folder')
      throw new HttpError(409, 'a folder is there', undefined, {
        code: 'FAILED_PRECONDITION',
        reason: 'is-folder',
      });
    if (!existing && target.segs.length > 1) {
      const parent = await this.peek(target, target.segs.slice(0, -1));
      if (parent?.type !== 'folder')
        throw new HttpError(409, 'the parent folder does not exist', undefined, {
          code: 'FAILED_PRECONDITION',
          reason: 'parent-missing',
        });
    }
    const lockId = await this.checkLocks(req, target, existing, !existing);
    // If-Match and the like are about the file the upload makes or replaces (the ownCloud client
    // sends the etag it last saw): refused now as far as the lookup tells, and checked again by the
    // write under its commit, as for a PUT, so an edit made meanwhile is never replaced unseen.
    const conditions = requestConditions(req);
    checkWriteConditions(conditions, existing);
    // Decided now, not when the last byte is in: may this user write here, and does it fit?
    const size = uploadLength(req);
    if (size === undefined) throw new HttpError(400, 'Upload-Length is required here (no deferred length)');
    const where = existing ? target.segs : target.segs.slice(0, -1);
    const perms = (await target.session.stat(this.ref(target, where), { fields: ['permissions'] }))
      .permissions;
    if (perms && !perms.initiateFileUpload)
      throw new HttpError(403, 'not allowed to upload here', undefined, { code: 'PERMISSION_DENIED' });
    const quota = await target.session.getQuota(this.ref(target, [])).catch(() => undefined);
    if (quota?.available !== undefined && size > quota.available)
      throw new HttpError(507, NO_ROOM, undefined, { code: 'INSUFFICIENT_STORAGE' });
    const mtime = meta.mtime !== undefined ? mtimeHeader(meta.mtime) : undefined;
    // ownCloud clients put the whole file's checksum in the metadata ("SHA1 <hex>").
    const checksums = parseChecksumHeader(meta.checksum);
    const root = formatResourceId({
      storageId: target.space.storageId,
      spaceId: target.space.id,
      opaqueId: target.nodeId ?? target.space.id,
    });
    const { tus } = plane.uploadEndpoints({
      u: target.user.id,
      r: target.segs.length ? `${root}/${target.segs.join('/')}` : root,
      ...(size !== undefined && { size }),
      ...(mtime !== undefined && { mtime }),
      ...(checksums && { checksums }),
      ...(Object.keys(conditions).length && { c: conditions }),
      ...(lockId && { lockId }),
      o: 'webdav',
    });
    // The data plane does the rest: creation, and the first bytes with creation-with-upload.
    req.url = new URL(tus).pathname;
    plane.handle(req, res);
  }

  // ---------------------------------------------------------------- PROPFIND

  private async propfind(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    const depthHeader = (header(req, 'depth') ?? 'infinity').trim().toLowerCase();
    if (!['0', '1', 'infinity'].includes(depthHeader))
      throw new HttpError(400, 'Depth must be 0, 1 or infinity');
    const { mode, wanted, include } = await readPropfind(req, this.bodies);
    const fields = fieldsFor(mode, wanted, include);
    const dead = mode === 'prop' ? wanted.filter((p) => !isLive(p)).flatMap(keysOf) : undefined;
    const statOpts = {
      fields,
      ...(mode !== 'prop' ? { metadataKeys: '*' as const } : dead?.length ? { metadataKeys: dead } : {}),
    };
    const cacheable = this.listings !== undefined && depthHeader === '1';
    const since = this.listings?.mark();
    const info = await t.session.stat(
      this.ref(t),
      depthHeader !== '0' && !fields.includes('permissions')
        ? { ...statOpts, fields: [...fields, 'permissions'] }
        : statOpts,
    );
    folderOnly(t, info);
    // A folder the user may see but not list (an uploader's drop box) answers for itself alone, as
    // if empty: the members are not the user's business, and a client can still upload into it.
    const members =
      info.type === 'folder' && depthHeader !== '0' && info.permissions?.listContainer !== false;
    // (RFC 4918 §16: refused for collections; a file's infinity is the file alone, as is no Depth)
    if (depthHeader === 'infinity' && info.type === 'folder' && !this.opts.allowDepthInfinity)
      throw new HttpError(403, 'Depth: infinity is not allowed here', 'propfind-finite-depth');
    const quota =
      wanted.some(needsQuota) || (mode === 'propname' && info.type === 'folder')
        ? await t.session.getQuota(this.ref(t)).catch(() => undefined)
        : undefined;
    const props = mode === 'allprop' ? withoutRepeats([...ALLPROP, ...include]) : wanted;
    const self = this.href(t, t.segs, info.type === 'folder');
    // Depth-infinity locks of the folders above apply to the resource too (RFC 4918 §6.1), and
    // its lockdiscovery shows them, with their own lockroot.
    const showLocks = props.some((p) => p.ns === DAV && p.local === 'lockdiscovery');
    const above = showLocks ? await this.locksShownAbove(t) : [];
    // (after what was set already: `Origin` for a cross-origin caller)
    const vary = res.getHeader('vary');
    res.writeHead(207, { 'content-type': XML_TYPE, vary: vary ? `${vary}, Brief, Prefer` : 'Brief,Prefer' });
    const head = MULTISTATUS_HEAD + this.response(t, info, self, true, mode, props, quota, above);
    // A folder's children as rendered before, if nothing in its space changed since.
    let fill: Fill | undefined;
    if (cacheable && members && info.permissions) {
      // The user's favorite marks change without a change in the space: a listing that shows them
      // is kept for the marks it was made with (the driver hands back the same object until then).
      const marks = fields.includes('favorite') ? await this.marksStamp(t.user.id, info.id.storageId) : null;
      const key = JSON.stringify([
        info.id.storageId,
        info.id.spaceId,
        info.id.opaqueId,
        self,
        t.user.id,
        t.user.admin ? 'a' : '',
        [...(t.user.groups ?? [])].sort(),
        mode,
        props.map((p) => [p.ns, p.local]),
        quota ? [quota.used, quota.remaining ?? null] : null,
        marks,
      ]);
      const kept = this.listings.get(key, info.etag);
      const body =
        kept && (await this.patchListing(t, key, kept, info.etag, statOpts, mode, props, quota, self));
      if (body) {
        await send(res, head);
        await send(res, body);
        res.end('</d:multistatus>');
        return;
      }
      // Its path in the space (unless the user may not see paths): changes elsewhere leave it.
      const where = info.permissions.getPath ? info.path : undefined;
      fill = this.listings.begin(key, info.id.storageId, info.id.spaceId, info.etag, where, since);
    }
    try {
      // Entries go out in ~64 KiB writes, as they are listed: never the whole folder in memory.
      await send(res, head);
      let buf = '';
      const flush = async () => {
        const chunk = Buffer.from(buf);
        buf = '';
        if (fill) this.listings!.add(fill, chunk);
        await send(res, chunk);
      };
      const write = async (s: string) => {
        buf += s;
        if (buf.length >= 65_536) await flush();
      };
      const validity = { until: Number.POSITIVE_INFINITY };
      if (members) {
        const walk = async (
          ref: Reference,
          segs: string[],
          base: string,
          depth: number,
          inherited: readonly LockShown[],
        ): Promise<void> => {
          // A lock's timeout counts down: a listing that shows one is not kept.
          if (inherited.length && fill) this.listings!.done(fill);
          // (Depth: infinity: subfolders are gone into once this listing is done, so going down
          // holds their names at each level, not an open listing and what it read ahead)
          const folders: { name: string; href: string; below: readonly LockShown[] }[] = [];
          for await (const c of t.session.list(ref, { ...statOpts, validity })) {
            const href = `${base}${encodeName(c.name)}${c.type === 'folder' ? '/' : ''}`;
            // So does one that shows a file with other names (hard links): a change under another
            // name, in another folder, is announced there.
            if ((c.lock || (c.links ?? 1) > 1) && fill) this.listings!.done(fill);
            const r = this.response(t, c, href, false, mode, props, quota, inherited);
            if (fill && depth === 1) this.listings!.entry(fill, c.name, Buffer.byteLength(r));
            await write(r);
            if (depth > 1 && c.type === 'folder')
              folders.push({
                name: c.name,
                href,
                below: showLocks ? [...inherited, ...treeLock(c, href)] : inherited,
              });
          }
          for (const f of folders) {
            const cs = [...segs, f.name];
            await walk(this.ref(t, cs), cs, f.href, depth - 1, f.below);
          }
        };
        await walk(
          this.ref(t),
          t.segs,
          self.endsWith('/') ? self : `${self}/`,
          depthHeader === '1' ? 1 : Number.POSITIVE_INFINITY,
          showLocks ? [...above, ...treeLock(info, self)] : [],
        );
      }
      if (buf) await flush();
      if (fill) this.listings!.done(fill, validity.until);
    } catch (err) {
      if (fill) this.listings!.done(fill);
      throw err;
    }
    res.end('</d:multistatus>');
  }

  private readonly markStamps = new WeakMap<object, number>();
  private lastMarkStamp = 0;

  /** A number for a user's favorite marks in a storage as they are now (null: it keeps none). */
  private async marksStamp(user: string, storageId: string): Promise<number | null> {
    const feature = this.opts.provider.drivers.find((d) => d.storageId === storageId)?.features.favorites;
    if (!feature) return null;
    const marks = await feature.list(user);
    let stamp = this.markStamps.get(marks);
    if (stamp === undefined) {
      stamp = ++this.lastMarkStamp;
      this.markStamps.set(marks, stamp);
    }
    return stamp;
  }

  /**
   * A kept listing's children, with those changed since rendered again from a fresh stat each;
   * undefined when one can no longer be kept (it shows a lock or other names) or its stat failed
   * other than by being gone: the listing is made anew then.
   */
  private async patchListing(
    t: Target,
    key: string,
    kept: Kept,
    etag: string,
    statOpts: StatOptions,
    mode: 'allprop' | 'propname' | 'prop',
    props: readonly PropName[],
    quota: QuotaInfo | undefined,
    self: string,
  ): Promise<readonly Buffer[] | undefined> {
    if (!kept.dirty) return kept.body;
    const base = self.endsWith('/') ? self : `${self}/`;
    const renders = new Map<string, string | null>();
    let until = Number.POSITIVE_INFINITY;
    for (const name of kept.dirty) {
      const validity = { until: Number.POSITIVE_INFINITY };
      let c: ResourceInfo;
      try {
        c = await t.session.stat(this.ref(t, [...t.segs, name]), { ...statOpts, validity });
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND')) return undefined;
        renders.set(name, null);
        until = Math.min(until, validity.until); // hidden by a grant that expires: shown again then
        continue;
      }
      if (c.lock || (c.links ?? 1) > 1 || c.name !== name) return undefined;
      until = Math.min(until, validity.until);
      const href = `${base}${encodeName(c.name)}${c.type === 'folder' ? '/' : ''}`;
      renders.set(name, this.response(t, c, href, false, mode, props, quota));
    }
    return this.listings!.patch(key, kept, renders, etag, until);
  }

  /** One `<d:response>` of a multistatus. */
  private response(
    t: Target,
    info: ResourceInfo,
    href: string,
    isTarget: boolean,
    mode: 'allprop' | 'propname' | 'prop',
    props: readonly PropName[],
    quota?: QuotaInfo,
    /** Depth-infinity locks of the folders above that apply to `info` too. */
    above: readonly LockShown[] = [],
  ): string {
    let out = `<d:response><d:href>${escText(href)}</d:href>`;
    if (mode === 'propname') {
      // The names of the properties this resource has, as allprop would show them, and more.
      const names = PROPNAME.filter((p) => this.liveValue(t, info, href, isTarget, p, quota) !== undefined);
      // (a dead copy of a name that is live now, kept by an older Stowage, is not shown)
      const dead = Object.keys(info.metadata ?? {}).flatMap((k) => {
        const p = propOfKey(k, info.metadata!);
        return p && !isLive(p) ? [p] : [];
      });
      out += `<d:propstat><d:prop>${[...names, ...dead].map((p) => emptyProp(p)).join('')}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>`;
      return `${out}</d:response>`;
    }
    let ok = '';
    let missing = '';
    for (const p of props) {
      const v = this.liveValue(t, info, href, isTarget, p, quota, above);
      if (v !== undefined) ok += v;
      else if (!isLive(p) && info.metadata && deadOf(info.metadata, p) !== undefined)
        ok += deadValue(p, deadOf(info.metadata, p)!);
      else if (mode === 'prop') missing += emptyProp(p);
    }
    if (mode === 'allprop') {
      for (const [k, v] of Object.entries(info.metadata ?? {})) {
        const p = propOfKey(k, info.metadata!);
        if (p && !isLive(p)) ok += deadValue(p, v);
      }
    }
    return `${out}${propstats(ok, missing)}</d:response>`;
  }

  /** A live property's XML, or undefined when it has none for this resource. */
  private liveValue(
    t: Target,
    info: ResourceInfo,
    href: string,
    isTarget: boolean,
    p: PropName,
    quota?: QuotaInfo,
    above: readonly LockShown[] = [],
  ): string | undefined {
    const folder = info.type === 'folder';
    if (p.ns === DAV) {
      switch (p.local) {
        case 'resourcetype':
          return folder ? '<d:resourcetype><d:collection/></d:resourcetype>' : '<d:resourcetype/>';
        case 'getcontentlength':
          return folder ? undefined : `<d:getcontentlength>${info.size}</d:getcontentlength>`;
        case 'getlastmodified':
          return `<d:getlastmodified>${httpDate(info.mtime)}</d:getlastmodified>`;
        case 'creationdate':
          return info.created === undefined
            ? undefined
            : `<d:creationdate>${isoSeconds(info.created)}</d:creationdate>`;
        case 'getetag':
          return `<d:getetag>${escText(quoteEtag(info.etag))}</d:getetag>`;
        case 'getcontenttype':
          return `<d:getcontenttype>${escText(info.mimeType || (folder ? 'httpd/unix-directory' : 'application/octet-stream'))}</d:getcontenttype>`;
        case 'lockdiscovery':
          return `<d:lockdiscovery>${above.map((a) => this.activeLock(a.lock, a.href)).join('')}${info.lock ? this.activeLock(info.lock, href) : ''}</d:lockdiscovery>`;
        case 'supportedlock':
          return '<d:supportedlock><d:lockentry><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockentry><d:lockentry><d:lockscope><d:shared/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockentry></d:supportedlock>';
        case 'quota-used-bytes':
          // A space's root counts what the quota counts (trash and versions too); any other
          // folder its own tree size, however it is asked for.
          return folder && quota && isTarget && info.id.opaqueId === info.id.spaceId
            ? `<d:quota-used-bytes>${quota.used}</d:quota-used-bytes>`
            : folder
              ? `<d:quota-used-bytes>${info.size}</d:quota-used-bytes>`
              : undefined;
        case 'supported-report-set':
          // (RFC 3253 §3.1.5: the reports REPORT answers here)
          return '<d:supported-report-set><d:supported-report><d:report><oc:filter-files/></d:report></d:supported-report><d:supported-report><d:report><oc:search-files/></d:report></d:supported-report></d:supported-report-set>';
        case 'quota-available-bytes':
          // (RFC 4331 §3: required on collections; what can still be written, the quota's rest
          // or the storage's free space, as Reva and Apache report it)
          return folder && quota?.available !== undefined
            ? `<d:quota-available-bytes>${quota.available}</d:quota-available-bytes>`
            : undefined;
      }
      return undefined;
    }
    if (p.ns === OC) {
      switch (p.local) {
        case 'id':
        case 'fileid':
          return `<oc:${p.local}>${escText(formatResourceId(info.id))}</oc:${p.local}>`;
        case 'file-parent':
          return info.parentId
            ? `<oc:file-parent>${escText(formatResourceId(info.parentId))}</oc:file-parent>`
            : undefined;
        case 'permissions':
          return `<oc:permissions>${ocPermissions(info)}</oc:permissions>`;
        case 'checksums': {
          const c = info.checksums;
          if (!c || folder) return undefined;
          const parts = [
            c.sha1 && `SHA1:${c.sha1}`,
            c.md5 && `MD5:${c.md5}`,
            c.adler32 && `ADLER32:${c.adler32}`,
          ].filter(Boolean);
          return `<oc:checksums><oc:checksum>${parts.join(' ')}</oc:checksum></oc:checksums>`;
        }
        case 'size':
          return `<oc:size>${info.size}</oc:size>`;
        case 'data-fingerprint':
          return '<oc:data-fingerprint></oc:data-fingerprint>';
        case 'share-types':
          return '<oc:share-types/>';
        case 'owner-id':
          return t.space.owner
            ? `<oc:owner-id>${esc(t.space.owner.username ?? t.space.owner.id)}</oc:owner-id>`
            : undefined;
        case 'favorite':
          // (the user's own mark; absent where the storage keeps none)
          return info.favorite === undefined
            ? undefined
            : `<oc:favorite>${info.favorite ? 1 : 0}</oc:favorite>`;
        case 'owner-display-name':
          return t.space.owner
            ? `<oc:owner-display-name>${esc(t.space.owner.displayName ?? t.space.owner.username ?? t.space.owner.id)}</oc:owner-display-name>`
            : undefined;
      }
    }
    if (p.ns === ST && p.local === 'mtime') return `<st:mtime>${info.mtime}</st:mtime>`;
    if (p.ns === ST && p.local === 'created')
      return info.created === undefined ? undefined : `<st:created>${info.created}</st:created>`;
    if (p.ns === ST && p.local === 'path') return `<st:path>${escText(info.path)}</st:path>`;
    if (p.ns === ST && ST_USAGE.has(p.local)) {
      // (a space root's, asked of itself: what its quota counts, broken down)
      const n = quota?.usage?.[p.local.slice('usage-'.length) as 'files' | 'trash' | 'versions'];
      return n !== undefined && isTarget && info.id.opaqueId === info.id.spaceId
        ? `<st:${p.local}>${n}</st:${p.local}>`
        : undefined;
    }
    return undefined;
  }

  private activeLock(lock: Lock, href: string, only?: string): string {
    const meta = lockMeta(lock);
    const one = (token: string, owner: string, expires: number | undefined) => {
      const timeout =
        expires === undefined
          ? 'Infinite'
          : `Second-${Math.max(0, Math.round((expires - Date.now()) / 1000))}`;
      return (
        `<d:activelock><d:locktype><d:write/></d:locktype><d:lockscope><d:${lock.type === 'shared' ? 'shared' : 'exclusive'}/></d:lockscope>` +
        `<d:depth>${meta.depth}</d:depth>${owner ? `<d:owner>${ownerXml(owner)}</d:owner>` : ''}` +
        `<d:timeout>${timeout}</d:timeout><d:locktoken><d:href>${esc(token)}</d:href></d:locktoken>` +
        `<d:lockroot><d:href>${esc(href)}</d:href></d:lockroot></d:activelock>`
      );
    };
    const all = [
      { token: lock.lockId, owner: meta.owner, expires: lock.expires },
      ...meta.extra.map((x) => ({ token: x.t, owner: x.o ?? '', expires: x.e })),
    ];
    return all
      .filter((l) => only === undefined || l.token === only)
      .map((l) => one(l.token, l.owner, l.expires))
      .join('');
  }

  // ---------------------------------------------------------------- PROPPATCH

  private async proppatch(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    const doc = parseXml(await readBody(req, this.bodies), header(req, 'content-type'));
    if (doc.ns !== DAV || doc.local !== 'propertyupdate')
      throw new HttpError(400, 'expected a DAV:propertyupdate body');
    const changes = new Map<string, { p: PropName; el?: XmlElement }>();
    const order: PropName[] = [];
    for (const op of doc.children) {
      if (op.ns !== DAV || (op.local !== 'set' && op.local !== 'remove')) continue;
      for (const el of child(op, DAV, 'prop')?.children ?? []) {
        const p = { ns: el.ns, local: el.local };
        const key = deadKey(p);
        if (!changes.has(key)) order.push(p);
        changes.set(key, op.local === 'set' ? { p, el } : { p });
      }
    }
    // (with what an older Stowage kept of these properties, to be replaced by what is set now)
    const legacy = order.filter((p) => !isLive(p)).map(legacyKey);
    const info = await t.session.stat(this.ref(t), {
      fields: changes.has(FAVORITE) ? ['lock', 'checksums', 'favorite'] : ['lock', 'checksums'],
      ...(legacy.length && { metadataKeys: legacy }),
    });
    folderOnly(t, info);
    // A favorite is the user's own mark, not a change of the resource: seeing it is enough, and
    // another user's lock on it does not stand in the way (as in ownCloud).
    // (its If header still counts: RFC 4918 §10.4)
    const onlyFavorite = changes.size === 1 && changes.has(FAVORITE);
    if (onlyFavorite) await this.checkIf(req, t, info);
    const lockId = onlyFavorite ? undefined : await this.checkLocks(req, t, info, false);
    // A file's modification time, set as ownCloud and Nextcloud take it (`DAV:lastmodified`, Unix
    // seconds: rclone's owncloud/nextcloud vendors) and as Windows' WebClient sends it
    // (`Win32LastModifiedTime`, an HTTP date). On a folder, whose time follows what is below it,
    // the first is refused and the second stays a dead property, as before.
    let mtime: number | undefined;
    const timed = new Set<string>();
    // Live properties a client may send as they are: `oc:checksums` with the file's own sums
    // (rclone sends them with the mtime, since servers that store what they are told lost them).
    const agreed = new Set<string>();
    const refused = new Map<string, string>();
    let favorite: boolean | undefined;
    for (const [k, c] of changes) {
      if (k === FAVORITE) {
        agreed.add(k);
        const v = c.el ? favoriteFlag(c.el.text) : false;
        if (info.favorite === undefined)
          refused.set(k, '403 Forbidden'); // (a storage that keeps none)
        else if (v === undefined) refused.set(k, '409 Conflict');
        else favorite = v;
        continue;
      }
      if (c.el && info.type === 'file' && c.p.ns === OC && c.p.local === 'checksums') {
        agreed.add(k);
        if (!checksumsAgree(c.el, info.checksums)) refused.set(k, '409 Conflict');
        continue;
      }
      const how = mtimeProperty(c.p);
      if (!how || !c.el) continue;
      if (info.type === 'folder') {
        if (how === 'seconds') refused.set(k, '409 Conflict');
        continue;
      }
      const at = parseMtimeProperty(how, c.el.text);
      if (at === undefined) refused.set(k, '409 Conflict');
      else {
        mtime = at;
        timed.add(k);
      }
    }
    const protectedProps = order.filter((p) => isLive(p) && !agreed.has(deadKey(p)));
    let status = protectedProps.length || refused.size ? '424 Failed Dependency' : '200 OK';
    if (!protectedProps.length && !refused.size && changes.size) {
      const set: Record<string, string> = {};
      const unset: string[] = [];
      for (const [k, c] of changes) {
        if (agreed.has(k)) continue;
        // Applied to the file: a dead copy kept before (by an older Stowage) would show a stale time.
        if (timed.has(k) || !c.el) unset.push(k);
        else set[k] = storedValue(c.p, c.el);
        if (info.metadata?.[legacyKey(c.p)] !== undefined) unset.push(legacyKey(c.p));
      }
      // All or nothing (RFC 4918 §9.2): the dead properties, then the time, then the mark, each
      // put back when a later one fails (see applyPropertyChange).
      const failed = await applyPropertyChange(
        t.session,
        this.ref(t),
        {
          set,
          unset,
          ...(mtime !== undefined && { mtime }),
          ...(favorite !== undefined && { favorite }),
        },
        { ...(lockId && { lockId }) },
      );
      if (failed) {
        const e = toStorageError(
          failed.error,
          { metadata: 'properties', mtime: 'modification time', favorite: 'favorite' }[failed.part],
        );
        if (failed.part === 'metadata') {
          if (e.code !== 'INVALID_ARGUMENT' && e.reason !== 'metadata-too-large') throw e;
          status = e.reason === 'metadata-too-large' ? '507 Insufficient Storage' : '409 Conflict';
        } else {
          // (a time the filesystem cannot hold, a file not Stowage's to touch; a mark refused)
          const why =
            e.code === 'INVALID_ARGUMENT'
              ? '409 Conflict'
              : (failed.part === 'mtime' && e.reason === 'not-owner') ||
                  (failed.part === 'favorite' &&
                    (e.code === 'PERMISSION_DENIED' || e.code === 'UNIMPLEMENTED'))
                ? '403 Forbidden'
                : undefined;
          if (!why) throw e;
          for (const k of failed.part === 'mtime' ? timed : [FAVORITE]) refused.set(k, why);
          status = '424 Failed Dependency';
        }
      }
    }
    let out = `${MULTISTATUS_HEAD}<d:response><d:href>${esc(this.href(t, t.segs, info.type === 'folder'))}</d:href>`;
    for (const p of order) {
      // A live property is protected: 403 with the precondition that says so (RFC 4918 §9.2.1).
      out += protectedProps.includes(p)
        ? `<d:propstat><d:prop>${emptyProp(p)}</d:prop><d:status>HTTP/1.1 403 Forbidden</d:status><d:error><d:cannot-modify-protected-property/></d:error></d:propstat>`
        : `<d:propstat><d:prop>${emptyProp(p)}</d:prop><d:status>HTTP/1.1 ${refused.get(deadKey(p)) ?? status}</d:status></d:propstat>`;
    }
    out += '</d:response></d:multistatus>';
    res.writeHead(207, { 'content-type': XML_TYPE, 'content-length': String(Buffer.byteLength(out)) });
    res.end(out);
  }

  // ---------------------------------------------------------------- REPORT

  /**
   * REPORT (RFC 3253 §3.6) for the web UIs' "Favorites" views and OpenCloud's search: ownCloud's
   * and Nextcloud's `oc:filter-files` with the `favorite` rule, and `oc:search-files` with a query
   * (kql.ts: names, media types, times, sizes, `scope:`, `is:favorite`; ownCloud's plain pattern is
   * a name). The entries are what matches, with the properties asked for, each as a PROPFIND of it
   * would answer, streamed as they are found, up to `oc:limit`. Sent to a folder, what is below it
   * at any depth; to the root of a personal endpoint (`files/<user>/`, `webdav/`) or to
   * `.../dav/spaces/`, everything the user may see, what is in other spaces with hrefs under
   * `.../dav/spaces/<space>/` (as ownCloud's server lists the whole of a user's tree). Favorites
   * come from the user's marks; anything else from a walk of the tree (no index is kept), where
   * folders the user may not list are passed over. Any other report is refused with 403
   * `DAV:supported-report`; a rule or query this server cannot apply with 400 or 501 rather than
   * answered as if it had been.
   *
   * `t` is undefined for `.../dav/spaces/` itself (`davSegs`: the segments up to `dav`).
   */
  private async report(
    req: IncomingMessage,
    res: ServerResponse,
    t: Target | undefined,
    who: Who,
    davSegs: readonly string[],
  ): Promise<void> {
    const body = await readBody(req, this.bodies);
    // (from here on: a client gone while the search looks up its target is noticed too)
    const signal = abortOnClose(req, res);
    if (!body.toString('utf8').trim()) throw new HttpError(400, 'REPORT needs a body naming the report');
    const doc = parseXml(body, header(req, 'content-type'));
    let favorites = false;
    let query: SearchQuery | undefined;
    let limit = Number.POSITIVE_INFINITY;
    if (doc.ns === OC && doc.local === 'filter-files') {
      const rules = child(doc, OC, 'filter-rules')?.children ?? [];
      // (without a rule it would be every file below: never answered, as in Nextcloud)
      if (!rules.length) throw new HttpError(400, 'oc:filter-files needs oc:filter-rules (oc:favorite)');
      for (const rule of rules) {
        if (rule.ns === OC && rule.local === 'favorite') {
          const v = rule.text.trim() ? favoriteFlag(rule.text) : undefined;
          if (v === undefined) throw new HttpError(400, 'oc:favorite in filter-rules takes 1 or 0');
          favorites ||= v;
          continue;
        }
        throw new HttpError(
          400,
          `the filter rule {${rule.ns}}${rule.local} is not supported here (only oc:favorite)`,
        );
      }
    } else if (doc.ns === OC && doc.local === 'search-files') {
      const search = child(doc, OC, 'search');
      const pattern = child(search ?? doc, OC, 'pattern')?.text.trim() ?? '';
      if (!pattern) throw new HttpError(400, 'oc:search-files needs oc:search/oc:pattern');
      query = parseQuery(pattern);
      favorites = query.favoritesOnly;
      const l = child(search ?? doc, OC, 'limit')?.text.trim();
      if (l && /^\d+$/.test(l) && Number(l) > 0) limit = Number(l);
    } else {
      throw new HttpError(
        403,
        `the report {${doc.ns}}${doc.local} is not supported here (only oc:filter-files and oc:search-files)`,
        'supported-report',
      );
    }
    const prop = child(doc, DAV, 'prop');
    const mode = prop ? 'prop' : 'allprop';
    const props = prop ? withoutRepeats(prop.children.map((c) => ({ ns: c.ns, local: c.local }))) : ALLPROP;
    const shown = fieldsFor(mode, props);
    // (what the query looks at is read too; listFavorites leaves out the mark, a favorite by construction)
    const fields = [...new Set([...shown, ...(query?.fields ?? [])])];
    const dead = [
      ...new Set([...props.filter((p) => !isLive(p)).flatMap(keysOf), ...(query?.metadataKeys ?? [])]),
    ];
    const statOpts: StatOptions = {
      fields,
      ...(mode === 'allprop' ? { metadataKeys: '*' as const } : dead.length ? { metadataKeys: dead } : {}),
    };
    const showLocks = props.some((p) => p.ns === DAV && p.local === 'lockdiscovery');
    const wantsQuota = props.some(needsQuota);
    /** One result as a PROPFIND of it would answer (`at`: where it is, in the mount it is shown in). */
    const render = async (at: Target, f: ResourceInfo): Promise<string> => {
      const href = this.href(at, at.segs, f.type === 'folder');
      const above = showLocks ? await this.locksShownAbove(at) : [];
      const quota = wantsQuota ? await at.session.getQuota(this.ref(at)).catch(() => undefined) : undefined;
      return this.response(at, f, href, false, mode, props, quota, above);
    };

    // Below the target folder, or everywhere (the spaces collection, a personal endpoint's root);
    // `scope:` narrows either to the folder it names.
    let info: ResourceInfo | undefined;
    if (t) {
      info = await t.session.stat(this.ref(t), { fields: ['permissions'] });
      folderOnly(t, info);
    }
    const everywhere = !t || (t.segs.length === 0 && !t.nodeId && PERSONAL_MOUNT.test(t.base));
    let scope: ResourceInfo | undefined;
    if (query?.scope !== undefined) {
      const at = await this.targetOf([...davSegs, 'spaces', query.scope], who).catch((err) =>
        StorageError.is(err, 'INVALID_ARGUMENT')
          ? Promise.reject(new HttpError(400, `scope: ${err.message}`))
          : Promise.reject(err),
      );
      scope = await at.session.stat(this.ref(at), { fields: ['permissions'] });
      folderOnly(at, scope);
    }
    const below = info?.type === 'folder' && info.permissions?.getPath !== false;
    const maxVisits = this.opts.searchMaxVisits ?? MAX_SEARCH_VISITS;
    if (query && !favorites && maxVisits <= 0)
      throw new HttpError(501, 'searching other than is:favorite is turned off here (searchMaxVisits 0)');
    // With a limit of at most MAX_COUNTED_RESULTS, the results are held until the search is done,
    // and the matches past the limit are counted (without rendering them): the answer then says
    // how many there are in all (`Content-Range: rows 0-<n-1>/<total>`, as OpenCloud's web UI
    // reads it; "Found 1,234, showing the 200 best matching"). Without a limit, or with a larger
    // one, results are streamed as they are found, and no total is given.
    // Held results past MAX_HELD_BYTES are sent at once, and the rest streamed, without a total.
    let held: string[] | undefined = limit <= MAX_COUNTED_RESULTS ? [] : undefined;
    let heldBytes = 0;
    /** Send the head, with `range` when given, and what was held; stream from then on. */
    const start = async (range?: string) => {
      res.writeHead(207, { 'content-type': XML_TYPE, ...(range && { 'content-range': range }) });
      await send(res, MULTISTATUS_HEAD);
      const was = held ?? [];
      held = undefined;
      for (const r of was) await send(res, r);
    };
    if (!held) await start();
    /** Held results go out when this passes, and the rest streams (see MAX_HOLD_MS). */
    const holdUntil = Date.now() + MAX_HOLD_MS;
    /** Stop holding once the time for it is up: the results go out, without a total. */
    const inTime = async () => {
      if (held && Date.now() > holdUntil) await start();
    };
    signal.throwIfAborted();
    /** Results sent (or held), and matches found in all (more than `sent` once the limit is met). */
    let sent = 0;
    let matches = 0;
    /** Failures of rendering or sending a result: never taken for a folder that cannot be listed. */
    const failed = new WeakSet<object>();
    const emit = async (at: Target, f: ResourceInfo) => {
      matches++;
      if (sent >= limit) return;
      try {
        const r = await render(at, f);
        if (!held) await send(res, r);
        else {
          held.push(r);
          heldBytes += Buffer.byteLength(r);
          if (heldBytes > MAX_HELD_BYTES) await start();
        }
      } catch (err) {
        if (err && typeof err === 'object') failed.add(err);
        throw err;
      }
      sent++;
    };
    /** Whether the search may stop: the limit is met, and nothing is being counted. */
    const done = () => sent >= limit && !held;
    /** Whether `f` is below `dir` (by path, in the same space). */
    const isBelow = (f: ResourceInfo, dir: ResourceInfo) =>
      sameSpace(f.id, dir.id) && (dir.path === '/' ? f.path !== '/' : f.path.startsWith(`${dir.path}/`));
    const inTarget = (f: ResourceInfo) => !!t && !!info && below && isBelow(f, info);
    // Other spaces: as `.../dav/spaces/<storage>$<space>/<path>`, or the resource's own node
    // when the user may not see the space's root (a share of something inside it).
    const mounts = new Map<string, Promise<Target | undefined>>();
    const mountOf = (id: ResourceId) => {
      const key = `${id.storageId}$${id.spaceId}`;
      let m = mounts.get(key);
      if (!m) {
        m = this.targetOf([...davSegs, 'spaces', key], who).then(
          (x) => (x.nodeId ? undefined : x),
          (err) => (StorageError.is(err, 'NOT_FOUND') ? undefined : Promise.reject(err)),
        );
        mounts.set(key, m);
      }
      return m;
    };
    /** Where a result is shown: below the target when it is there, else in its own space. */
    const place = async (f: ResourceInfo): Promise<Target | undefined> => {
      if (inTarget(f)) {
        const prefix = info!.path === '/' ? '/' : `${info!.path}/`;
        return { ...t!, segs: [...t!.segs, ...f.path.slice(prefix.length).split('/')] };
      }
      if (!everywhere) return undefined;
      const m = await mountOf(f.id);
      if (m) return { ...m, segs: splitPath(f.path) };
      return this.targetOf([...davSegs, 'spaces', `${f.id.storageId}$${f.id.spaceId}!${f.id.opaqueId}`], who)
        .then((x) => ({ ...x, segs: [] }))
        .catch(notFound);
    };

    /** The 507 entry of a walk cut short. */
    let truncated: string | undefined;
    /** Whether the walk stopped before it had counted every match. */
    let uncounted = false;
    if (favorites && (everywhere || below)) {
      const opts = { ...statOpts, signal, ...(!everywhere && t && { space: t.space.id }) };
      for await (const f of who.session.listFavorites(opts)) {
        await inTime();
        if (done()) break;
        if (query && !query.test(f)) continue;
        if (scope && !isBelow(f, scope)) continue;
        const at = await place(f);
        if (at) await emit(at, f);
      }
    } else if (query && !favorites && (everywhere || below)) {
      // No index: the tree is walked (depth first, streamed, as far as the limit), each folder
      // listed as a PROPFIND lists it; folders the user may not list are passed over. A folder's
      // subfolders are gone into once its listing is done: going down holds their names at each
      // level, not an open listing and what it read ahead.
      let visits = 0;
      let cut = false;
      const walk = async (root: Target, segs: string[]): Promise<boolean> => {
        const folders: string[] = [];
        try {
          for await (const c of root.session.list(this.ref(root, segs), { ...statOpts, signal })) {
            if (++visits > maxVisits) {
              cut = true;
              return false;
            }
            await inTime();
            if (done()) return false;
            if (query.test(c)) {
              await emit({ ...root, segs: [...segs, c.name] }, c);
              if (done()) return false;
            }
            if (c.type === 'folder') folders.push(c.name);
          }
        } catch (err) {
          if (
            failed.has(err as object) ||
            !['NOT_FOUND', 'PERMISSION_DENIED', 'FAILED_PRECONDITION'].includes((err as StorageError).code)
          )
            throw err;
        }
        for (const name of folders) if (!(await walk(root, [...segs, name]))) return false;
        return true;
      };
      if (scope) {
        // Within the target (unless that is everywhere): the scope is its folder or below it, or
        // nothing is searched.
        const at =
          info && below && sameSpace(scope.id, info.id) && scope.path === info.path ? t : await place(scope);
        if (at) await walk(at, [...at.segs]);
      } else if (!everywhere) await walk(t!, [...t!.segs]);
      else if (!t || (await walk(t, []))) {
        for await (const sp of who.session.listSpaces({ unrestricted: false })) {
          if (t && sp.id === t.space.id && sp.storageId === t.space.storageId) continue;
          const m = await mountOf(sp.root);
          if (m && !(await walk(m, []))) break;
        }
      }
      // (a walk that met the limit before it was cut gave every result asked for: only the count
      // of the rest was cut short)
      uncounted = cut;
      if (cut && sent < limit) {
        // (RFC 5323 §2.4: results cut short by the server end with the query's scope at 507)
        const href = t ? this.href(t, t.segs, true) : `${encodeMountSegments(davSegs)}/spaces/`;
        truncated = `<d:response><d:href>${esc(href)}</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status><d:error><d:number-of-matches-within-limits/></d:error><d:responsedescription>the search stopped after looking at ${maxVisits} resources; narrow it with scope: or a folder</d:responsedescription></d:response>`;
      }
    }
    // (no total when the walk was cut short: it is not known)
    if (held)
      await start(uncounted ? undefined : sent ? `rows 0-${sent - 1}/${matches}` : `rows */${matches}`);
    if (truncated) await send(res, truncated);
    res.end('</d:multistatus>');
  }

  // ---------------------------------------------------------------- MKCOL

  private async mkcol(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    const length = intHeader(header(req, 'content-length')) ?? 0;
    if (length > 0 || header(req, 'transfer-encoding')) {
      req.resume();
      throw new HttpError(415, 'MKCOL with a body is not supported');
    }
    if (isRoot(t))
      throw new HttpError(405, 'the space root exists', undefined, { code: 'ALREADY_EXISTS' }).allowing(
        this.allowed('folder'),
      );
    const existing = await this.peek(t, t.segs);
    if (existing)
      throw new HttpError(405, 'something is already there', undefined, { code: 'ALREADY_EXISTS' }).allowing(
        this.allowed(existing.type),
      );
    await this.checkLocks(req, t, undefined, true);
    const info = await t.session.mkdir(this.ref(t));
    res.writeHead(201, { ...infoHeaders(info, wantsInfo(req)), 'content-length': '0' });
    res.end();
  }

  // ---------------------------------------------------------------- GET / HEAD

  private async get(req: IncomingMessage, res: ServerResponse, t: Target, head: boolean): Promise<void> {
    // A file is read at once (one lookup, not a stat and then a read by id); a folder is refused
    // by the read, or by its permissions, and then gets its index.
    if (t.collection) {
      const info = await t.session.stat(this.ref(t), { fields: [] });
      folderOnly(t, info);
      return this.index(req, res, t, info, head);
    }
    let r: ReadResult;
    try {
      r = await t.session.read(this.ref(t), readOptions(req, res));
    } catch (err) {
      if (!StorageError.is(err, 'FAILED_PRECONDITION') && !StorageError.is(err, 'PERMISSION_DENIED'))
        throw err;
      const info = await t.session.stat(this.ref(t), { fields: [] });
      if (info.type !== 'folder') throw err;
      // A folder named without its slash: sent to the name with it, as Apache's mod_dir does. A
      // client that takes a 200 here for a page at that name (lftp's `cd` without a slash, then
      // `put`) resolves the names it writes against the parent folder instead.
      const slashed = withSlash(req.url ?? '/');
      if (!slashed) return this.index(req, res, t, info, head);
      res.writeHead(301, { location: slashed, 'cache-control': 'no-cache', 'content-length': '0' });
      return void res.end();
    }
    await sendRead(req, res, r, head);
  }

  /**
   * A folder's GET: a plain HTML index, streamed. Its validators are the folder's: its etag changes
   * with anything below it, its names too; weak, since the page differs by user and by URL.
   */
  private async index(
    req: IncomingMessage,
    res: ServerResponse,
    t: Target,
    info: ResourceInfo,
    head: boolean,
  ): Promise<void> {
    // The first entry is asked for before the status is sent: one who may not list gets a 403.
    const entries = t.session.list(this.ref(t), { fields: [] })[Symbol.asyncIterator]();
    let next = await entries.next();
    const validators = { etag: `W/${quoteEtag(info.etag)}`, 'last-modified': httpDate(info.mtime) };
    const status = evaluateConditions(requestConditions(req), info, 'read');
    if (status !== 200) {
      await entries.return?.(undefined);
      if (status === 412)
        throw new HttpError(412, 'precondition failed (If-Match, If-None-Match or If-Unmodified-Since)');
      res.writeHead(304, validators);
      return void res.end();
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...validators });
    if (head) {
      await entries.return?.(undefined);
      return void res.end();
    }
    const title = esc(`/${t.segs.join('/')}`);
    await send(
      res,
      `<!doctype html><meta charset="utf-8"><title>${title}</title><style>td{padding:0 1em}td+td{text-align:right}</style><h1>${title}</h1><table><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>`,
    );
    if (t.segs.length)
      await send(res, `<tr><td><a href="${esc(this.href(t, t.segs.slice(0, -1), true))}">../</a></td></tr>`);
    const row = (c: ResourceInfo) => {
      const folder = c.type === 'folder';
      const href = this.href(t, [...t.segs, c.name], folder);
      const when = new Date(c.mtime).toISOString().slice(0, 16).replace('T', ' ');
      return `<tr><td><a href="${esc(href)}">${esc(c.name)}${folder ? '/' : ''}</a></td><td>${folder ? '' : c.size}</td><td>${when}</td></tr>`;
    };
    // Folders first, then files, by name as people read them (`a2` before `a10`), for up to
    // INDEX_SORTED entries; a bigger folder is sent as it is listed (never held whole).
    const held: ResourceInfo[] = [];
    let sorted = false;
    try {
      for (; !next.done && held.length < INDEX_SORTED; next = await entries.next()) held.push(next.value);
      sorted = !!next.done;
      if (sorted)
        held.sort(
          (a, b) =>
            Number(b.type === 'folder') - Number(a.type === 'folder') ||
            byName.compare(a.name, b.name) ||
            (a.name < b.name ? -1 : 1),
        );
      for (const c of held) await send(res, row(c));
      for (; !next.done; next = await entries.next()) await send(res, row(next.value));
    } finally {
      // (a client gone half way: the listing lets go of its folder now, not at a garbage collection)
      if (!next.done) await entries.return?.(undefined);
    }
    res.end(
      sorted
        ? '</table>'
        : `</table><p>More than ${INDEX_SORTED.toLocaleString('en')} entries: in the storage's order.</p>`,
    );
  }

  // ---------------------------------------------------------------- PUT

  private async put(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    if (header(req, 'content-range')) {
      req.resume();
      throw new HttpError(400, 'partial PUT (Content-Range) is not supported');
    }
    if (isRoot(t)) {
      req.resume();
      throw new HttpError(405, 'cannot PUT a space root').allowing(this.allowed('folder'));
    }
    const existing = await this.peek(t, t.segs);
    if (existing?.type === 'folder') {
      req.resume();
      throw new HttpError(405, 'a folder is there', undefined, {
        code: 'FAILED_PRECONDITION',
        reason: 'is-folder',
      }).allowing(this.allowed('folder'));
    }
    if (t.collection) {
      req.resume();
      throw new HttpError(
        409,
        'a URL ending in "/" names a folder: PUT a file to its URL without the "/" (MKCOL makes folders)',
        undefined,
        { code: 'FAILED_PRECONDITION', reason: 'not-folder' },
      );
    }
    let lockId: string | undefined;
    try {
      lockId = await this.checkLocks(req, t, existing, !existing);
    } catch (err) {
      req.resume();
      throw err;
    }
    const conditions = requestConditions(req);
    // Refused before the body is read (and before a 100 Continue), as far as the lookup tells;
    // the write checks again under the commit lock.
    checkWriteConditions(conditions, existing);
    const mtime = mtimeHeader(header(req, 'x-oc-mtime'));
    // OC-Checksum as sync clients send it, Digest (RFC 3230) as WLCG tools do: all verified.
    const checksums = mergeChecksums(
      parseChecksumHeader(header(req, 'oc-checksum')),
      parseDigestHeader(header(req, 'digest')),
    );
    const size = intHeader(header(req, 'content-length'));
    const info = await t.session
      .write(this.ref(t), req, {
        ...(size !== undefined && !header(req, 'transfer-encoding') && { size }),
        ...(mtime !== undefined && { mtime }),
        ...(checksums && { checksums }),
        ...(Object.keys(conditions).length && { conditions }),
        ...(lockId && { lockId }),
        signal: abortOnClose(req, res),
      })
      .catch((err) => {
        req.resume();
        throw err;
      });
    sendMadeOrReplaced(res, existing !== undefined, {
      ...infoHeaders(info, wantsInfo(req)),
      ...(mtime !== undefined && { 'x-oc-mtime': 'accepted' }),
    });
  }

  // ---------------------------------------------------------------- DELETE

  private async delete(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    if (isRoot(t)) throw new HttpError(403, 'cannot delete a space root');
    const info = await t.session.stat(this.ref(t), { fields: ['lock'] });
    folderOnly(t, info);
    // RFC 4918 §9.6.1: a collection goes whole (Depth: infinity, or none), never in part.
    const depth = header(req, 'depth')?.trim().toLowerCase();
    if (info.type === 'folder' && depth !== undefined && depth !== 'infinity')
      throw new HttpError(400, 'DELETE of a collection must be Depth: infinity');
    const lockId = await this.checkLocks(req, t, info, true);
    await t.session
      .delete(this.ref(t), { ...(lockId && { lockId }), ...this.heldLocks(req, info) })
      .catch((err) => this.nameLockedMember(err, [t, info]));
    res.writeHead(204);
    res.end();
  }

  // ---------------------------------------------------------------- COPY / MOVE

  private async copyMove(req: IncomingMessage, res: ServerResponse, t: Target, move: boolean): Promise<void> {
    const d = await this.target(this.destinationPath(req), { user: t.user, session: t.session });
    if (isRoot(t)) throw new HttpError(403, `cannot ${move ? 'move' : 'copy'} a space root`);
    if (isRoot(d)) throw new HttpError(403, 'the Destination is a space root');
    const overwrite = overwriteOf(req);
    const depth = (header(req, 'depth') ?? 'infinity').trim().toLowerCase();
    // rclone's owncloud and nextcloud vendors send the source's time along (X-OC-Mtime), and set
    // it by a PROPPATCH afterwards unless told it was taken.
    const mtime = mtimeHeader(header(req, 'x-oc-mtime'));
    const src = await t.session.stat(this.ref(t), { fields: ['lock'] });
    folderOnly(t, src);
    if (move && src.type === 'folder' && depth !== 'infinity')
      throw new HttpError(400, 'MOVE of a collection must be Depth: infinity');
    if (depth !== '0' && depth !== 'infinity') throw new HttpError(400, 'Depth must be 0 or infinity');
    if (JSON.stringify(this.ref(d)) === JSON.stringify(this.ref(t)))
      throw new HttpError(403, 'source and destination are the same', undefined, {
        code: 'INVALID_ARGUMENT',
        reason: 'into-itself',
      });
    const existing = await this.peek(d, d.segs);
    // The source itself or a folder above it, however each is named (by path or by id): replacing
    // it would take the source away first.
    if (existing && contains(existing, src))
      throw new HttpError(403, 'the Destination is the source or a folder that contains it', undefined, {
        code: 'INVALID_ARGUMENT',
        reason: 'into-itself',
      });
    if (existing && !overwrite) throw destinationTaken();
    // The If header is evaluated once, its untagged lists about the source (the Request-URI).
    let srcLock: string | undefined;
    if (move) srcLock = await this.checkLocks(req, t, src, true);
    else await this.checkIf(req, t, src);
    const dstLock = await this.checkLocks(req, d, existing, true, false);
    // One call with the tokens of both ends: a destination is replaced only if the whole
    // operation goes through (no DELETE first that a failing copy would leave done).
    const lockId = move ? srcLock : dstLock;
    const mo = {
      overwrite,
      ...(lockId && { lockId }),
      ...(move && dstLock && { targetLockId: dstLock }),
      ...this.heldLocks(req, move ? src : existing, existing),
    };
    // A Depth: 0 copy of a folder is a new empty folder with the original's properties (RFC 4918
    // §9.8.3, as a file's copy keeps its metadata).
    // A file's time is set where it lands as part of the move or copy (a folder's follows what is
    // below it), unless it has that time already to the second (rclone sends whole seconds: the
    // time below the second stays). One the storage cannot set is left out, and the answer says
    // the time was taken only when the file has it.
    const timing = mtime !== undefined && src.type === 'file';
    const o: MoveOptions = {
      ...mo,
      ...(timing &&
        Math.floor(src.mtime / 1000) !== Math.floor(mtime / 1000) && { mtime, mtimeBestEffort: true }),
    };
    const info = await (move
      ? t.session.move(this.ref(t), this.ref(d), o)
      : t.session.copy(this.ref(t), this.ref(d), { ...o, ...(depth === '0' && { shallow: true }) })
    ).catch((err) => this.nameLockedMember(err, [t, src], [d, existing]));
    const timed = timing && Math.floor(info.mtime / 1000) === Math.floor(mtime / 1000);
    if (move) await this.dropMovedLocks(t, d, info, src.lock, mo.heldLockIds);
    sendMadeOrReplaced(res, existing !== undefined, {
      ...infoHeaders(info, wantsInfo(req)),
      ...(timed && { 'x-oc-mtime': 'accepted' }),
    });
  }

  /**
   * A MOVE does not take WebDAV locks along (RFC 4918 §7.7): the mover's own locks are dropped
   * where the resource landed, on it and on members whose tokens came with the MOVE, as the
   * mover (a lock is its creator's: another user's stays, whoever knows its token). Locks taken
   * through CS3 by an app (an office editor's) stay with the file, as Reva keeps them: the app
   * still edits it under its new name. The move is done by then: a lock changed or gone
   * meanwhile, or a walk that fails, leaves things as they are rather than failing the MOVE.
   */
  private async dropMovedLocks(
    t: Target,
    d: Target,
    moved: ResourceInfo,
    own: Lock | undefined,
    held: readonly string[] | undefined,
  ): Promise<void> {
    const mine = (lock: Lock | undefined): lock is Lock =>
      !!lock && lockMeta(lock).webdav && (!lock.user || lock.user === t.user.id);
    const release = (id: ResourceInfo['id'], lock: Lock) =>
      t.session.unlock({ resourceId: id }, lock.lockId).catch(() => undefined);
    if (mine(own)) await release(moved.id, own);
    // Members' tokens only: not the moved resource's own, nor those of locks above where it was
    // or where it went (a folder moved out of a locked tree with the tree's token is not walked).
    const tokens = new Set(held);
    for (const tok of own ? lockTokens(own) : []) tokens.delete(tok);
    if (moved.type !== 'folder' || !tokens.size) return;
    const stack: Reference[] = [{ resourceId: moved.id }];
    let seen = 0;
    try {
      for (const end of [t, d]) {
        for (const { lock } of await this.guardingLocks(end, undefined, true))
          for (const tok of lockTokens(lock)) tokens.delete(tok);
      }
      if (!tokens.size) return;
      while (stack.length && seen <= MAX_LOCK_WALK) {
        for await (const c of t.session.list(stack.pop()!, { fields: ['lock'] })) {
          if (++seen > MAX_LOCK_WALK) break;
          if (mine(c.lock) && lockTokens(c.lock).some((tok) => tokens.has(tok))) await release(c.id, c.lock);
          if (c.type === 'folder') stack.push({ resourceId: c.id });
        }
      }
    } catch {
      // (see above)
    }
  }

  /**
   * The Destination header as a path on this server: a path, or a URL naming this server's
   * Host. Another host (also as `//host/...`) is 502, as RFC 4918 has it; a URL that cannot be
   * compared with a Host header (HTTP/1.0 without one) is 400.
   */
  private destinationPath(req: IncomingMessage): string {
    let destination = header(req, 'destination')?.trim();
    if (!destination) throw new HttpError(400, 'a Destination header is required');
    // Node reads header bytes as Latin-1: a client that sent UTF-8 unencoded means UTF-8.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: any byte past ASCII
    if (/[^\u0000-\u007f]/.test(destination)) {
      destination = Buffer.from(destination, 'latin1').toString('utf8');
      if (destination.includes('\ufffd')) throw new HttpError(400, 'the Destination is not UTF-8');
    }
    // The path is taken as it was sent and decoded like a request URL's (`.`, `..`, `%2f` and NUL
    // refused there): a URL parser would resolve dot segments, read `\` as `/` and drop tabs.
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(destination)?.[0];
    let raw: string;
    if (scheme !== undefined || destination.startsWith('//')) {
      const rest = destination.slice(scheme?.length ?? 0);
      let u: URL;
      try {
        if (!rest.startsWith('//')) throw new Error('no authority');
        u = new URL(destination, 'http://destination.invalid');
      } catch {
        throw new HttpError(400, 'malformed Destination');
      }
      const host = header(req, 'host');
      if (!host) throw new HttpError(400, 'a Destination URL needs a Host header to be compared with');
      if (!namesOf(req).some((name) => sameServer(u, name)))
        throw new HttpError(502, 'the Destination is on another server');
      // The path starts at the first `/` after the authority (none: the server's root).
      const at = rest.slice(2).search(/[/?#]/);
      raw = at >= 0 && rest[2 + at] === '/' ? rest.slice(2 + at) : '/';
    } else if (destination.startsWith('/')) raw = destination;
    else throw new HttpError(400, 'the Destination must be a URL or an absolute path');
    return raw.split(/[?#]/, 1)[0]!;
  }

  // ---------------------------------------------------------------- locks

  /** The resource at `segs`, or undefined when nothing is there. */
  private peek(t: Target, segs: readonly string[]): Promise<ResourceInfo | undefined> {
    return t.session.stat(this.ref(t, [...segs]), { fields: ['lock'] }).catch(notFound);
  }

  /**
   * If-Match, If-None-Match and If-Unmodified-Since of a method that changes the target (RFC 9110
   * §13.2: evaluated before it is performed), against the target as it is now: 412 when one fails.
   * (PUT checks them against its own lookup before reading the body, and the write again under its
   * commit; GET and HEAD hand them to the read.)
   */
  private async checkConditions(req: IncomingMessage, t: Target, method: string): Promise<void> {
    const c = requestConditions(req);
    if (c.ifMatch === undefined && c.ifNoneMatch === undefined && c.ifUnmodifiedSince === undefined) return;
    const info = await this.peek(t, t.segs);
    // Conditions are ignored where the request would fail without them (RFC 9110 §13.2.1): a
    // missing resource is 404 to all but LOCK and MKCOL, which make one, and those are 409 under a
    // missing folder; MKCOL where something is is 405.
    const makes = method === 'LOCK' || method === 'MKCOL';
    if (!info && !makes) return;
    if (!info && t.segs.length && !(await this.peek(t, t.segs.slice(0, -1)))) return;
    if (info && method === 'MKCOL') return;
    if (evaluateConditions(c, info, 'write') !== 200)
      throw new HttpError(
        412,
        'precondition failed (If-Match, If-None-Match or If-Unmodified-Since)',
        undefined,
        {
          code: 'FAILED_PRECONDITION',
          reason: 'condition',
        },
      );
  }

  /**
   * The lock tokens the If header submits, as the ids of locks inside folders that a DELETE, MOVE
   * or COPY takes along or replaces (RFC 4918 §9.6.1, §9.9.2: a client names each locked member
   * with its token); only when one of `infos` is a folder. A non-shared lock still counts only for
   * its holder (the drivers check).
   */
  private heldLocks(
    req: IncomingMessage,
    ...infos: (ResourceInfo | undefined)[]
  ): { heldLockIds?: string[] } {
    if (!infos.some((i) => i?.type === 'folder')) return {};
    const lists = this.ifLists(req);
    const held = lists ? [...submittedTokens(lists)] : [];
    return held.length ? { heldLockIds: held } : {};
  }

  /**
   * Locks that reach a resource: its own, depth-infinity locks above, and the parent's (any depth)
   * when `membership` changes.
   */
  private async guardingLocks(
    t: Target,
    info: ResourceInfo | undefined,
    membership: boolean,
  ): Promise<{ lock: Lock; segs: string[]; folder: boolean }[]> {
    const guarding: { lock: Lock; segs: string[]; folder: boolean }[] = [];
    if (info?.lock) guarding.push({ lock: info.lock, segs: t.segs, folder: info.type === 'folder' });
    for (const a of await this.locksOnPath(t, membership)) guarding.push({ ...a, folder: true });
    // (named by the node's own href: the folder above may be one the user cannot see)
    for (const lock of await this.locksAboveNode(t, membership && !t.segs.length))
      guarding.push({ lock, segs: [], folder: true });
    return guarding;
  }

  /**
   * The locks of the folders above `t` that its segments name, nearest first, looked up as the
   * user: depth-infinity ones, and with `parent` the parent's of any depth.
   */
  private async locksOnPath(t: Target, parent: boolean): Promise<{ lock: Lock; segs: string[] }[]> {
    const out: { lock: Lock; segs: string[] }[] = [];
    for (let n = t.segs.length - 1; n >= 0; n--) {
      const segs = t.segs.slice(0, n);
      const a = await this.peek(t, segs);
      if (a?.lock && guardsBelow(a.lock, parent && n === t.segs.length - 1)) out.push({ lock: a.lock, segs });
    }
    return out;
  }

  /**
   * The locks on the folders above a target's node (`/dav/spaces/<storage>$<space>!<node>/...`),
   * which its segments do not reach: depth-infinity ones, and with `parent` the node's folder's
   * of any depth. Looked up as the system: they guard the node whether the user sees them or not.
   */
  private async locksAboveNode(t: Target, parent: boolean): Promise<Lock[]> {
    if (!t.nodeId) return [];
    const node = await this.opts.provider
      .stat(
        { resourceId: { storageId: t.space.storageId, spaceId: t.space.id, opaqueId: t.nodeId } },
        { fields: [] },
      )
      .catch(notFound);
    return node ? this.locksAbove(node.id.spaceId, splitPath(node.path), parent) : [];
  }

  /** The locks guarding the node at `segs` of a space from above (see {@link locksAboveNode}). */
  private async locksAbove(spaceId: string, segs: readonly string[], parent: boolean): Promise<Lock[]> {
    const out: Lock[] = [];
    for (let n = segs.length - 1; n >= 0; n--) {
      const a = await this.opts.provider
        .stat({ space: spaceId, path: segs.slice(0, n).join('/') }, { fields: ['lock'] })
        .catch(notFound);
      if (a?.lock && guardsBelow(a.lock, parent && n === segs.length - 1)) out.push(a.lock);
    }
    return out;
  }

  /**
   * The depth-infinity locks of the folders above `t` that its segments name, as its
   * lockdiscovery shows them. (Not those above the node of a share, looked up as the system: the
   * recipient sees neither those folders nor who locked them. They still guard it.)
   */
  private async locksShownAbove(t: Target): Promise<LockShown[]> {
    return (await this.locksOnPath(t, false)).map(({ lock, segs }) => ({
      lock,
      href: this.href(t, segs, true),
    }));
  }

  /** 412 when the If header evaluates false, its untagged lists about `t` (the request's resource). */
  private async checkIf(
    req: IncomingMessage,
    t: Target,
    info: ResourceInfo | undefined,
    guarding?: readonly { lock: Lock }[],
    lists = this.ifLists(req),
  ): Promise<void> {
    if (!lists) return;
    if (!(await this.evaluateIf(req, t, lists, info, guarding ?? (await this.guardingLocks(t, info, false)))))
      throw new HttpError(412, 'the If header does not match');
  }

  /** The parsed If header, or undefined. */
  private ifLists(req: IncomingMessage): IfList[] | undefined {
    const h = header(req, 'if');
    return h ? parseIf(h) : undefined;
  }

  /**
   * Check the `If` header and the locks that guard a change of `t` (`info`: the resource, when it
   * exists; `membership`: the change adds or removes a member of the parent). Locks held by
   * others need their token submitted (423 otherwise); an If header that evaluates false is 412.
   * Returns the token of the resource's own lock, to hand to the provider.
   */
  private async checkLocks(
    req: IncomingMessage,
    t: Target,
    info: ResourceInfo | undefined,
    membership: boolean,
    /**
     * `t` is the request's own resource, which the If header's untagged lists are about (RFC 4918
     * §10.4.4); false for a COPY or MOVE's destination, which only tagged lists name.
     */
    requestUri = true,
  ): Promise<string | undefined> {
    const lists = this.ifLists(req);
    const guarding = await this.guardingLocks(t, info, membership);
    if (requestUri) await this.checkIf(req, t, info, guarding, lists);
    this.requireTokens(t, guarding, lists);
    return info?.lock?.lockId;
  }

  /** 423 naming the first of the `guarding` locks whose token the user did not submit. */
  private requireTokens(
    t: Target,
    guarding: readonly { lock: Lock; segs: string[]; folder: boolean }[],
    lists: IfList[] | undefined,
  ): void {
    const submitted = lists ? submittedTokens(lists) : new Set<string>();
    for (const g of guarding) {
      // A lock token is its creator's (RFC 4918 §6.4), shared lock or not: knowing it is not enough.
      const mine =
        lockTokens(g.lock).some((tok) => submitted.has(tok)) && (!g.lock.user || g.lock.user === t.user.id);
      if (!mine) {
        throw new HttpError(423, 'locked', 'lock-token-submitted', undefined, [
          this.href(t, g.segs, g.folder),
        ]);
      }
    }
  }

  /**
   * Rethrow `err`; a LOCKED one that names a locked member inside one of the folders `ends` (a
   * delete, move or copy takes it along or replaces it) as a 423 whose `lock-token-submitted`
   * lists that member (RFC 4918 §16), when the user may see it (else the folder is named).
   */
  private async nameLockedMember(
    err: unknown,
    ...ends: [Target, ResourceInfo | undefined][]
  ): Promise<never> {
    if (!StorageError.is(err, 'LOCKED') || err.at === undefined) throw err;
    for (const [t, info] of ends) {
      if (info?.type !== 'folder') continue;
      const prefix = info.path === '/' ? '/' : `${info.path}/`;
      if (!err.at.startsWith(prefix)) continue;
      const member = [...t.segs, ...err.at.slice(prefix.length).split('/')];
      const seen = await this.peek(t, member).catch(() => undefined);
      const href = seen ? this.href(t, member, seen.type === 'folder') : this.href(t, t.segs, true);
      throw new HttpError(423, err.message, 'lock-token-submitted', { code: 'LOCKED' }, [href]);
    }
    throw err;
  }

  /**
   * The href of a member below `t` whose lock conflicts with a new depth-infinity lock (any lock
   * for an exclusive one; another user's or an exclusive one for a shared one), if there is one.
   * Walks the tree; a tree of more than {@link MAX_LOCK_WALK} entries is refused.
   */
  private async lockedMember(t: Target, shared: boolean): Promise<string | undefined> {
    // Walked as the system: a lock on a member hidden from the user conflicts all the same (it is
    // then the folder that is named, which tells no more than the refusal itself).
    const stack: string[][] = [t.segs];
    let seen = 0;
    while (stack.length) {
      const segs = stack.pop()!;
      for await (const c of this.opts.provider.list(this.ref(t, segs), { fields: ['lock'] })) {
        if (++seen > MAX_LOCK_WALK)
          throw new HttpError(403, `cannot lock more than ${MAX_LOCK_WALK} resources with Depth: infinity`);
        const folder = c.type === 'folder';
        const l = c.lock;
        if (l && (l.expires === undefined || l.expires > Date.now())) {
          if (!shared || l.type !== 'shared' || (l.user && l.user !== t.user.id)) {
            const member = [...segs, c.name];
            const seenByUser = await this.peek(t, member).catch(() => undefined);
            return seenByUser ? this.href(t, member, folder) : this.href(t, t.segs, true);
          }
        }
        if (folder) stack.push([...segs, c.name]);
      }
    }
    return undefined;
  }

  /** True when some list of the If header holds. */
  private async evaluateIf(
    req: IncomingMessage,
    t: Target,
    lists: readonly IfList[],
    info: ResourceInfo | undefined,
    guarding: readonly { lock: Lock }[],
  ): Promise<boolean> {
    for (const l of lists) {
      let etag = info ? quoteEtag(info.etag) : undefined;
      let tokens = new Set(guarding.flatMap((g) => lockTokens(g.lock)));
      if (l.resource !== undefined) {
        // A tagged list: about the resource it names.
        let path: string;
        try {
          path = new URL(l.resource, `http://${header(req, 'host') ?? 'localhost'}`).pathname;
        } catch {
          continue;
        }
        const other = await this.target(path, { user: t.user, session: t.session }).catch(() => undefined);
        const oi = other && (await this.peek(other, other.segs));
        etag = oi ? quoteEtag(oi.etag) : undefined;
        tokens = new Set(oi?.lock ? lockTokens(oi.lock) : []);
        if (other)
          for (const g of await this.guardingLocks(other, undefined, false))
            for (const tok of lockTokens(g.lock)) tokens.add(tok);
      }
      const holds = l.conditions.every((c) => {
        const v = c.token !== undefined ? tokens.has(c.token) : etag !== undefined && sameEtag(c.etag!, etag);
        return c.not ? !v : v;
      });
      if (holds) return true;
    }
    return false;
  }

  private async lock(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    const body = await readBody(req, this.bodies);
    const seconds = lockSeconds(header(req, 'timeout'));
    const expires = Date.now() + seconds * 1000;
    if (!body.length || !body.toString('utf8').trim()) {
      // A refresh: the If header names the lock.
      const lists = this.ifLists(req);
      if (!lists) throw new HttpError(400, 'a lock refresh needs an If header with the lock token');
      // The header must hold as a whole (RFC 4918 §10.4.1), its untagged lists about the resource.
      await this.checkIf(req, t, await this.peek(t, t.segs), undefined, lists);
      const tokens = submittedTokens(lists);
      for (let n = t.segs.length; n >= 0; n--) {
        const segs = t.segs.slice(0, n);
        const a = await this.peek(t, segs);
        if (!a?.lock || (n !== t.segs.length && lockMeta(a.lock).depth !== 'infinity')) continue;
        const token = lockTokens(a.lock).find((tok) => tokens.has(tok));
        if (!token) continue;
        if (a.lock.user && a.lock.user !== t.user.id) throw new HttpError(403, 'the lock is another user’s');
        const meta = lockMeta(a.lock);
        for (const x of meta.extra) if (x.t === token) x.e = expires;
        const own = token === a.lock.lockId ? expires : (a.lock.expires ?? expires);
        const lock = await t.session.refreshLock(
          this.ref(t, segs),
          { ...a.lock, appName: lockApp(meta), expires: Math.max(own, ...meta.extra.map((x) => x.e)) },
          a.lock.lockId,
        );
        return this.lockAnswer(res, t, lock, segs, a.type === 'folder', 200, token, true);
      }
      throw new HttpError(412, 'no lock of that token applies here', 'lock-token-matches-request-uri');
    }
    const doc = parseXml(body, header(req, 'content-type'));
    if (doc.ns !== DAV || doc.local !== 'lockinfo') throw new HttpError(400, 'expected a DAV:lockinfo body');
    const scope = child(doc, DAV, 'lockscope');
    const shared = !!child(scope, DAV, 'shared');
    if (!shared && !child(scope, DAV, 'exclusive'))
      throw new HttpError(400, 'lockscope must be exclusive or shared');
    if (!child(child(doc, DAV, 'locktype'), DAV, 'write')) throw new HttpError(400, 'only write locks exist');
    const ownerEl = child(doc, DAV, 'owner');
    // Whatever the client put in it, text and markup in order (RFC 4918 §14.17).
    const owner = ownerEl ? serialiseContent(ownerEl.content, ownerEl.lang) : '';
    const depth = (header(req, 'depth') ?? 'infinity').trim().toLowerCase();
    if (depth !== '0' && depth !== 'infinity') throw new HttpError(400, 'a lock has Depth 0 or infinity');
    return this.lockTarget(req, res, t, { shared, owner, depth, expires });
  }

  /** LOCK (not a refresh) of the request's target, once its body is read. */
  private async lockTarget(
    req: IncomingMessage,
    res: ServerResponse,
    t: Target,
    o: { shared: boolean; owner: string; depth: string; expires: number },
    retry = true,
  ): Promise<void> {
    const { shared, owner, depth, expires } = o;
    let info = await this.peek(t, t.segs);
    folderOnly(t, info);
    let status = 200;
    // Locks from above (and the parent's, when the lock makes a file) need their tokens; the
    // resource's own lock does not (shared locks add up), but the If header's lists about the
    // resource see its etag and its lock.
    const lists = this.ifLists(req);
    const above = await this.guardingLocks(t, undefined, !info);
    const own = info?.lock ? [{ lock: info.lock, segs: t.segs, folder: info.type === 'folder' }] : [];
    await this.checkIf(req, t, info, [...own, ...above], lists);
    this.requireTokens(t, above, lists);
    // A lock on a member of a tree locked with Depth: infinity is a second lock on that member
    // (RFC 4918 §6.1): only a shared one of the same user's on top of a shared one.
    for (const g of above) {
      if (lockMeta(g.lock).depth !== 'infinity') continue;
      if (!shared || g.lock.type !== 'shared' || (g.lock.user && g.lock.user !== t.user.id))
        throw new HttpError(423, 'a folder above is locked', 'no-conflicting-lock', undefined, [
          this.href(t, g.segs, g.folder),
        ]);
    }
    if (info?.type === 'folder' && depth === 'infinity') {
      // A lock on a whole tree conflicts with a lock already held on any of its members.
      const member = await this.lockedMember(t, shared);
      if (member)
        throw new HttpError(423, 'a member of the folder is locked', 'no-conflicting-lock', undefined, [
          member,
        ]);
    }
    const token = `opaquelocktoken:${randomUUID()}`;
    if (info?.lock) {
      // Shared locks add up; anything else conflicts.
      if (!shared || info.lock.type !== 'shared' || (info.lock.user && info.lock.user !== t.user.id))
        throw new HttpError(423, 'already locked', 'no-conflicting-lock');
      const meta = lockMeta(info.lock);
      meta.extra.push({ t: token, o: owner, e: expires });
      const lock = await t.session.refreshLock(
        this.ref(t),
        { ...info.lock, appName: lockApp(meta), expires: Math.max(expires, info.lock.expires ?? expires) },
        info.lock.lockId,
      );
      return this.lockAnswer(res, t, lock, t.segs, info.type === 'folder', 200, token);
    }
    if (!info) {
      // A lock on an unmapped URL creates an empty file (RFC 4918 §7.3).
      if (isRoot(t)) throw new HttpError(409, 'no such space root');
      if (t.collection)
        throw new HttpError(
          409,
          'a lock on an unmapped URL makes an empty file: name it without the trailing "/"',
        );
      try {
        // Only if nothing is there still: a file PUT meanwhile is not emptied, it is locked.
        info = await t.session.write(this.ref(t), Buffer.alloc(0), { conditions: { ifNoneMatch: '*' } });
      } catch (err) {
        if (retry && StorageError.is(err, 'FAILED_PRECONDITION') && err.reason === 'condition')
          return this.lockTarget(req, res, t, o, false);
        throw err;
      }
      status = 201;
    }
    const lock: Lock = {
      lockId: token,
      type: shared ? 'shared' : 'exclusive',
      user: t.user.id,
      appName: lockApp({
        depth: info.type === 'folder' && depth === 'infinity' ? 'infinity' : '0',
        owner,
        extra: [],
      }),
      expires,
    };
    const set = await t.session.setLock(this.ref(t), lock);
    return this.lockAnswer(res, t, set, t.segs, info.type === 'folder', status, token);
  }

  private lockAnswer(
    res: ServerResponse,
    t: Target,
    lock: Lock,
    segs: readonly string[],
    folder: boolean,
    status: number,
    token: string,
    /** A refresh: no Lock-Token header, since no lock was made (RFC 4918 §9.10.2). */
    refreshed = false,
  ): void {
    const body = `<?xml version="1.0" encoding="utf-8"?>\n<d:prop xmlns:d="DAV:"><d:lockdiscovery>${this.activeLock(lock, this.href(t, segs, folder), token)}</d:lockdiscovery></d:prop>`;
    res.writeHead(status, {
      'content-type': XML_TYPE,
      ...(!refreshed && { 'lock-token': `<${token}>` }),
      'content-length': String(Buffer.byteLength(body)),
    });
    res.end(body);
  }

  private async unlock(req: IncomingMessage, res: ServerResponse, t: Target): Promise<void> {
    // A Coded-URL (`<token>`), or the bare token some clients send.
    const h = header(req, 'lock-token') ?? '';
    const m = /^\s*<([^<>]+)>\s*$/.exec(h) ?? /^\s*([^<>\s]+)\s*$/.exec(h);
    if (!m) throw new HttpError(400, 'a Lock-Token header (<token>) is required');
    const token = m[1]!;
    // Lock tokens are absolute URIs (opaquelocktoken:…, urn:uuid:…): anything else names no lock.
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(token))
      throw new HttpError(
        400,
        `"${token.slice(0, 80)}" is not a lock token (an absolute URI such as opaquelocktoken:…)`,
      );
    for (let n = t.segs.length; n >= 0; n--) {
      const segs = t.segs.slice(0, n);
      const a = await this.peek(t, segs);
      if (n === t.segs.length) folderOnly(t, a);
      if (!a?.lock || (n !== t.segs.length && lockMeta(a.lock).depth !== 'infinity')) continue;
      if (!lockTokens(a.lock).includes(token)) continue;
      if (a.lock.user && a.lock.user !== t.user.id) throw new HttpError(403, 'the lock is another user’s');
      const meta = lockMeta(a.lock);
      const ref = this.ref(t, segs);
      if (token !== a.lock.lockId) {
        // A further shared lock: drop it from the list.
        meta.extra = meta.extra.filter((x) => x.t !== token);
        await t.session.refreshLock(ref, { ...a.lock, appName: lockApp(meta) }, a.lock.lockId);
      } else {
        const [next, ...rest] = meta.extra;
        if (!next) await t.session.unlock(ref, token);
        else {
          // The first further shared lock takes its place, in the same change (a lock renamed
          // by its holder): never a moment without the lock, which a write could slip into or a
          // stop could leave for good.
          await t.session.refreshLock(
            ref,
            {
              lockId: next.t,
              type: 'shared',
              ...(a.lock.user && { user: a.lock.user }),
              appName: lockApp({ depth: meta.depth, owner: next.o ?? '', extra: rest }),
              expires: Math.max(next.e, ...rest.map((x) => x.e)),
            },
            token,
          );
        }
      }
      res.writeHead(204);
      res.end();
      return;
    }
    throw new HttpError(409, 'no lock of that token applies here', 'lock-token-matches-request-uri');
  }

  // ---------------------------------------------------------------- chunked uploads (chunking NG)

  private async uploads(req: IncomingMessage, res: ServerResponse, rawPath: string, who: Who): Promise<void> {
    const dir = this.opts.uploadsDir;
    if (!dir) throw new StorageError('NOT_FOUND', 'chunked uploads are not offered here');
    const segs = this.segments(rawPath).slice(3); // remote.php dav uploads
    const [owner, transfer, chunk, ...extra] = segs;
    if (!owner || (owner !== who.user.username && owner !== who.user.id))
      throw new StorageError('NOT_FOUND', 'not found');
    if (!transfer || extra.length) throw new StorageError('NOT_FOUND', 'not found');
    if (
      !/^[\w.-]{1,128}$/.test(transfer) ||
      transfer.startsWith('.') ||
      (chunk !== undefined && (!/^[\w.-]{1,64}$/.test(chunk) || (chunk.startsWith('.') && chunk !== '.file')))
    )
      throw new StorageError('INVALID_ARGUMENT', 'invalid transfer or chunk name');
    // One folder per user (hashed: user ids may hold anything), one per transfer.
    const userDir = path.join(dir, createHash('sha256').update(who.user.id).digest('hex').slice(0, 32));
    const folder = path.join(userDir, transfer);
    const method = (req.method ?? '').toUpperCase();
    if (method === 'MKCOL' && chunk === undefined) {
      req.resume();
      // Transfers nobody finished go after a day; a user has at most MAX_TRANSFERS at once.
      const tally = await this.staged.of(userDir);
      const open = await sweepTransfers(userDir, (t) => tally.forget(t));
      if (open.length >= MAX_TRANSFERS && !(await exists(folder))) {
        // Room is made as for TUS uploads: the transfer idle the longest goes, once it has had
        // no chunk for a minute (a client that gave up on it leaves it behind for a day).
        const now = Date.now();
        const idle = open
          .filter((t) => now - t.at > IDLE_BEFORE_DROPPED_MS && !tally.writingTo(t.name))
          .sort((a, b) => a.at - b.at)[0];
        if (!idle)
          throw new HttpError(507, 'too many chunked uploads in progress', undefined, {
            code: 'INSUFFICIENT_STORAGE',
          });
        await this.dropTransfer(userDir, path.join(userDir, idle.name), idle.name, true);
      }
      const total = intHeader(header(req, 'oc-total-length'));
      // A declared total the user's personal quota has no room for is refused before any chunk.
      if (total !== undefined && total > (await this.stagingRoom(who)) - tally.usedAll())
        throw new HttpError(507, 'the upload does not fit the quota', undefined, {
          code: 'INSUFFICIENT_STORAGE',
        });
      await fsp.mkdir(folder, { recursive: true });
      if (total !== undefined) await fsp.writeFile(path.join(folder, '.total'), String(total));
      res.writeHead(201, { 'content-length': '0' });
      return void res.end();
    }
    if (this.assembling.has(folder)) {
      // (rclone waits and asks again; a MOVE it repeats then finds the transfer gone, and takes
      // that 404 for the success it is, as Nextcloud has it)
      req.resume();
      throw new HttpError(423, 'the chunks of this upload are being assembled', undefined, {
        code: 'LOCKED',
      });
    }
    if (method === 'DELETE' && chunk === undefined) {
      // (renamed away first: a chunk PUT still under way cannot put a file into it meanwhile)
      await this.dropTransfer(userDir, folder, transfer, true);
      res.writeHead(204);
      return void res.end();
    }
    if (!(await exists(folder))) {
      req.resume();
      throw new StorageError('NOT_FOUND', 'no such upload');
    }
    if (method === 'PUT' && chunk !== undefined && chunk !== '.file') {
      // The chunks of a transfer may not add up to more than its declared total, or, without
      // one, than the space has room for.
      const declared = Number(
        await fsp.readFile(path.join(folder, '.total'), 'utf8').catch(() => Number.NaN),
      );
      // Staged bytes live outside every space: those of all the user's transfers together are
      // bounded by the personal quota too, as ownCloud counts its uploads folder, whatever totals
      // the client declared.
      const free = await this.stagingRoom(who);
      const room = Number.isFinite(declared) ? declared : Number.POSITIVE_INFINITY;
      // What the user's transfers hold (a running count, not a stat of every chunk), less the
      // chunk this one replaces.
      const tally = await this.staged.of(userDir);
      const dest = path.join(folder, chunk);
      const sizeOf = async () => (await fsp.stat(dest).catch(() => undefined))?.size ?? 0;
      const replaced = await sizeOf();
      const tmp = path.join(folder, `.${chunk}.${randomUUID()}`);
      const fh = await fsp.open(tmp, 'w');
      const w = tally.start(transfer, chunk);
      try {
        for await (const c of req) {
          w.grow((c as Buffer).length);
          const replacing = w.replacing(replaced);
          if (tally.used(transfer) - replacing > room)
            throw new HttpError(413, 'the chunks exceed the upload’s declared total length', undefined, {
              code: 'INVALID_ARGUMENT',
            });
          // (507, as ownCloud and Nextcloud answer it: their clients tell the user the quota is full)
          if (tally.usedAll() - replacing > free)
            throw new HttpError(507, 'the chunks exceed the quota', undefined, {
              code: 'INSUFFICIENT_STORAGE',
            });
          await fh.write(c as Buffer);
        }
        await fh.sync();
        await fh.close();
        // (what it replaces now: another try of the same chunk may have landed meanwhile)
        await w.place(async () => {
          const over = await sizeOf();
          await fsp.rename(tmp, dest);
          return over;
        });
      } catch (err) {
        w.abandon();
        req.resume();
        await fh.close().catch(() => {});
        await fsp.unlink(tmp).catch(() => {});
        throw err;
      }
      await syncFolder(folder);
      res.writeHead(201, { 'content-length': '0' });
      return void res.end();
    }
    if (method === 'MOVE' && chunk === '.file') {
      this.assembling.add(folder);
      try {
        return await this.assemble(req, res, who, folder, userDir, transfer);
      } finally {
        this.assembling.delete(folder);
      }
    }
    if (method === 'PROPFIND' && chunk === undefined) {
      req.resume();
      const names = (await fsp.readdir(folder)).filter((n) => !n.startsWith('.')).sort();
      const base = encodeMountSegments(this.segments(rawPath).slice(0, 5));
      // Entries go out in ~64 KiB writes as they are looked at (a big file has thousands of chunks).
      res.writeHead(207, { 'content-type': XML_TYPE });
      let out = `${MULTISTATUS_HEAD}<d:response><d:href>${esc(base)}/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`;
      for (const n of names) {
        // (gone meanwhile, the transfer finished or cancelled: not shown)
        const st = await fsp.stat(path.join(folder, n)).catch(() => undefined);
        if (!st) continue;
        out += `<d:response><d:href>${esc(`${base}/${encodeURIComponent(n)}`)}</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>${st.size}</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`;
        if (out.length >= 65_536) {
          await send(res, out);
          out = '';
        }
      }
      return void res.end(`${out}</d:multistatus>`);
    }
    req.resume();
    throw new HttpError(405, `${method} is not supported on an upload`);
  }

  /**
   * The MOVE of a chunked upload's `.file`: its chunks, in order, written to the Destination as
   * one file. Refused (400) when the chunks' names tell of one missing or overlapping; the
   * transfer's folder goes at once when the file is written (a rename, then its removal).
   */
  private async assemble(
    req: IncomingMessage,
    res: ServerResponse,
    who: Who,
    folder: string,
    userDir: string,
    transfer: string,
  ): Promise<void> {
    const d = await this.target(this.destinationPath(req), who);
    if (isRoot(d)) throw new HttpError(403, 'the Destination is a space root');
    const mtime = mtimeHeader(header(req, 'x-oc-mtime'));
    // Chunk names are byte offsets (ownCloud), indexes (Nextcloud) or offset ranges (rclone): in
    // numeric order. A missing or overlapping one is told by the names, or by a total that does
    // not add up (OC-Total-Length), and fails.
    const names = chunkOrder((await fsp.readdir(folder)).filter((n) => !n.startsWith('.')));
    // The same MOVE again, after the process stopped during its write or right after it: done if
    // that write landed (the transfer goes), 412 if the file changed to something else since.
    const target = JSON.stringify(this.ref(d));
    const before = await readWriting(folder);
    if (before?.target === target) {
      const landed = await landedBefore(d.session, this.ref(d), before.etag, () => chunksOf(folder, names));
      if (landed) {
        await this.dropTransfer(userDir, folder, transfer);
        return sendMadeOrReplaced(res, before.etag !== null, {
          ...infoHeaders(landed, wantsInfo(req)),
          ...(mtime !== undefined && { 'x-oc-mtime': 'accepted' }),
        });
      }
    }
    const gap = await chunkGap(folder, names);
    if (gap) throw new HttpError(400, gap, undefined, { code: 'INVALID_ARGUMENT', reason: 'size-mismatch' });
    const overwrite = overwriteOf(req);
    const existing = await this.peek(d, d.segs);
    if (existing && !overwrite) throw destinationTaken();
    const lockId = await this.checkLocks(req, d, existing, !existing);
    // The whole length: as the MOVE says, else as the MKCOL declared it (a missing chunk then
    // shows as a body of another length, and fails).
    const total = intHeader(header(req, 'oc-total-length'));
    const declared = intHeader(
      await fsp.readFile(path.join(folder, '.total'), 'utf8').catch(() => undefined),
    );
    if (total !== undefined && declared !== undefined && total !== declared)
      throw new HttpError(400, `OC-Total-Length ${total} is not the ${declared} bytes the upload declared`);
    const size = total ?? declared;
    const checksums = parseChecksumHeader(header(req, 'oc-checksum'));
    // If-Match and the like are about the file the upload makes or replaces (checked by the
    // write, under its commit, as for a PUT). Overwrite: F holds there too, against a file
    // made meanwhile.
    const conditions = requestConditions(req);
    if (!overwrite) conditions.ifNoneMatch = '*';
    // (kept, synced, before the write starts; gone when it fails while the process runs on)
    await keepWriting(folder, { target, etag: existing?.etag ?? null });
    let info: ResourceInfo;
    try {
      info = await d.session.write(this.ref(d), chunksOf(folder, names), {
        upload: { id: transfer },
        ...(size !== undefined && { size }),
        ...(mtime !== undefined && { mtime }),
        ...(checksums && { checksums }),
        ...(Object.keys(conditions).length && { conditions }),
        ...(lockId && { lockId }),
      });
    } catch (err) {
      await fsp.rm(path.join(folder, WRITING), { force: true });
      throw err;
    }
    await this.dropTransfer(userDir, folder, transfer);
    return sendMadeOrReplaced(res, existing !== undefined, {
      ...infoHeaders(info, wantsInfo(req)),
      ...(mtime !== undefined && { 'x-oc-mtime': 'accepted' }),
    });
  }

  /**
   * A chunked transfer's folder goes in one step (a rename): a process killed now leaves the whole
   * transfer or none of it, never a part of its chunks that a MOVE asked again would assemble.
   */
  private async dropTransfer(
    userDir: string,
    folder: string,
    transfer: string,
    /** Whether a transfer gone already (another request dropped it) is fine. */
    goneOk = false,
  ): Promise<void> {
    const gone = path.join(userDir, `.gone-${transfer}-${randomUUID()}`);
    try {
      await fsp.rename(folder, gone);
    } catch (err) {
      if (goneOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    (await this.staged.of(userDir)).forget(transfer);
    await removeGone(gone);
  }

  // ---------------------------------------------------------------- live updates (SSE)

  /**
   * `GET /events`: Server-Sent Events of the changes this user may see, as they happen (a web UI
   * never needs a reload). Each event is checked against the user's grants and trimmed to what the
   * user may see (see {@link asSeenBy}); space events need the space. No history is kept: a
   * client that reconnects gets what happens from then on.
   */
  private async events(req: IncomingMessage, res: ServerResponse, who: Who) {
    req.resume();
    if ((req.method ?? 'GET').toUpperCase() !== 'GET')
      throw new HttpError(405, 'GET /events').allowing('GET');
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write(': stowage events\n\n');
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    ping.unref();
    try {
      for await (const e of this.opts.provider.events.stream({ signal: ac.signal, buffer: 1000 })) {
        const seen = await this.asSeenBy(who, e);
        if (!seen) continue;
        await send(res, `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(seen)}\n\n`);
      }
    } catch {
      // the client went away, or fell too far behind: it reconnects
    } finally {
      clearInterval(ping);
      res.end();
    }
  }

  /**
   * A change as this user may learn of it, or undefined: of a resource in a folder the user may
   * list (also one gone from it, or moved out of it to where the user cannot see), or of one the
   * user may see whose folder the user cannot (a share's root), or of the user's own doing. Not of
   * the members of a drop box, which the uploader may not list, though each may be looked at by an
   * id already known. What the event names beyond that is trimmed as a stat would trim it: without
   * `getPath`, a name without the path above it and no parent; where a move came from and what a
   * copy was made from only when the user may see them.
   */
  private async asSeenBy(who: Who, e: StorageEvent): Promise<StorageEvent | undefined> {
    const s = who.session;
    if (e.type === 'space.deleted') return who.user.admin || e.user === who.user.id ? e : undefined;
    // A favorite mark is its user's business alone.
    if (e.type === 'favorite.changed' && e.user !== who.user.id) return undefined;
    if (e.type.startsWith('space.') || !e.resourceId)
      return (await s.getSpace(e.spaceId).then(
        () => true,
        () => false,
      ))
        ? e
        : undefined;
    const perms = (id: ResourceId | undefined, parentId?: ResourceId) =>
      id
        ? s.stat({ resourceId: id }, { fields: ['permissions', 'parentId'] }).then(
            // (checked where the event says it is: one moved since tells nothing of where it was,
            // which its folder's permissions, or the move's own event, answer for)
            (i) => (!parentId || sameId(i.parentId, parentId) ? i.permissions : undefined),
            () => undefined,
          )
        : Promise.resolve(undefined);
    const own = await perms(e.resourceId, e.parentId);
    const folder = await perms(e.parentId);
    // A resource the user cannot see where the event says it is (a deny on it, or on a folder
    // between) is not shown by its folder's rights: those stand in only for one gone or moved since.
    const hidden =
      !own &&
      (await this.opts.provider.stat({ resourceId: e.resourceId }, { fields: ['parentId'] }).then(
        (i) => !e.parentId || sameId(i.parentId, e.parentId),
        () => false,
      ));
    const here = hidden
      ? undefined
      : folder?.listContainer
        ? (own ?? folder)
        : own && (!folder || e.user === who.user.id)
          ? own
          : undefined;
    const was = e.from ? await perms(e.from.parentId) : undefined;
    const there = was?.listContainer ? was : undefined;
    if (!here && !there) return undefined;
    const out: StorageEvent = { ...e };
    const nameOnly = (p: string) => `/${p.slice(p.lastIndexOf('/') + 1)}`;
    if (!here) {
      delete out.path;
      delete out.parentId;
    } else if (!here.getPath) {
      if (out.path !== undefined) out.path = nameOnly(out.path);
      delete out.parentId;
    }
    if (e.from) {
      if (!there) delete out.from;
      else if (!there.getPath) out.from = e.from.path !== undefined ? { path: nameOnly(e.from.path) } : {};
    }
    if (e.copiedFrom && !(await perms(e.copiedFrom))) delete out.copiedFrom;
    return out;
  }

  // ---------------------------------------------------------------- ownCloud endpoints

  private status(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    json(res, 200, {
      installed: true,
      maintenance: false,
      needsDbUpgrade: false,
      version: '10.13.0.0',
      versionstring: '10.13.0',
      edition: 'Community',
      productname: 'Stowage',
      product: 'Stowage',
    });
  }

  private ocs(req: IncomingMessage, res: ServerResponse, rawPath: string, user: User): void {
    req.resume();
    const m = /^\/ocs\/v([12])\.php\/cloud\/(capabilities|user)\/?$/.exec(rawPath);
    if (!m) throw new StorageError('NOT_FOUND', 'not found');
    const v2 = m[1] === '2';
    const meta = { status: 'ok', statuscode: v2 ? 200 : 100, message: 'OK' };
    const data =
      m[2] === 'capabilities'
        ? {
            version: {
              major: 10,
              minor: 13,
              micro: 0,
              string: '10.13.0',
              edition: 'Community',
              product: 'Stowage',
            },
            capabilities: {
              core: { pollinterval: 60, webdav_root: 'remote.php/webdav', status: { installed: true } },
              dav: {
                ...(this.opts.uploadsDir && { chunking: '1.0' }),
                trashbin: '1.0',
                // (OpenCloud's web UI shows its search bar when told)
                reports: ['search-files'],
              },
              // What REPORT oc:search-files answers (see kql.ts); contents are not indexed. `tag:` is
              // answered but not announced: the web UI's tag filter lists tags through the Graph
              // API, which is not served here.
              search: {
                property: {
                  name: { enabled: true },
                  mtime: { enabled: true, keywords: [...MTIME_KEYWORDS] },
                  mediatype: { enabled: true, keywords: [...MEDIA_TYPE_KEYWORDS] },
                  size: { enabled: true },
                  scope: { enabled: true },
                  content: { enabled: false },
                  tags: { enabled: false },
                },
              },
              files: {
                bigfilechunking: !!this.opts.uploadsDir,
                undelete: true,
                versioning: true,
                // (web UIs show their "Favorites" view only when told)
                favorites: this.opts.provider.drivers.some((d) => d.features.favorites !== undefined),
                ...(this.opts.tus && {
                  tus_support: {
                    version: '1.0.0',
                    resumable: '1.0.0',
                    extension: TUS_HEADERS['tus-extension'],
                    http_method_override: '',
                    // Clients send big files in 10 MB requests (as oCIS asks), each resumable.
                    max_chunk_size: 10_000_000,
                  },
                }),
              },
              checksums: { supportedTypes: ['SHA1', 'MD5', 'ADLER32'], preferredUploadType: 'SHA1' },
            },
          }
        : {
            id: user.username ?? user.id,
            'display-name': user.displayName ?? user.username ?? user.id,
            displayname: user.displayName ?? user.username ?? user.id,
            email: user.email ?? null,
          };
    json(res, 200, { ocs: { meta, data } });
  }
}

/** Chunked uploads one user may have in progress at once. */
const MAX_TRANSFERS = 100;
/** A chunked upload nobody touched for this long is removed. */
const TRANSFER_TTL_MS = 24 * 3600 * 1000;
/** How often every user's chunked transfers are looked at for ones nobody finished. */
const SWEEP_EVERY_MS = 3600 * 1000;

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    () => true,
    () => false,
  );
}

/** Remove a user's stale transfers; returns how many are left. */
async function sweepTransfers(
  userDir: string,
  removed: (transfer: string) => void,
): Promise<{ name: string; at: number }[]> {
  const left: { name: string; at: number }[] = [];
  for (const name of await fsp.readdir(userDir).catch(() => [] as string[])) {
    const p = path.join(userDir, name);
    // (a finished transfer's folder, renamed away, that a process killed did not get to remove)
    if (name.startsWith('.gone-')) {
      await removeGone(p);
      continue;
    }
    const st = await fsp.stat(p).catch(() => undefined);
    if (!st) continue;
    if (Date.now() - st.mtimeMs > TRANSFER_TTL_MS) {
      const gone = path.join(userDir, `.gone-${name}-${randomUUID()}`);
      if (
        await fsp.rename(p, gone).then(
          () => true,
          () => false,
        )
      ) {
        removed(name);
        await removeGone(gone);
      }
    } else left.push({ name, at: st.mtimeMs });
  }
  return left;
}

/**
 * Remove a transfer's folder renamed away. A chunk PUT that had opened its temp file in it before
 * the rename may still be writing there: its file is removed with the rest (it finds its folder
 * gone when it puts the chunk in place); what cannot be removed now goes at a later sweep.
 */
async function removeGone(gone: string): Promise<void> {
  await fsp.rm(gone, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
}

/** The chunks `names` of a transfer's folder, one after the other. */
async function* chunksOf(folder: string, names: readonly string[]): AsyncGenerator<Buffer> {
  for (const n of names) {
    const fh = await fsp.open(path.join(folder, n), 'r');
    try {
      for await (const c of fh.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false }))
        yield c as Buffer;
    } finally {
      await fh.close();
    }
  }
}

/**
 * A chunked transfer's note, kept just before its file is written: the Destination (its reference)
 * and the etag it had then (null: there was none), to tell a MOVE asked again from one made anew.
 */
interface Writing {
  target: string;
  etag: string | null;
}

const WRITING = '.writing';

async function readWriting(folder: string): Promise<Writing | undefined> {
  let raw: string;
  try {
    raw = await fsp.readFile(path.join(folder, WRITING), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const w = JSON.parse(raw) as Writing;
    return typeof w.target === 'string' && (typeof w.etag === 'string' || w.etag === null) ? w : undefined;
  } catch {
    return undefined; // (cut short: its write had not started)
  }
}

/** Keep a transfer's note (written whole and synced before the write it is about starts). */
async function keepWriting(folder: string, w: Writing): Promise<void> {
  await replaceFile(path.join(folder, WRITING), JSON.stringify(w));
}

/** Make a folder's entries durable. */
async function syncFolder(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Why the chunks `names` (in {@link chunkOrder}) do not make one whole file, if their names tell:
 * byte offsets (ownCloud: each where the one before ends, from 0), indexes (Nextcloud: each one
 * more than the one before, from 0 or 1) or offset ranges (rclone: `<first>-<last byte>`, each
 * as long as it says and where the one before ends, from 0). Other names tell nothing.
 */
async function chunkGap(folder: string, names: readonly string[]): Promise<string | undefined> {
  if (!names.length) return 'no chunks were uploaded';
  const numeric = names.every((n) => /^\d{1,20}$/.test(n));
  const ranges = !numeric && names.every((n) => /^\d{1,20}-\d{1,20}$/.test(n));
  if (!numeric && !ranges) return undefined;
  const sizes: number[] = [];
  for (const n of names) sizes.push((await fsp.stat(path.join(folder, n))).size);
  if (numeric) {
    const at = names.map((n) => Number(n));
    const indexes = (at[0] === 0 || at[0] === 1) && at.every((x, i) => i === 0 || x === at[i - 1]! + 1);
    let offsets = true;
    for (let i = 0, next = 0; i < at.length && offsets; next += sizes[i]!, i++) offsets = at[i] === next;
    return indexes || offsets ? undefined : 'a chunk is missing or overlaps another (by their names)';
  }
  for (let i = 0, next = 0; i < names.length; i++) {
    const [first, last] = names[i]!.split('-').map(Number) as [number, number];
    if (first !== next || last - first + 1 !== sizes[i])
      return `chunk ${names[i]} does not follow the one before it, or is not as long as its name says`;
    next = last + 1;
  }
  return undefined;
}

/** Chunk names in the order their bytes go: numerically when they are numbers, else by name. */
function chunkOrder(names: string[]): string[] {
  const first = (n: string) => BigInt(n.split('-')[0]!);
  if (names.every((n) => /^\d{1,20}(-\d{1,20})?$/.test(n)))
    return names.sort((a, b) => (first(a) < first(b) ? -1 : first(a) > first(b) ? 1 : 0));
  return names.sort();
}

const ALLOW = 'OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK, REPORT';
const ALLOW_FILE = 'OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK, REPORT';
const ALLOW_FOLDER = 'OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK, REPORT';

/** What OPTIONS says of TUS when uploads by POST are offered. */
const TUS_HEADERS = {
  'tus-resumable': '1.0.0',
  'tus-version': '1.0.0',
  'tus-extension': 'creation,creation-with-upload,creation-defer-length,termination,checksum,expiration',
};

/** `Upload-Metadata`: comma-separated `key base64value` pairs. */
function parseUploadMetadata(v: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (v ?? '').split(',')) {
    const [k, b64] = part.trim().split(/\s+/);
    if (k) out[k] = b64 ? Buffer.from(b64, 'base64').toString('utf8') : '';
  }
  return out;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(s)),
  });
  res.end(s);
}

/** The request points at the root of a space (not at a node of it). */
function isRoot(t: Target): boolean {
  return !t.segs.length && !t.nodeId;
}

/**
 * A URL ending in `/` names a folder; on a file it names nothing (a path through a file, as
 * ENOTDIR has it, and as Apache answers), so `DELETE file/` or `GET file/` never reach the file.
 */
function folderOnly(t: Target, info: { type: string } | undefined): void {
  if (t.collection && info && info.type !== 'folder')
    throw new HttpError(404, `"${t.segs.at(-1)}" is a file: its URL has no trailing "/"`, undefined, {
      code: 'NOT_FOUND',
      reason: 'not-folder',
    });
}

/**
 * Verdicts on strings checked before (is this well-formed markup of its own?), dropped all at
 * once past 10,000 of them or 8 Mi characters (dead properties may be 64 KiB each).
 */
class Verdicts {
  private readonly seen = new Map<string, boolean>();
  private chars = 0;
  get(key: string): boolean | undefined {
    return this.seen.get(key);
  }
  set(key: string, ok: boolean): void {
    if (this.seen.size >= 10_000 || this.chars + key.length > 8 * 1024 * 1024) {
      this.seen.clear();
      this.chars = 0;
    }
    this.seen.set(key, ok);
    this.chars += key.length;
  }
}

const checkedDead = new Verdicts();
const checkedOwners = new Verdicts();

/**
 * A lock owner's content as kept by LOCK (text and standalone elements), to go inside `<d:owner>`.
 * Any door can set a lock's appName, where the owner is kept: content that is not well-formed on
 * its own inside that element is sent as escaped text, so no owner can forge markup (another
 * response, say) in other users' answers.
 */
function ownerXml(owner: string): string {
  let ok = checkedOwners.get(owner);
  if (ok === undefined) {
    try {
      const el = parseXml(`<d:owner xmlns:d="DAV:">${owner}</d:owner>`);
      ok = el.ns === DAV && el.local === 'owner' && !owner.includes('<?');
    } catch {
      ok = false;
    }
    checkedOwners.set(owner, ok);
  }
  return ok ? owner : esc(owner);
}

/**
 * What PROPPATCH keeps of a dead property: the text of one that holds only text (what other
 * doors read, and what Reva's ocdav keeps), or else the whole element (children, attributes,
 * `xml:lang`), which {@link deadValue} sends back as it is. Text that would be taken for such an
 * element is kept as the element that holds it.
 */
function storedValue(p: PropName, el: XmlElement): string {
  const kept = keptValue(el);
  return holdsTextOnly(el) && isDeadElement(p, kept) ? serialise(el) : kept;
}

/**
 * A dead property's XML: a value that is one element of the property's name (a structured value
 * kept by PROPPATCH) as it is; anything else (text, from any door) as escaped text, so no value
 * can inject markup into other users' answers.
 */
function deadValue(p: PropName, value: string): string {
  if (isDeadElement(p, value)) return value;
  return emptyProp(p).replace(
    /\/>$/,
    `>${esc(value)}</${
      emptyProp(p)
        .slice(1)
        .split(/[\s/>]/)[0]
    }>`,
  );
}

/** {@link isElementOf}, its verdicts kept (the same values are shown again and again). */
function isDeadElement(p: PropName, value: string): boolean {
  if (!value.startsWith('<')) return false;
  const seen = `${legacyKey(p)}\n${value}`;
  let ok = checkedDead.get(seen);
  if (ok === undefined) {
    ok = isElementOf(p, value);
    checkedDead.set(seen, ok);
  }
  return ok;
}

/**
 * The dead property a metadata key names (see {@link propertyOfKey}), or the Clark form
 * `{ns}name` an older Stowage kept, unless `metadata` has the property under its current key too.
 */
function propOfKey(k: string, metadata: Readonly<Record<string, string>>): PropName | undefined {
  if (k.startsWith('{')) {
    const end = k.indexOf('}');
    const p = end > 0 ? { ns: k.slice(1, end), local: k.slice(end + 1) } : undefined;
    if (p && LOCAL_NAME.test(p.local)) return metadata[deadKey(p)] === undefined ? p : undefined;
  }
  return propertyOfKey(k);
}

/** A dead property's value in `metadata`: under its key, or where an older Stowage kept it. */
function deadOf(metadata: Readonly<Record<string, string>>, p: PropName): string | undefined {
  return metadata[deadKey(p)] ?? metadata[legacyKey(p)];
}

/** Fields a PROPFIND needs from the provider. */
function fieldsFor(mode: string, wanted: readonly PropName[], include: readonly PropName[] = []): Field[] {
  if (mode !== 'prop') {
    const all: Field[] = ['mimeType', 'lock', 'checksums', 'permissions', 'parentId'];
    // (the user's favorite mark: named by propname, and by allprop when included)
    const fav = mode === 'propname' || include.some((p) => p.ns === OC && p.local === 'favorite');
    return fav ? [...all, 'favorite'] : all;
  }
  const f = new Set<Field>();
  for (const p of wanted) {
    if (p.ns === DAV && p.local === 'getcontenttype') f.add('mimeType');
    if (p.ns === DAV && p.local === 'lockdiscovery') f.add('lock');
    if (p.ns === OC && p.local === 'checksums') f.add('checksums');
    if (p.ns === OC && p.local === 'permissions') f.add('permissions');
    if (p.ns === OC && p.local === 'file-parent') f.add('parentId');
    if (p.ns === OC && p.local === 'favorite') f.add('favorite');
  }
  return [...f];
}

/** The most a lock's appName holds (the core keeps 256 characters). */
const MAX_LOCK_APP = 256;

/**
 * A lock's appName for its WebDAV facts. An owner too long to fit is left out (the lock still
 * holds); further shared locks that do not fit are refused (423), never cut short.
 */
function lockApp(meta: Omit<LockMeta, 'webdav'>): string {
  const head = `${WEBDAV_LOCK_APP} ${meta.depth === 'infinity' ? 'i' : '0'} `; // (read back by lockMeta)
  const x = meta.extra.map((e) => ({ t: e.t, e: e.e }));
  const full = head + JSON.stringify({ o: meta.owner, ...(x.length && { x }) });
  if (full.length <= MAX_LOCK_APP) return full;
  const bare = head + JSON.stringify({ o: '', ...(x.length && { x }) });
  if (bare.length <= MAX_LOCK_APP) return bare;
  throw new HttpError(423, 'no room for another shared lock on this resource', 'no-conflicting-lock');
}

/** Whether `outer` is `inner` or a folder above it (the same space, by id and path). */
function contains(outer: ResourceInfo, inner: ResourceInfo): boolean {
  if (outer.id.spaceId !== inner.id.spaceId || outer.id.storageId !== inner.id.storageId) return false;
  if (outer.id.opaqueId === inner.id.opaqueId) return true;
  if (outer.type !== 'folder') return false;
  const dir = outer.path.endsWith('/') ? outer.path : `${outer.path}/`;
  return inner.path.startsWith(dir);
}

/** A lock as a lockdiscovery shows it: with the href of the resource it was taken on. */
interface LockShown {
  lock: Lock;
  href: string;
}

/** A folder's own depth-infinity lock, which its members show too. */
function treeLock(info: ResourceInfo, href: string): LockShown[] {
  return info.type === 'folder' && info.lock && lockMeta(info.lock).depth === 'infinity'
    ? [{ lock: info.lock, href }]
    : [];
}

/** Seconds of a `Timeout: Second-N, Infinite` header (capped). */
function lockSeconds(v: string | undefined): number {
  for (const part of (v ?? '').split(',')) {
    const s = part.trim();
    if (/^infinite$/i.test(s)) return MAX_LOCK_SECONDS;
    const m = /^second-(\d+)$/i.exec(s);
    if (m) return Math.max(1, Math.min(MAX_LOCK_SECONDS, Number(m[1])));
  }
  return DEFAULT_LOCK_SECONDS;
}

function sameEtag(a: string, b: string): boolean {
  const strip = (e: string) => e.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
  return strip(a) === strip(b);
}

/** HTTP status of a StorageError, with WebDAV's method-specific answers. */
function statusOf(e: StorageError, method: string): number {
  const byCode: Record<ErrorCode, number> = {
    INVALID_ARGUMENT: e.reason === 'too-large' ? 413 : e.reason === 'into-itself' ? 403 : 400,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    NOT_FOUND: 404,
    ALREADY_EXISTS: method === 'MKCOL' ? 405 : method === 'COPY' || method === 'MOVE' ? 412 : 409,
    // (a source that changed while it was read or copied conflicts with the request; a wrong lock
    // token or condition fails it)
    ABORTED: e.reason === 'changed-while-read' ? 409 : 412,
    FAILED_PRECONDITION:
      e.reason === 'parent-missing' || e.reason === 'not-folder' || e.reason === 'is-folder'
        ? 409
        : e.reason === 'into-itself'
          ? 403
          : e.reason === 'cross-space'
            ? 502
            : 412,
    LOCKED: 423,
    TOO_EARLY: 425,
    CANCELLED: e.reason === 'body-timeout' ? 408 : 400,
    INTERNAL: 500,
    // Another space is another namespace: RFC 4918 §9.8.5 and §9.9.4 answer 502 for it.
    UNIMPLEMENTED: e.reason === 'cross-space' ? 502 : 501,
    UNAVAILABLE: 503,
    INSUFFICIENT_STORAGE: 507,
  };
  if (e.code === 'NOT_FOUND' && e.reason === 'parent-missing') return 409;
  return byCode[e.code];
}

function exceptionName(status: number): string {
  const names: Record<number, string> = {
    400: 'Sabre\\DAV\\Exception\\BadRequest',
    401: 'Sabre\\DAV\\Exception\\NotAuthenticated',
    403: 'Sabre\\DAV\\Exception\\Forbidden',
    404: 'Sabre\\DAV\\Exception\\NotFound',
    405: 'Sabre\\DAV\\Exception\\MethodNotAllowed',
    409: 'Sabre\\DAV\\Exception\\Conflict',
    412: 'Sabre\\DAV\\Exception\\PreconditionFailed',
    415: 'Sabre\\DAV\\Exception\\UnsupportedMediaType',
    423: 'Sabre\\DAV\\Exception\\Locked',
    507: 'Sabre\\DAV\\Exception\\InsufficientStorage',
  };
  return names[status] ?? 'Sabre\\DAV\\Exception';
}

/** Whether two resources are in the same space. */
/**
 * The names a request gave this server: its Host, and those a reverse proxy passed on
 * (`X-Forwarded-Host`, `Forwarded: host=`), which a client's Destination URL names when the proxy
 * gave Stowage its own address as the Host.
 */
function namesOf(req: IncomingMessage): string[] {
  const names = [header(req, 'host') ?? ''];
  for (const v of header(req, 'x-forwarded-host')?.split(',') ?? []) names.push(v);
  for (const m of (header(req, 'forwarded') ?? '').matchAll(/(?:^|[;,])\s*host\s*=\s*("[^"]*"|[^;,\s]*)/gi))
    names.push(m[1]!.replace(/^"|"$/g, ''));
  return names.map((n) => n.trim()).filter(Boolean);
}

/**
 * Whether a Destination URL is on the server a request named `name` (`host[:port]`): the same
 * host name, and the same port unless the name gives none (a proxy that passes on the host name
 * alone, as nginx's `$host` does, tells nothing of the port clients use).
 */
function sameServer(u: URL, name: string): boolean {
  let n: URL;
  try {
    n = new URL(`${u.protocol}//${name}`);
  } catch {
    return false;
  }
  if (n.hostname.toLowerCase() !== u.hostname.toLowerCase()) return false;
  return !/:\d+$/.test(name) || n.port === u.port;
}

/**
 * A request's path with a slash after it, its query kept (a path-absolute reference); undefined
 * when it has one already (a folder addressed by id, say, that the target does not mark as one).
 */
function withSlash(target: string): string | undefined {
  const q = target.indexOf('?');
  const [p, query] = q < 0 ? [target, ''] : [target.slice(0, q), target.slice(q)];
  return p.endsWith('/') ? undefined : `${p}/${query}`;
}

function sameSpace(a: ResourceId, b: ResourceId): boolean {
  return a.spaceId === b.spaceId && a.storageId === b.storageId;
}

/** For a `.catch()`: undefined for NOT_FOUND, anything else rethrown. */
function notFound(err: unknown): undefined {
  if (StorageError.is(err, 'NOT_FOUND')) return undefined;
  throw err;
}

const MS_NS = 'urn:schemas-microsoft-com:';

/** Which property sets a file's mtime, and how its value is written; undefined for the others. */
function mtimeProperty(p: PropName): 'seconds' | 'http-date' | undefined {
  if (p.ns === DAV && p.local === 'lastmodified') return 'seconds';
  if (p.ns === MS_NS && p.local === 'Win32LastModifiedTime') return 'http-date';
  return undefined;
}

/** A modification time (ms) from such a property's text, or undefined when it is not one. */
function parseMtimeProperty(how: 'seconds' | 'http-date', text: string): number | undefined {
  if (how === 'http-date') return parseHttpDate(text);
  try {
    return mtimeHeader(text, 'lastmodified');
  } catch {
    return undefined;
  }
}

/**
 * Does an `oc:checksums` value name only the file's own checksums? Each `ALGO:hex` (in one or
 * several `oc:checksum` elements, read as the `OC-Checksum` header is) must match; at least one.
 */
function checksumsAgree(el: XmlElement, sums: Checksums | undefined): boolean {
  let given: Checksums | undefined;
  try {
    given = parseChecksumHeader((el.children.length ? el.children.map((c) => c.text) : [el.text]).join(' '));
  } catch {
    return false;
  }
  if (!given || !sums) return false;
  const have = sums as Record<string, string | undefined>;
  return Object.entries(given).every(([algo, hex]) => have[algo]?.toLowerCase() === hex);
}
