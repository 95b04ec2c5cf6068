/**
 * The trash and the versions of files over WebDAV, as ownCloud and OpenCloud clients find them
 * (the capabilities announce both):
 *
 * - `/dav/spaces/trash-bin/<space id>/` (also under `/remote.php`), and the personal space's
 *   `/remote.php/dav/trash-bin/<user>/`: PROPFIND lists what was deleted (`Depth: 1`; a deleted
 *   folder's content below its key), MOVE of `<key>` restores it to the Destination, DELETE of
 *   `<key>` removes it for good and DELETE of the trash itself empties it;
 * - `/remote.php/dav/meta/<file id>/v/` (also `/dav/meta/...`): PROPFIND lists a file's previous
 *   contents, GET of `v/<key>` reads one (ranges and conditions as for any GET), COPY of
 *   `v/<key>` makes it current again (the current content becomes a version). PROPFIND of
 *   `meta/<file id>` answers `oc:meta-path-for-user`: where the file is now.
 *
 * Every call goes through the user's session: its grants decide what each user sees and may do.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StorageError } from '../core/errors.js';
import type { User } from '../core/identity.js';
import { mimeTypeOf } from '../core/mime.js';
import { formatResourceId, parseResourceId } from '../core/refs.js';
import type { FileVersion, Lock, RecycleItem, Reference, ResourceInfo, Space } from '../core/types.js';
import { header, infoHeaders, quoteEtag, readOptions, sendRead, wantsInfo } from '../http/common.js';
import {
  destinationTaken,
  emptyProp,
  encodeMountSegments,
  encodeSegments,
  HttpError,
  MULTISTATUS_HEAD,
  overwriteOf,
  type PropfindRequest,
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
  XML_TYPE,
} from './shared.js';
import { type BodyBudget, DAV, esc, NC, OC, ST } from './xml.js';

/** What the trash and versions endpoints need from the rest of the door. */
export interface MetaHost {
  /** Resolve a path under one of the door's mounts (a Destination). */
  target(rawPath: string, who: Who): Promise<Target>;
  /** The user's personal space. */
  personalSpace(user: User, session: Session): Promise<Space>;
  /** The Destination header as a path on this server (502 for another host). */
  destinationPath(req: IncomingMessage): string;
  /** 423/412 unless the locks guarding a change of `t` allow it (see the handler's checkLocks). */
  checkLocks(
    req: IncomingMessage,
    t: Target,
    info: ResourceInfo | undefined,
    membership: boolean,
    /** False when `t` is not the request's resource (a Destination): untagged If lists are not about it. */
    requestUri?: boolean,
  ): Promise<string | undefined>;
  /** 412 unless the If header holds, its untagged lists about a resource `info` with the locks `guarding`. */
  checkIf(
    req: IncomingMessage,
    t: Target,
    info: ResourceInfo | undefined,
    guarding?: readonly { lock: Lock }[],
  ): Promise<void>;
  /** The resource at `t`, or undefined. */
  peek(t: Target): Promise<ResourceInfo | undefined>;
  /** What XML request bodies may take. */
  bodies(): BodyBudget;
}

/** What allprop answers for a trash item. */
const TRASH_ALLPROP: PropName[] = [
  { ns: DAV, local: 'resourcetype' },
  { ns: DAV, local: 'getcontentlength' },
  { ns: DAV, local: 'getlastmodified' },
  { ns: OC, local: 'trashbin-original-filename' },
  { ns: OC, local: 'trashbin-original-location' },
  { ns: OC, local: 'trashbin-delete-datetime' },
  { ns: OC, local: 'trashbin-delete-timestamp' },
];

/** What allprop answers for a version. */
const VERSION_ALLPROP: PropName[] = [
  { ns: DAV, local: 'resourcetype' },
  { ns: DAV, local: 'getcontentlength' },
  { ns: DAV, local: 'getlastmodified' },
  { ns: DAV, local: 'getetag' },
  { ns: DAV, local: 'getcontenttype' },
];

/** One `<d:response>` from the values a resource has (the rest of what was asked: 404). */
function response(
  href: string,
  ask: PropfindRequest,
  all: PropName[],
  value: (p: PropName) => string | undefined,
) {
  const props = ask.mode === 'prop' ? ask.wanted : [...all, ...ask.include];
  let ok = '';
  let missing = '';
  for (const p of props) {
    if (ask.mode === 'propname') {
      if (value(p) !== undefined) ok += emptyProp(p);
      continue;
    }
    const v = value(p);
    if (v !== undefined) ok += v;
    else if (ask.mode === 'prop') missing += emptyProp(p);
  }
  return `<d:response><d:href>${esc(href)}</d:href>${propstats(ok, missing)}</d:response>`;
}

/** A collection's own entry: a collection, and whatever else `extra` knows. */
function collection(href: string, ask: PropfindRequest, extra?: (p: PropName) => string | undefined) {
  return response(href, ask, [{ ns: DAV, local: 'resourcetype' }], (p) =>
    p.ns === DAV && p.local === 'resourcetype'
      ? '<d:resourcetype><d:collection/></d:resourcetype>'
      : extra?.(p),
  );
}

function trashValue(item: RecycleItem, p: PropName): string | undefined {
  const folder = item.type === 'folder';
  const name = item.path.slice(item.path.lastIndexOf('/') + 1);
  const location = item.path.replace(/^\/+/, '');
  const seconds = String(Math.floor(item.deleted / 1000));
  const date = new Date(item.deleted).toUTCString();
  if (p.ns === DAV) {
    switch (p.local) {
      case 'resourcetype':
        return folder ? '<d:resourcetype><d:collection/></d:resourcetype>' : '<d:resourcetype/>';
      case 'getcontentlength':
        return folder ? undefined : `<d:getcontentlength>${item.size}</d:getcontentlength>`;
      case 'getlastmodified':
        return `<d:getlastmodified>${date}</d:getlastmodified>`;
      case 'getcontenttype':
        return `<d:getcontenttype>${esc(folder ? 'httpd/unix-directory' : mimeTypeOf(name))}</d:getcontenttype>`;
      case 'displayname':
        return `<d:displayname>${esc(name)}</d:displayname>`;
    }
  } else if (p.ns === OC) {
    switch (p.local) {
      case 'trashbin-original-filename':
        return `<oc:trashbin-original-filename>${esc(name)}</oc:trashbin-original-filename>`;
      case 'trashbin-original-location':
        return `<oc:trashbin-original-location>${esc(location)}</oc:trashbin-original-location>`;
      case 'trashbin-delete-datetime':
        return `<oc:trashbin-delete-datetime>${date}</oc:trashbin-delete-datetime>`;
      case 'trashbin-delete-timestamp':
        return `<oc:trashbin-delete-timestamp>${seconds}</oc:trashbin-delete-timestamp>`;
      case 'size':
        return `<oc:size>${item.size}</oc:size>`;
      case 'id':
      case 'fileid':
        return `<oc:${p.local}>${esc(formatResourceId(item.id))}</oc:${p.local}>`;
      case 'file-parent':
        return item.parentId
          ? `<oc:file-parent>${esc(formatResourceId(item.parentId))}</oc:file-parent>`
          : undefined;
    }
  } else if (p.ns === ST) {
    // (Stowage's own, exact: the path as it was, and the deletion time in ms)
    if (p.local === 'path') return `<st:path>${esc(item.path)}</st:path>`;
    if (p.local === 'deleted') return `<st:deleted>${item.deleted}</st:deleted>`;
  } else if (p.ns === NC) {
    switch (p.local) {
      case 'trashbin-filename':
        return `<nc:trashbin-filename>${esc(name)}</nc:trashbin-filename>`;
      case 'trashbin-original-location':
        return `<nc:trashbin-original-location>${esc(location)}</nc:trashbin-original-location>`;
      case 'trashbin-deletion-time':
        return `<nc:trashbin-deletion-time>${seconds}</nc:trashbin-deletion-time>`;
    }
  }
  return undefined;
}

function versionValue(v: FileVersion, file: ResourceInfo, p: PropName): string | undefined {
  if (p.ns === DAV) {
    switch (p.local) {
      case 'resourcetype':
        return '<d:resourcetype/>';
      case 'getcontentlength':
        return `<d:getcontentlength>${v.size}</d:getcontentlength>`;
      case 'getlastmodified':
        return `<d:getlastmodified>${new Date(v.mtime).toUTCString()}</d:getlastmodified>`;
      case 'getetag':
        return `<d:getetag>${esc(quoteEtag(v.etag))}</d:getetag>`;
      case 'getcontenttype':
        return `<d:getcontenttype>${esc(file.mimeType || mimeTypeOf(file.name))}</d:getcontenttype>`;
    }
  } else if (p.ns === OC) {
    switch (p.local) {
      case 'size':
        return `<oc:size>${v.size}</oc:size>`;
      case 'checksums': {
        const c = v.checksums;
        if (!c) return undefined;
        const parts = [
          c.sha1 && `SHA1:${c.sha1}`,
          c.md5 && `MD5:${c.md5}`,
          c.adler32 && `ADLER32:${c.adler32}`,
        ];
        return `<oc:checksums><oc:checksum>${parts.filter(Boolean).join(' ')}</oc:checksum></oc:checksums>`;
      }
    }
  } else if (p.ns === ST && p.local === 'mtime') return `<st:mtime>${v.mtime}</st:mtime>`;
  return undefined;
}

/** A trash request's target: the space, the mount's href, and the item key (possibly empty). */
interface TrashTarget {
  session: Session;
  space: Space;
  base: string;
  key: string[];
}

/** The trash and versions endpoints (see the module comment). */
export class MetaEndpoints {
  constructor(
    private readonly host: MetaHost,
    private readonly allowDepthInfinity: () => boolean,
  ) {}

  /**
   * The part of a path after `.../dav/` that is ours: `spaces/trash-bin/...`, `trash-bin/...` or
   * `meta/...`. Undefined for anything else.
   */
  static kind(segs: readonly string[], dav: number): 'trash' | 'meta' | undefined {
    if (segs[dav] === 'spaces' && segs[dav + 1] === 'trash-bin') return 'trash';
    if (segs[dav] === 'trash-bin') return 'trash';
    if (segs[dav] === 'meta') return 'meta';
    return undefined;
  }

  /** Answer a request under `.../dav/` (`dav`: index of the segment after it). */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    segs: string[],
    dav: number,
    who: Who,
  ): Promise<void> {
    return MetaEndpoints.kind(segs, dav) === 'trash'
      ? this.trash(req, res, await this.trashTarget(segs, dav, who), who)
      : this.meta(req, res, segs, dav, who);
  }

  // ---------------------------------------------------------------- trash

  private async trashTarget(segs: string[], dav: number, who: Who): Promise<TrashTarget> {
    if (segs[dav] === 'spaces') {
      const name = segs[dav + 2];
      if (name === undefined) throw new HttpError(405, 'name a space: .../spaces/trash-bin/<space id>/');
      const id = spaceIdOf(name);
      const space = await who.session.getSpace(id);
      return {
        session: who.session,
        space,
        base: encodeSegments(segs.slice(0, dav + 3)),
        key: segs.slice(dav + 3),
      };
    }
    const name = segs[dav + 1];
    if (name === undefined) throw new HttpError(405, 'name a user: .../trash-bin/<user>/');
    if (name !== who.user.username && name !== who.user.id) throw new StorageError('NOT_FOUND', 'not found');
    const space = await this.host.personalSpace(who.user, who.session);
    return {
      session: who.session,
      space,
      base: encodeMountSegments(segs.slice(0, dav + 2)),
      key: segs.slice(dav + 2),
    };
  }

  private itemHref(t: TrashTarget, item: RecycleItem): string {
    return `${t.base}${encodeSegments(item.key.split('/'))}${item.type === 'folder' ? '/' : ''}`;
  }

  private async trash(req: IncomingMessage, res: ServerResponse, t: TrashTarget, who: Who): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const key = t.key.join('/');
    switch (method) {
      case 'OPTIONS':
        req.resume();
        res.writeHead(200, { allow: 'OPTIONS, PROPFIND, MOVE, DELETE', dav: '1, 3', 'content-length': '0' });
        return void res.end();
      case 'PROPFIND':
        return this.listTrash(req, res, t, key);
      case 'MOVE':
        req.resume();
        if (!key)
          throw new HttpError(403, 'the trash itself cannot be moved; MOVE one of its items to restore it');
        return this.restore(req, res, t, key, who);
      case 'DELETE':
        req.resume();
        await t.session.purgeTrash(t.space.id, key || undefined);
        res.writeHead(204);
        return void res.end();
      default:
        req.resume();
        throw new HttpError(
          405,
          `${method} is not supported in the trash (PROPFIND, MOVE to restore, DELETE)`,
        );
    }
  }

  private async listTrash(
    req: IncomingMessage,
    res: ServerResponse,
    t: TrashTarget,
    key: string,
  ): Promise<void> {
    const depth = this.depth(req);
    const ask = await readPropfind(req, this.host.bodies());
    // Look before answering 207, so a missing item or space is a plain 404.
    const item = key ? await t.session.statTrash(t.space.id, key) : undefined;
    const items =
      depth !== '0' && (!item || item.type === 'folder')
        ? t.session.listTrash(t.space.id, key ? { key } : undefined)[Symbol.asyncIterator]()
        : undefined;
    const first = await items?.next();
    res.writeHead(207, { 'content-type': XML_TYPE });
    res.write(
      MULTISTATUS_HEAD +
        (item
          ? response(this.itemHref(t, item), ask, TRASH_ALLPROP, (p) => trashValue(item, p))
          : collection(`${t.base}/`, ask)),
    );
    let next = first;
    try {
      for (; next && !next.done; next = await items!.next()) {
        const it = next.value;
        await send(
          res,
          response(this.itemHref(t, it), ask, TRASH_ALLPROP, (p) => trashValue(it, p)),
        );
      }
    } finally {
      // (a client gone half way: the listing ends now)
      if (next && !next.done) await items!.return?.(undefined);
    }
    res.end('</d:multistatus>');
  }

  private async restore(req: IncomingMessage, res: ServerResponse, t: TrashTarget, key: string, who: Who) {
    const item = await t.session.statTrash(t.space.id, key);
    const d = await this.host.target(this.host.destinationPath(req), who);
    if (d.space.id !== t.space.id)
      throw new HttpError(502, 'a trash item is restored into its own space', undefined, {
        code: 'UNIMPLEMENTED',
        reason: 'cross-space',
      });
    if (!d.segs.length && !d.nodeId) throw new HttpError(403, 'the Destination is a space root');
    const overwrite = overwriteOf(req);
    const existing = await this.host.peek(d);
    if (existing && !overwrite) throw destinationTaken();
    // The If header's untagged lists are about the request's resource, the trash item, which has
    // no etag and no lock (RFC 4918 §10.4.4); the Destination's locks need their tokens submitted,
    // and tagged lists may name it.
    await this.host.checkIf(req, d, undefined, []);
    const lockId = await this.host.checkLocks(req, d, existing, true, false);
    const original = `/${d.segs.join('/')}` === item.path && !d.nodeId;
    // Put back where it was: no target, so restoring needs no right to move it elsewhere. What is
    // in the way goes to the trash itself, as a DELETE would send it, once the restore may go on.
    const info = await t.session.restoreTrash(t.space.id, key, {
      ...(!original && { target: targetRef(d) }),
      ...(existing && { overwrite: true }),
      ...(lockId && { lockId }),
    });
    sendMadeOrReplaced(res, existing !== undefined, infoHeaders(info, wantsInfo(req)));
  }

  // ---------------------------------------------------------------- versions

  private async meta(req: IncomingMessage, res: ServerResponse, segs: string[], dav: number, who: Who) {
    const method = (req.method ?? 'GET').toUpperCase();
    const idText = segs[dav + 1];
    const rest = segs.slice(dav + 2);
    if (idText === undefined || (rest.length && rest[0] !== 'v') || rest.length > 2) {
      req.resume();
      throw new StorageError('NOT_FOUND', 'not found: versions are at .../meta/<file id>/v/');
    }
    let fileRef: Reference;
    try {
      fileRef = { resourceId: parseResourceId(idText) };
    } catch {
      req.resume();
      throw new HttpError(400, 'malformed file id');
    }
    const base = encodeMountSegments(segs.slice(0, dav + 2));
    const key = rest[1];
    if (key !== undefined && (method === 'GET' || method === 'HEAD')) {
      const r = await who.session.readVersion(fileRef, key, readOptions(req, res));
      return sendRead(req, res, r, method === 'HEAD');
    }
    if (key !== undefined && method === 'COPY') {
      req.resume();
      const file = await who.session.stat(fileRef, { fields: ['lock'] });
      // The file's own lock guards it (its token must come in the If header); the folders above
      // it are not looked at, since a file reached by id may sit where its user sees no path.
      const lockId = await this.host.checkLocks(req, fileTarget(who, file), file, false);
      const info = await who.session.restoreVersion(fileRef, key, lockId ? { lockId } : {});
      res.writeHead(204, infoHeaders(info, wantsInfo(req)));
      return void res.end();
    }
    if (method === 'OPTIONS') {
      req.resume();
      res.writeHead(200, { allow: 'OPTIONS, PROPFIND, GET, HEAD, COPY', dav: '1, 3', 'content-length': '0' });
      return void res.end();
    }
    if (method !== 'PROPFIND') {
      req.resume();
      throw new HttpError(405, `${method} is not supported here (PROPFIND; GET or COPY of a version)`);
    }
    const depth = this.depth(req);
    const ask = await readPropfind(req, this.host.bodies());
    const file = await who.session.stat(fileRef, { fields: ['mimeType'] });
    if (file.type !== 'file') throw new StorageError('NOT_FOUND', 'only files have versions');
    const versions = rest.length === 0 && depth === '0' ? [] : await who.session.listVersions(fileRef);
    const pick = key !== undefined ? versions.filter((v) => v.key === key) : versions;
    if (key !== undefined && !pick.length) throw new StorageError('NOT_FOUND', 'no such version');
    res.writeHead(207, { 'content-type': XML_TYPE });
    let out = MULTISTATUS_HEAD;
    const fileProps = (p: PropName) => {
      if (p.ns !== OC) return undefined;
      if (p.local === 'meta-path-for-user')
        return `<oc:meta-path-for-user>${esc(file.path)}</oc:meta-path-for-user>`;
      if (p.local === 'id' || p.local === 'fileid')
        return `<oc:${p.local}>${esc(formatResourceId(file.id))}</oc:${p.local}>`;
      return undefined;
    };
    const one = (v: FileVersion) =>
      response(`${base}/v/${encodeSegments([v.key]).slice(1)}`, ask, VERSION_ALLPROP, (p) =>
        versionValue(v, file, p),
      );
    if (rest.length === 0) {
      out += collection(`${base}/`, ask, fileProps);
      if (depth !== '0') out += collection(`${base}/v/`, ask);
    } else if (key === undefined) {
      out += collection(`${base}/v/`, ask);
      if (depth !== '0') for (const v of pick) out += one(v);
    } else out += one(pick[0]!);
    res.end(`${out}</d:multistatus>`);
  }

  private depth(req: IncomingMessage): '0' | '1' | 'infinity' {
    const d = (header(req, 'depth') ?? 'infinity').trim().toLowerCase();
    if (d !== '0' && d !== '1' && d !== 'infinity')
      throw new HttpError(400, 'Depth must be 0, 1 or infinity');
    if (d === 'infinity' && !this.allowDepthInfinity()) {
      req.resume();
      throw new HttpError(403, 'Depth: infinity is not allowed here', 'propfind-finite-depth');
    }
    // A trash or a version list has no deeper levels than its items.
    return d === 'infinity' ? '1' : d;
  }
}

/** A file reached by id as a lock check's target: the node itself, no path above it. */
function fileTarget(who: Who, file: ResourceInfo): Target {
  return {
    session: who.session,
    user: who.user,
    space: { id: file.id.spaceId, storageId: file.id.storageId } as Space,
    nodeId: file.id.opaqueId,
    segs: [],
    base: '',
  };
}
