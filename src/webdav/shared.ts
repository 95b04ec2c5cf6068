/**
 * What the WebDAV door's modules share: its error, the request target, property names, and the
 * pieces of a multistatus answer.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorCode, StorageError } from '../core/errors.js';
import type { User } from '../core/identity.js';
import type { StorageProvider } from '../core/provider.js';
import type { Reference, Space } from '../core/types.js';
import { header } from '../http/common.js';
import { type BodyBudget, child, DAV, esc, NC, OC, parseXml, readBody } from './xml.js';

/** An HTTP answer other than the default mapping of an error. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The precondition element of the error body (RFC 4918 §16), by its DAV: name. */
    readonly davError?: string,
    /** What it is in Stowage's terms, for the error body (clients that map back to StorageError). */
    readonly as?: { code: ErrorCode; reason?: string },
    /** Hrefs the precondition element lists (`lock-token-submitted` names the locked resources). */
    readonly hrefs?: string[],
  ) {
    super(message);
  }

  /** For a 405: the methods the resource does allow (RFC 9110 §15.5.6), when they are known. */
  allow?: string;

  /** For a 429 or 503: seconds to wait (`Retry-After`). */
  retryAfter?: number;

  /** This error, with the seconds a 429 or 503 asks to wait. */
  retrying(seconds: number): this {
    this.retryAfter = seconds;
    return this;
  }

  /** This error, with the methods a 405 names. */
  allowing(methods: string): this {
    this.allow = methods;
    return this;
  }
}

export type Session = StorageProvider;

/** Who is asking. */
export interface Who {
  user: User;
  session: Session;
}

/** Where a request points: a space, a path in it, and the href of the mount's root. */
export interface Target {
  session: Session;
  user: User;
  space: Space;
  segs: string[];
  /** A node the paths start from (`/dav/spaces/<storage>$<space>!<node>/...`); else the space root. */
  nodeId?: string;
  /** Encoded href of the space root (or node) in this mount, without a trailing slash. */
  base: string;
  /** The URL ended in `/` below the mount's root: it names a folder, never a file. */
  collection?: boolean;
}

/** The provider's reference for a target (or for other segments below the same space or node). */
export function targetRef(t: Target, segs: readonly string[] = t.segs): Reference {
  return t.nodeId
    ? {
        resourceId: { storageId: t.space.storageId, spaceId: t.space.id, opaqueId: t.nodeId },
        path: segs.join('/'),
      }
    : { space: t.space.id, path: segs.join('/') };
}

/** The propstats of a response: the properties found (200) and those asked for but missing (404). */
export function propstats(ok: string, missing: string): string {
  return (
    // (an empty 200 propstat when nothing was asked for: a response needs one, RFC 4918 §14.24)
    (ok || !missing
      ? `<d:propstat><d:prop>${ok}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>`
      : '') +
    (missing
      ? `<d:propstat><d:prop>${missing}</d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>`
      : '')
  );
}

/**
 * Answer a request that made (201) or replaced (204) a resource, with no body. A 204 carries no
 * Content-Length either (RFC 9110 §8.6); a 201 says 0, so Node does not switch to chunked.
 */
export function sendMadeOrReplaced(
  res: ServerResponse,
  replaced: boolean,
  headers: Record<string, string>,
): void {
  res.writeHead(replaced ? 204 : 201, replaced ? headers : { ...headers, 'content-length': '0' });
  res.end();
}

export const MULTISTATUS_HEAD =
  '<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns" xmlns:st="urn:stowage">';
export const XML_TYPE = 'application/xml; charset=utf-8';

/** A WebDAV property name: namespace and local name. */
export interface PropName {
  ns: string;
  local: string;
}

/** Names that encode to themselves (unreserved characters only). */
const PLAIN_NAME = /^[A-Za-z0-9._~-]*$/;

/**
 * A path segment for an href: every byte but the unreserved characters percent-encoded, as neon
 * (davfs2, cadaver, litmus) encodes the paths it requests. neon finds the lock a request needs by
 * comparing its path with the lock's root as the server wrote it, byte for byte (hex digits aside):
 * a `&` kept as it is in an href made davfs2 send an upload without its lock token. Clients that
 * decode hrefs (ownCloud, Nextcloud, rclone) read any form alike.
 */
export function encodeName(s: string): string {
  if (PLAIN_NAME.test(s)) return s; // most names: nothing to encode
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The segments of a mount's root (`remote.php/dav/spaces/<storage>$<space>!<node>`, a user name)
 * for an href: as {@link encodeName}, but `$ : @ , ; = &` and `! ' ( ) *` stay as they are, as clients
 * write them in the URLs they are given (ids hold `$` and `!`) and compare hrefs against.
 */
export function encodeMountSegments(segs: readonly string[]): string {
  let out = '';
  for (const s of segs) {
    out += `/${PLAIN_NAME.test(s) ? s : encodeURIComponent(s).replace(/%(24|3A|40|2C|3B|3D|26)/gi, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)))}`;
  }
  return out;
}

/** Segments as an encoded path, each after a `/`. */
export function encodeSegments(segs: readonly string[]): string {
  let out = '';
  for (const s of segs) out += `/${encodeName(s)}`;
  return out;
}

/** An empty element for a property name, with its namespace declared when not ours. */
export function emptyProp(p: PropName): string {
  if (p.ns === DAV) return `<d:${p.local}/>`;
  if (p.ns === OC) return `<oc:${p.local}/>`;
  if (p.ns === NC) return `<nc:${p.local}/>`;
  if (!p.ns) return `<${p.local} xmlns=""/>`;
  return `<x:${p.local} xmlns:x="${esc(p.ns)}"/>`;
}

/** What a PROPFIND body asks for (an empty body is allprop). */
export interface PropfindRequest {
  mode: 'allprop' | 'propname' | 'prop';
  /** The properties named (mode `prop`). */
  wanted: PropName[];
  /** allprop's `include` list. */
  include: PropName[];
}

/** Read and parse a PROPFIND body (400 for anything but a DAV:propfind). */
export async function readPropfind(req: IncomingMessage, budget: BodyBudget): Promise<PropfindRequest> {
  const body = await readBody(req, budget);
  const out: PropfindRequest = { mode: 'allprop', wanted: [], include: [] };
  if (!body.length || !body.toString('utf8').trim()) return out;
  const doc = parseXml(body, req.headers['content-type']);
  if (doc.ns !== DAV || doc.local !== 'propfind') throw new HttpError(400, 'expected a DAV:propfind body');
  const prop = child(doc, DAV, 'prop');
  if (prop) {
    out.mode = 'prop';
    // (a property named twice is answered once)
    out.wanted = withoutRepeats(prop.children.map((c) => ({ ns: c.ns, local: c.local })));
  } else if (child(doc, DAV, 'propname')) out.mode = 'propname';
  else if (child(doc, DAV, 'allprop')) {
    out.include = withoutRepeats(
      (child(doc, DAV, 'include')?.children ?? []).map((c) => ({ ns: c.ns, local: c.local })),
    );
  } else throw new HttpError(400, 'propfind needs prop, propname or allprop');
  return out;
}

/** The properties named, each once (in the order first named). */
export function withoutRepeats(props: readonly PropName[]): PropName[] {
  const seen = new Set<string>();
  return props.filter((p) => {
    const k = `${p.ns} ${p.local}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** A space id from a URL segment: `<space>`, `<storage>$<space>` or `<storage>$<space>!<node>`. */
export function spaceIdOf(s: string): string {
  const afterDollar = s.includes('$') ? s.slice(s.indexOf('$') + 1) : s;
  return afterDollar.split('!')[0]!;
}

/**
 * Write to a response, waiting while its buffer is full; a client that went away ends the wait
 * (and the request) instead of leaving it hanging. Parts (buffers held anyway) go out together.
 */
export async function send(res: ServerResponse, chunk: string | Buffer | readonly Buffer[]): Promise<void> {
  if (res.destroyed || res.writableEnded) throw new StorageError('CANCELLED', 'the client went away');
  if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) {
    if (res.write(chunk)) return;
  } else {
    // Parts already held in memory (a kept listing): written corked (one writev), then one wait.
    res.cork();
    let room = true;
    for (const part of chunk) room = res.write(part);
    res.uncork();
    if (room) return;
  }
  await new Promise<void>((resolve, reject) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', gone);
      resolve();
    };
    const gone = () => {
      res.off('drain', done);
      res.off('close', gone);
      reject(new StorageError('CANCELLED', 'the client went away'));
    };
    res.on('drain', done);
    res.on('close', gone);
  });
}

/** The Overwrite header (RFC 4918 §10.6): true unless `F`; 400 for anything but `T` or `F`. */
export function overwriteOf(req: IncomingMessage): boolean {
  const v = (header(req, 'overwrite') ?? 'T').trim().toUpperCase();
  if (v !== 'T' && v !== 'F') throw new HttpError(400, 'Overwrite must be T or F');
  return v === 'T';
}

/** 412 for a COPY or MOVE (or a restore) whose Destination exists while Overwrite is F. */
export function destinationTaken(): HttpError {
  return new HttpError(412, 'the Destination exists and Overwrite is F', undefined, {
    code: 'ALREADY_EXISTS',
  });
}
