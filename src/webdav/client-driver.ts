/**
 * A {@link Driver} over WebDAV: Stowage's WebDAV door (or any server speaking its dialect) as a
 * storage. Resources are addressed under `/dav/spaces/<storage>$<space>[!<node>]/...`; PROPFIND
 * answers are parsed as they stream in.
 *
 * It is how the shared conformance suite runs through the WebDAV door, and a client for apps
 * that talk to a remote Stowage over HTTP. Capabilities: `copy`, `metadata` (dead properties:
 * keys name them as `<namespace>/<name>`, see {@link propertyKey}), `mtime`, `trash` (the
 * `.../dav/spaces/trash-bin/<space>/` endpoint) and `versions` (`.../dav/meta/<file id>/v/`).
 * Spaces are found by id ({@link Driver.getSpace}), with their usage from the root's quota
 * properties; creating them, grants and locks are not WebDAV's.
 *
 * @module
 */
import type http from 'node:http';
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { bodyChunks } from '../core/body.js';
import type { Body, Driver, Features, MutationOptions } from '../core/driver.js';
import { folderTimeRefused, StorageError } from '../core/errors.js';
import { formatResourceId, parseResourceId } from '../core/refs.js';
import type {
  Checksums,
  FileVersion,
  ListOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  RecycleItem,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  WriteOptions,
} from '../core/types.js';
import {
  type Agents,
  bodyHead,
  conditionHeaders,
  exactly,
  httpRequest,
  ifRangeValue,
  infoFrom,
  keepAliveAgents,
  readResultOf,
} from '../http/client.js';
import { isElementOf, keptValue, type PropertyName, propertyKey, propertyOfKey } from './properties.js';
import { DAV, esc, OC, ST, XML_NS, type XmlElement } from './xml.js';

/** Options of {@link createWebDavClientDriver}. */
export interface WebDavClientDriverOptions {
  /** The server, e.g. `http://127.0.0.1:8080` (the door's paths are appended). */
  url: string;
  /** HTTP Basic credentials... */
  username?: string;
  password?: string;
  /** ...or a Bearer token (the CS3 door's access token). */
  token?: string;
  /** The storage id of the spaces; asked from the first space looked up when absent. */
  storageId?: string;
}

const PROPFIND_HEAD =
  '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:st="urn:stowage">';
/** A PROPFIND body asking for `props` (with the d:, oc: and st: prefixes declared). */
const propfindBody = (props: string) => `${PROPFIND_HEAD}<d:prop>${props}</d:prop></d:propfind>`;
/** What a resource says of itself. */
const INFO_PROPS =
  '<d:resourcetype/><d:getcontentlength/><d:getetag/><d:getcontenttype/><oc:id/><oc:file-parent/><oc:size/><oc:checksums/><st:mtime/><st:created/><st:path/>';
const PROPS = propfindBody(INFO_PROPS);
/** What a resource says of itself, and every dead property it has. */
const ALL_PROPS = `${PROPFIND_HEAD}<d:allprop/><d:include>${INFO_PROPS}</d:include></d:propfind>`;
/**
 * Live properties a Stowage door shows (in allprop, or as asked above); any other property of a
 * resource is a dead one, metadata.
 */
const LIVE = new Set([
  ...[
    'creationdate',
    'displayname',
    'getcontentlanguage',
    'getcontentlength',
    'getcontenttype',
    'getetag',
    'getlastmodified',
    'lockdiscovery',
    'resourcetype',
    'supportedlock',
    'quota-used-bytes',
    'quota-available-bytes',
  ].map((l) => `{${DAV}}${l}`),
  ...['id', 'fileid', 'file-parent', 'size', 'checksums', 'permissions'].map((l) => `{${OC}}${l}`),
  ...['mtime', 'created', 'path'].map((l) => `{${ST}}${l}`),
]);
/** What a space's root says of the space: PROPS, and the quota's usage. */
const SPACE_PROPS = propfindBody(
  '<d:resourcetype/><d:getetag/><oc:id/><oc:size/><st:mtime/><st:path/><d:quota-used-bytes/><st:usage-files/><st:usage-trash/><st:usage-versions/>',
);
/** What a trash item says of itself. */
const TRASH_PROPS = propfindBody(
  '<d:resourcetype/><oc:fileid/><oc:file-parent/><oc:size/><st:path/><st:deleted/>',
);
/** What a version says of itself. */
const VERSION_PROPS = propfindBody('<d:getcontentlength/><d:getetag/><oc:checksums/><st:mtime/>');

/** Connect to a WebDAV server. */
export async function createWebDavClientDriver(opts: WebDavClientDriverOptions): Promise<Driver> {
  const driver = new WebDavClientDriver(opts);
  if (!opts.storageId) await driver.learnStorageId();
  return driver;
}

/** One `<d:response>` of a multistatus: its href and the 200 properties' text. */
interface DavEntry {
  href: string;
  props: Map<string, string>;
  folder: boolean;
  /** Dead properties' values by metadata key, when they were asked for. */
  dead?: Map<string, string>;
}

class WebDavClientDriver implements Driver {
  readonly kind = 'webdav';
  readonly features: Features;
  private readonly agents: Agents = keepAliveAgents();
  private readonly auth: string;
  private readonly base: string;
  private storage: string;
  private readonly spaces = new Map<string, Space>();

  constructor(opts: WebDavClientDriverOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.auth = opts.token
      ? `Bearer ${opts.token}`
      : `Basic ${Buffer.from(`${opts.username ?? ''}:${opts.password ?? ''}`).toString('base64')}`;
    this.storage = opts.storageId ?? '';
    this.features = Object.freeze({
      metadata: Object.freeze({
        set: (r: NodeRef, values: Readonly<Record<string, string>>, o?: MutationOptions) =>
          this.patch(r, values, [], o),
        unset: (r: NodeRef, keys: readonly string[], o?: MutationOptions) => this.patch(r, {}, keys, o),
      }),
      copy: Object.freeze({
        copy: (src: NodeRef, dst: NodeRef, o?: MoveOptions) => this.transfer('COPY', src, dst, o),
      }),
      mtime: Object.freeze({
        set: (r: NodeRef, mtime: number, o?: MutationOptions) => this.setMtime(r, mtime, o),
      }),
      trash: Object.freeze({
        list: (spaceId: string, o?: { key?: string }) => this.listTrash(spaceId, o?.key),
        get: (spaceId: string, key: string) => this.trashItem(spaceId, key),
        restore: (spaceId: string, key: string, o?: { target?: NodeRef } & MutationOptions) =>
          this.restoreTrash(spaceId, key, o),
        purge: (spaceId: string, key?: string) => this.purgeTrash(spaceId, key),
      }),
      versions: Object.freeze({
        list: (r: NodeRef) => this.listVersions(r),
        read: (r: NodeRef, key: string, o?: ReadOptions) => this.readVersion(r, key, o),
        restore: (r: NodeRef, key: string, o?: MutationOptions) => this.restoreVersion(r, key, o),
      }),
    });
  }

  get storageId(): string {
    return this.storage;
  }

  /** Ask the server which storage the user's personal space is in. */
  async learnStorageId(): Promise<void> {
    const res = await this.request(
      'PROPFIND',
      `${this.base}/remote.php/webdav/`,
      { depth: '0', 'content-type': 'application/xml; charset=utf-8' },
      PROPS,
    );
    if (res.statusCode !== 207) throw await davFailure(res);
    let body = '';
    for await (const c of res) body += c;
    const id = /<oc:id>([^<]+)<\/oc:id>/.exec(body)?.[1];
    if (!id) throw new StorageError('UNAVAILABLE', `${this.base} did not say its storage id; pass storageId`);
    this.storage = parseResourceId(id).storageId;
  }

  // ---------------------------------------------------------------- addressing

  private url(ref: NodeRef): string {
    const root = `${this.storage}$${ref.spaceId}${ref.nodeId && ref.nodeId !== ref.spaceId ? `!${ref.nodeId}` : ''}`;
    return `${this.base}/dav/spaces/${encodeURIComponent(root)}${ref.segments.map((s) => `/${encodeURIComponent(s)}`).join('')}`;
  }

  private async request(
    method: string,
    url: string,
    headers: Record<string, string> = {},
    body?: Body,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    return httpRequest(this.agents, method, url, { authorization: this.auth, ...headers }, body, signal);
  }

  // ---------------------------------------------------------------- spaces

  async *listSpaces(filter?: SpaceFilter): AsyncIterable<Space> {
    for (const s of this.spaces.values()) if (!filter?.type || filter.type === s.type) yield s;
  }

  async getSpace(idOrAlias: string): Promise<Space> {
    const id = idOrAlias.includes('$') ? idOrAlias.slice(idOrAlias.indexOf('$') + 1) : idOrAlias;
    let root: DavEntry | undefined;
    for await (const e of this.propfindAt(this.url({ spaceId: id, segments: [] }), '0', SPACE_PROPS))
      root ??= e;
    if (!root) throw new StorageError('NOT_FOUND', 'not found');
    const info = this.info(id, root);
    if (!this.storage) this.storage = info.id.storageId;
    const n = (local: string, ns = ST) => {
      const v = root.props.get(`{${ns}}${local}`);
      return v === undefined ? undefined : Number(v);
    };
    const [files, trash, versions] = [n('usage-files'), n('usage-trash'), n('usage-versions')];
    const space: Space = {
      id,
      storageId: info.id.storageId,
      type: 'project',
      name: info.name || id,
      alias: `project/${id}`,
      root: info.id,
      // (what the quota counts: the files, the trash and the versions)
      used: n('quota-used-bytes', DAV) ?? info.size,
      ...(files !== undefined &&
        trash !== undefined &&
        versions !== undefined && { usage: { files, trash, versions } }),
      mtime: info.mtime,
      etag: info.etag,
    };
    this.spaces.set(id, space);
    return space;
  }

  // ---------------------------------------------------------------- reading

  async stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo> {
    for await (const e of this.propfind(ref, '0', opts)) return this.info(ref.spaceId, e);
    throw new StorageError('NOT_FOUND', 'not found');
  }

  async *list(ref: NodeRef, opts?: ListOptions): AsyncIterable<ResourceInfo> {
    let first = true;
    for await (const e of this.propfind(ref, '1', opts)) {
      if (first) {
        first = false;
        if (!e.folder)
          throw new StorageError('FAILED_PRECONDITION', 'not a folder', { reason: 'not-folder' });
        continue;
      }
      yield this.info(ref.spaceId, e);
    }
  }

  /** PROPFIND of a resource, with the dead properties of the metadata keys asked for. */
  private propfind(ref: NodeRef, depth: '0' | '1', opts?: StatOptions): AsyncGenerator<DavEntry> {
    const keys = opts?.metadataKeys;
    const body =
      keys === '*'
        ? ALL_PROPS
        : keys?.length
          ? propfindBody(
              INFO_PROPS +
                keys
                  .map(propertyOfKey)
                  .map((p) => (p ? propertyXml(p, '') : ''))
                  .join(''),
            )
          : PROPS;
    return this.propfindAt(this.url(ref), depth, body, opts?.signal, keys !== undefined);
  }

  /** PROPFIND, its multistatus parsed as it arrives, one entry at a time. */
  private async *propfindAt(
    url: string,
    depth: '0' | '1',
    body: string,
    signal?: AbortSignal,
    /** Keep the dead properties' values (as {@link keptValue} reads them). */
    withDead = false,
  ): AsyncGenerator<DavEntry> {
    const res = await this.request(
      'PROPFIND',
      url,
      { depth, 'content-type': 'application/xml; charset=utf-8' },
      body,
      signal,
    );
    if (res.statusCode !== 207) throw await davFailure(res);
    const ready: DavEntry[] = [];
    let failure: Error | undefined;
    const parser = new SaxesParser({ xmlns: true, position: false });
    let entry: DavEntry | undefined;
    let inOk = false;
    let propstat:
      | { status: string; props: Map<string, string>; folder: boolean; dead: Map<string, string> }
      | undefined;
    let text = '';
    const path: string[] = [];
    /** The dead property being read, its elements from the outermost in. */
    const dead: XmlElement[] = [];
    parser.on('error', (err) => {
      failure ??= new StorageError('INTERNAL', `unreadable PROPFIND answer: ${err.message}`);
    });
    parser.on('opentag', (t) => {
      const key = `{${t.uri}}${t.local}`;
      if (withDead && propstat && (dead.length || (path.at(-1) === `{${DAV}}prop` && !LIVE.has(key)))) {
        const el = elementOf(t, dead.at(-1));
        dead.at(-1)?.children.push(el);
        dead.at(-1)?.content.push(el);
        dead.push(el);
      }
      path.push(key);
      text = '';
      if (key === `{${DAV}}response`) entry = { href: '', props: new Map(), folder: false };
      else if (key === `{${DAV}}propstat`)
        propstat = { status: '', props: new Map(), folder: false, dead: new Map() };
      else if (key === `{${DAV}}collection` && propstat) propstat.folder = true;
      inOk = false;
    });
    parser.on('text', (t) => {
      text += t;
      const top = dead.at(-1);
      if (!top) return;
      if (typeof top.content.at(-1) === 'string') top.content[top.content.length - 1] += t;
      else top.content.push(t);
    });
    parser.on('closetag', (t) => {
      const key = `{${t.uri}}${t.local}`;
      path.pop();
      const parent = path.at(-1);
      const el = dead.pop();
      if (el && !dead.length && propstat) propstat.dead.set(propertyKey(el), keptValue(el));
      if (el) return;
      if (key === `{${DAV}}href` && parent === `{${DAV}}response` && entry) entry.href = text.trim();
      else if (key === `{${DAV}}status` && propstat) propstat.status = text;
      else if (parent === `{${DAV}}prop` && propstat) propstat.props.set(key, text);
      else if (key === `{${OC}}checksum` && propstat) propstat.props.set(key, text);
      else if (key === `{${DAV}}propstat` && propstat && entry) {
        inOk = / 200 /.test(propstat.status);
        if (inOk) {
          for (const [k, v] of propstat.props) entry.props.set(k, v);
          if (propstat.folder) entry.folder = true;
        }
        if (withDead) {
          entry.dead ??= new Map();
          if (inOk) for (const [k, v] of propstat.dead) entry.dead.set(k, v);
        }
        propstat = undefined;
      } else if (key === `{${DAV}}response` && entry) {
        ready.push(entry);
        entry = undefined;
      }
      text = '';
    });
    try {
      for await (const chunk of res) {
        parser.write((chunk as Buffer).toString('utf8'));
        if (failure) throw failure;
        while (ready.length) yield ready.shift()!;
      }
      parser.close();
      if (failure) throw failure;
      while (ready.length) yield ready.shift()!;
    } finally {
      res.destroy();
    }
  }

  private info(spaceId: string, e: DavEntry): ResourceInfo {
    const p = e.props;
    const id = p.get(`{${OC}}id`);
    if (!id) throw new StorageError('INTERNAL', `no oc:id for ${e.href}`);
    const path = p.get(`{${ST}}path`) ?? '/';
    const parent = p.get(`{${OC}}file-parent`);
    const checksums = parseChecksums(p.get(`{${OC}}checksum`));
    const created = p.get(`{${ST}}created`);
    const info: ResourceInfo = {
      id: parseResourceId(id),
      ...(parent && { parentId: parseResourceId(parent) }),
      path,
      name: path === '/' ? (this.spaces.get(spaceId)?.name ?? '') : path.slice(path.lastIndexOf('/') + 1),
      type: e.folder ? 'folder' : 'file',
      size: Number(p.get(`{${OC}}size`) ?? p.get(`{${DAV}}getcontentlength`) ?? 0),
      mtime: Number(p.get(`{${ST}}mtime`) ?? 0),
      ...(created !== undefined && { created: Number(created) }),
      etag: etagOf(p.get(`{${DAV}}getetag`)),
      mimeType: p.get(`{${DAV}}getcontenttype`) ?? '',
      ...(checksums && { checksums }),
      ...(e.dead && { metadata: Object.fromEntries(e.dead) }),
    };
    return info;
  }

  async read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    return this.readAt(this.url(ref), ref, opts);
  }

  /** GET of `url` (the file at `ref`, or a version of it), with the range and conditions asked. */
  private async readAt(url: string, ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    const headers: Record<string, string> = {};
    const r = opts?.range;
    if (r)
      headers.range = r.suffix !== undefined ? `bytes=-${r.suffix}` : `bytes=${r.start ?? 0}-${r.end ?? ''}`;
    Object.assign(headers, conditionHeaders(opts?.conditions));
    if (opts?.ifRange) headers['if-range'] = ifRangeValue(opts.ifRange);
    const res = await this.request('GET', url, headers, undefined, opts?.signal);
    const status = res.statusCode ?? 0;
    // A folder named without its slash is sent to the name with it, as Apache's mod_dir does.
    const to = status === 301 ? res.headers.location : undefined;
    if (to && new URL(to, url).pathname === `${new URL(url).pathname}/`) {
      res.destroy();
      throw new StorageError('FAILED_PRECONDITION', 'cannot read a folder', { reason: 'is-folder' });
    }
    if (![200, 206, 304, 412, 416].includes(status)) throw await davFailure(res);
    const info = infoFrom(res) ?? (await this.stat(ref));
    if (info.type === 'folder') {
      res.destroy();
      throw new StorageError('FAILED_PRECONDITION', 'cannot read a folder', { reason: 'is-folder' });
    }
    return readResultOf(res, info);
  }

  // ---------------------------------------------------------------- changing

  async write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    opts?.signal?.throwIfAborted();
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (opts?.size !== undefined) headers['content-length'] = String(opts.size);
    if (opts?.mtime !== undefined) headers['x-oc-mtime'] = String(opts.mtime / 1000);
    const sums = opts?.checksums;
    if (sums) {
      headers['oc-checksum'] = Object.entries(sums)
        .map(([k, v]) => `${k.toUpperCase()}:${v}`)
        .join(' ');
    }
    Object.assign(headers, conditionHeaders(opts?.conditions));
    const source = opts?.size === undefined ? body : exactly(bodyChunks(body), opts.size);
    const res = await this.request('PUT', this.url(ref), headers, source, opts?.signal);
    if (res.statusCode !== 201 && res.statusCode !== 204) throw await davFailure(res);
    res.resume();
    return infoFrom(res) ?? this.stat(ref);
  }

  async mkdir(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    const res = await this.request('MKCOL', this.url(ref), {}, undefined, opts?.signal);
    if (res.statusCode !== 201) throw await davFailure(res);
    res.resume();
    return infoFrom(res) ?? this.stat(ref);
  }

  async delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    const info = await this.stat(ref);
    const res = await this.request('DELETE', this.url(ref), {}, undefined, opts?.signal);
    if (res.statusCode !== 204 && res.statusCode !== 200) throw await davFailure(res);
    res.resume();
    return info;
  }

  move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    return this.transfer('MOVE', src, dst, opts);
  }

  /**
   * A MOVE or COPY. A time to land with goes along as `X-OC-Mtime`, which a Stowage server sets
   * in the same step; a server that does not say it took it (`X-OC-Mtime: accepted`) gets it by a
   * PROPPATCH afterwards, as rclone does. That is two steps: a time the server refuses then fails
   * the call after the file moved (unless `mtimeBestEffort`; a Stowage server leaves a time out
   * only when it cannot set it at all, for a file of another uid say).
   */
  private async transfer(method: 'MOVE' | 'COPY', src: NodeRef, dst: NodeRef, opts?: MoveOptions) {
    const headers: Record<string, string> = {
      destination: new URL(this.url(dst)).pathname,
      overwrite: opts?.overwrite ? 'T' : 'F',
    };
    const mtime = opts?.mtime;
    if (mtime !== undefined) {
      // (a server times files only, and passes over the header for a folder)
      if ((await this.stat(src)).type === 'folder') throw folderTimeRefused();
      headers['x-oc-mtime'] = String(mtime / 1000);
    }
    const res = await this.request(method, this.url(src), headers, undefined, opts?.signal);
    if (res.statusCode !== 201 && res.statusCode !== 204) throw await davFailure(res);
    res.resume();
    if (mtime !== undefined && res.headers['x-oc-mtime'] !== 'accepted') {
      const timed = this.setMtime(dst, mtime);
      return opts?.mtimeBestEffort ? timed.catch(() => this.stat(dst)) : timed;
    }
    return infoFrom(res) ?? this.stat(dst);
  }

  /** A PROPPATCH of `DAV:lastmodified` (Unix seconds), as rclone's owncloud vendor sends it. */
  private async setMtime(ref: NodeRef, mtime: number, opts?: MutationOptions): Promise<ResourceInfo> {
    const body =
      '<?xml version="1.0" encoding="utf-8"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>' +
      `<d:lastmodified>${mtime / 1000}</d:lastmodified></d:prop></d:set></d:propertyupdate>`;
    const res = await this.request(
      'PROPPATCH',
      this.url(ref),
      { 'content-type': 'application/xml; charset=utf-8' },
      body,
      opts?.signal,
    );
    if (res.statusCode !== 207) throw await davFailure(res);
    let text = '';
    for await (const c of res) text += c;
    const status = /<d:status>HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
    if (status !== '200') {
      // 409: a folder, or a time the server cannot take.
      const info = await this.stat(ref);
      if (info.type === 'folder') throw folderTimeRefused();
      throw new StorageError('INVALID_ARGUMENT', `the server refused that modification time (${status})`);
    }
    return this.stat(ref);
  }

  /**
   * Set and remove dead properties: a PROPPATCH, all or nothing. Keys must name properties
   * (`<namespace>/<name>`, or `tags`); a value is sent as text, or as it is when it is an element
   * of its property's name (a structured value read back as such).
   */
  private async patch(
    ref: NodeRef,
    set: Readonly<Record<string, string>>,
    unset: readonly string[],
    opts?: MutationOptions,
  ): Promise<void> {
    opts?.signal?.throwIfAborted();
    const nameOf = (k: string) => {
      const p = propertyOfKey(k);
      if (!p)
        throw new StorageError(
          'INVALID_ARGUMENT',
          `metadata key ${JSON.stringify(k.slice(0, 80))} names no WebDAV property (<namespace>/<name>)`,
        );
      return p;
    };
    let sets = '';
    for (const [k, v] of Object.entries(set)) {
      if (XML_UNSAFE.test(v))
        throw new StorageError('INVALID_ARGUMENT', `the value of ${JSON.stringify(k)} cannot travel in XML`);
      const p = nameOf(k);
      sets += isElementOf(p, v) ? v : propertyXml(p, v);
    }
    const removes = unset.map((k) => propertyXml(nameOf(k), '')).join('');
    if (!sets && !removes) return;
    const body =
      '<?xml version="1.0" encoding="utf-8"?><d:propertyupdate xmlns:d="DAV:">' +
      (sets ? `<d:set><d:prop>${sets}</d:prop></d:set>` : '') +
      (removes ? `<d:remove><d:prop>${removes}</d:prop></d:remove>` : '') +
      '</d:propertyupdate>';
    const headers: Record<string, string> = { 'content-type': 'application/xml; charset=utf-8' };
    if (opts?.lockId) headers.if = `(<${opts.lockId}>)`;
    const res = await this.request('PROPPATCH', this.url(ref), headers, body, opts?.signal);
    if (res.statusCode !== 207) throw await davFailure(res);
    let text = '';
    for await (const c of res) text += c;
    const failed = [...text.matchAll(/<d:status>HTTP\/1\.1 (\d{3})/g)]
      .map((m) => Number(m[1]))
      .filter((s) => s !== 200 && s !== 424);
    if (!failed.length) return;
    const status = failed[0]!;
    if (status === 507)
      throw new StorageError('INVALID_ARGUMENT', 'too much metadata for one resource', {
        reason: 'metadata-too-large',
      });
    const code = ({ 403: 'PERMISSION_DENIED', 409: 'INVALID_ARGUMENT', 423: 'LOCKED' } as const)[status];
    throw new StorageError(code ?? 'INTERNAL', `the server refused the properties (${status})`);
  }

  // ---------------------------------------------------------------- trash

  /** The URL of a space's trash, or of an item in it (`key`: its id, then a path inside it). */
  private trashUrl(spaceId: string, key = ''): string {
    const segs = key.split('/').filter(Boolean);
    return `${this.base}/dav/spaces/trash-bin/${encodeURIComponent(`${this.storage}$${spaceId}`)}/${segs.map(encodeURIComponent).join('/')}`;
  }

  private recycleItem(e: DavEntry): RecycleItem {
    const p = e.props;
    const segs = new URL(e.href, this.base).pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const at = segs.lastIndexOf('trash-bin');
    const id = p.get(`{${OC}}fileid`);
    const path = p.get(`{${ST}}path`);
    const deleted = p.get(`{${ST}}deleted`);
    if (at < 0 || !id || path === undefined || deleted === undefined)
      throw new StorageError('INTERNAL', `not a trash item of Stowage: ${e.href}`);
    const parent = p.get(`{${OC}}file-parent`);
    return {
      key: segs.slice(at + 2).join('/'),
      id: parseResourceId(id),
      type: e.folder ? 'folder' : 'file',
      path,
      size: Number(p.get(`{${OC}}size`) ?? 0),
      deleted: Number(deleted),
      ...(parent && { parentId: parseResourceId(parent) }),
    };
  }

  private async *listTrash(spaceId: string, key?: string): AsyncIterable<RecycleItem> {
    // (after the trash itself, or the deleted folder listed)
    for await (const e of members(this.propfindAt(`${this.trashUrl(spaceId, key)}/`, '1', TRASH_PROPS)))
      yield this.recycleItem(e);
  }

  private async trashItem(spaceId: string, key: string): Promise<RecycleItem> {
    if (!key.split('/').some(Boolean)) throw new StorageError('NOT_FOUND', 'name a trash item');
    for await (const e of this.propfindAt(this.trashUrl(spaceId, key), '0', TRASH_PROPS))
      return this.recycleItem(e);
    throw new StorageError('NOT_FOUND', 'not in the trash');
  }

  /** A MOVE of the item to its target, or back where it was. */
  private async restoreTrash(
    spaceId: string,
    key: string,
    o?: { target?: NodeRef } & MutationOptions,
  ): Promise<ResourceInfo> {
    const target = o?.target ?? {
      spaceId,
      segments: (await this.trashItem(spaceId, key)).path.split('/').filter(Boolean),
    };
    const res = await this.request(
      'MOVE',
      this.trashUrl(spaceId, key),
      { destination: new URL(this.url(target)).pathname, overwrite: 'F' },
      undefined,
      o?.signal,
    );
    if (res.statusCode !== 201 && res.statusCode !== 204) throw await davFailure(res);
    res.resume();
    return infoFrom(res) ?? this.stat(target);
  }

  private async purgeTrash(spaceId: string, key?: string): Promise<void> {
    const res = await this.request('DELETE', `${this.trashUrl(spaceId, key)}${key ? '' : '/'}`);
    if (res.statusCode !== 204 && res.statusCode !== 200) throw await davFailure(res);
    res.resume();
  }

  // ---------------------------------------------------------------- versions

  /** The URL of a file's versions (by its id, looked up when `ref` is a path), or of one of them. */
  private async versionsUrl(ref: NodeRef, key?: string): Promise<string> {
    const info = await this.stat(ref);
    if (info.type === 'folder')
      throw new StorageError('FAILED_PRECONDITION', 'a folder has no versions', { reason: 'is-folder' });
    const at = `${this.base}/dav/meta/${encodeURIComponent(formatResourceId(info.id))}/v`;
    return key === undefined ? `${at}/` : `${at}/${encodeURIComponent(key)}`;
  }

  private async listVersions(ref: NodeRef): Promise<FileVersion[]> {
    const out: FileVersion[] = [];
    // (after the versions collection itself)
    for await (const e of members(this.propfindAt(await this.versionsUrl(ref), '1', VERSION_PROPS))) {
      const p = e.props;
      const checksums = parseChecksums(p.get(`{${OC}}checksum`));
      out.push({
        key: decodeURIComponent(new URL(e.href, this.base).pathname.split('/').filter(Boolean).at(-1) ?? ''),
        size: Number(p.get(`{${DAV}}getcontentlength`) ?? 0),
        mtime: Number(p.get(`{${ST}}mtime`) ?? 0),
        etag: etagOf(p.get(`{${DAV}}getetag`)),
        ...(checksums && { checksums }),
      });
    }
    return out;
  }

  private async readVersion(ref: NodeRef, key: string, opts?: ReadOptions): Promise<ReadResult> {
    return this.readAt(await this.versionsUrl(ref, key), ref, opts);
  }

  /** A COPY of the version (ownCloud's way to make it current; the server needs no Destination). */
  private async restoreVersion(ref: NodeRef, key: string, o?: MutationOptions): Promise<ResourceInfo> {
    const res = await this.request('COPY', await this.versionsUrl(ref, key), {}, undefined, o?.signal);
    if (res.statusCode !== 204 && res.statusCode !== 201) throw await davFailure(res);
    res.resume();
    return infoFrom(res) ?? this.stat(ref);
  }

  async close(): Promise<void> {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** A property's element holding `text` (escaped), to ask for (empty) or set. */
function propertyXml(p: PropertyName, text: string): string {
  const open = p.ns ? `x:${p.local} xmlns:x="${esc(p.ns)}"` : `${p.local} xmlns=""`;
  const close = p.ns ? `x:${p.local}` : p.local;
  return text ? `<${open}>${esc(text)}</${close}>` : `<${open}/>`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 cannot carry these characters
const XML_UNSAFE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/** An element of a dead property's value, as the door's XML parser would have made it. */
function elementOf(t: SaxesTagNS, parent: XmlElement | undefined): XmlElement {
  const attrs: Record<string, string> = {};
  for (const a of Object.values(t.attributes)) {
    if (a.prefix === 'xmlns' || a.name === 'xmlns') continue;
    attrs[`{${a.uri}}${a.local}`] = a.value;
  }
  const lang = attrs[`{${XML_NS}}lang`] ?? parent?.lang;
  return {
    ns: t.uri,
    local: t.local,
    children: [],
    text: '',
    content: [],
    attrs,
    scope: {},
    ...(lang !== undefined && { lang }),
  };
}

/** The entries of a Depth: 1 multistatus after the first (the collection asked about). */
async function* members(entries: AsyncIterable<DavEntry>): AsyncGenerator<DavEntry> {
  let first = true;
  for await (const e of entries) {
    if (!first) yield e;
    first = false;
  }
}

/** An etag as the model holds it: without the quotes (or weak mark) of `getetag`. */
function etagOf(v: string | undefined): string {
  return (v ?? '').replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

function parseChecksums(v: string | undefined): Checksums | undefined {
  if (!v) return undefined;
  const out: Record<string, string> = {};
  for (const m of v.matchAll(/(SHA1|MD5|ADLER32):([0-9a-fA-F]+)/g))
    out[m[1]!.toLowerCase()] = m[2]!.toLowerCase();
  return Object.keys(out).length ? (out as Checksums) : undefined;
}

/** The StorageError of a WebDAV error answer: Stowage's code and reason when it sends them. */
async function davFailure(res: http.IncomingMessage): Promise<StorageError> {
  const body = await bodyHead(res);
  const code = /<st:code[^>]*>([A-Z_]+)<\/st:code>/.exec(body)?.[1];
  const reason = /<st:reason[^>]*>([a-z-]+)<\/st:reason>/.exec(body)?.[1];
  const message = /<s:message>([^<]*)<\/s:message>/.exec(body)?.[1] ?? `HTTP ${res.statusCode}`;
  if (code) {
    return new StorageError(
      code as StorageError['code'],
      decodeXml(message),
      reason ? { reason: reason as StorageError['reason'] & string } : {},
    );
  }
  const byStatus: Record<number, StorageError['code']> = {
    400: 'INVALID_ARGUMENT',
    401: 'UNAUTHENTICATED',
    403: 'PERMISSION_DENIED',
    404: 'NOT_FOUND',
    405: 'ALREADY_EXISTS',
    409: 'FAILED_PRECONDITION',
    412: 'FAILED_PRECONDITION',
    423: 'LOCKED',
    507: 'INSUFFICIENT_STORAGE',
  };
  return new StorageError(byStatus[res.statusCode ?? 0] ?? 'INTERNAL', decodeXml(message));
}

function decodeXml(s: string): string {
  return s.replace(
    /&(lt|gt|amp|quot|apos);/g,
    (_, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e]!,
  );
}
