/**
 * What the HTTP doors (the CS3 data plane and WebDAV) share: header parsing, conditional and
 * range requests, download responses, and the ownCloud-style headers of a resource.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { parseRangeHeader } from '../core/conditions.js';
import { StorageError } from '../core/errors.js';
import { formatResourceId } from '../core/refs.js';
import type { Conditions, ReadOptions, ReadResult, ResourceInfo } from '../core/types.js';

/** An etag in quotes, as HTTP (and Reva) sends it. */
export function quoteEtag(etag: string): string {
  return `"${etag}"`;
}

/** One header's value (the first, when repeated). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function intHeader(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,16}$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

export function dateHeader(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

/** `X-OC-Mtime` is Unix seconds, possibly fractional. */
export function mtimeHeader(v: string | undefined): number | undefined {
  if (!v || !/^\d+(\.\d+)?$/.test(v.trim())) return undefined;
  return Number(v.trim()) * 1000;
}

export function splitEtags(v: string): string[] {
  return v
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
}

/** If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since of a request. */
export function requestConditions(req: IncomingMessage): Conditions {
  const conditions: Conditions = {};
  const im = header(req, 'if-match');
  const inm = header(req, 'if-none-match');
  const ims = dateHeader(header(req, 'if-modified-since'));
  const ius = dateHeader(header(req, 'if-unmodified-since'));
  if (im) conditions.ifMatch = im.trim() === '*' ? '*' : splitEtags(im);
  if (inm) conditions.ifNoneMatch = inm.trim() === '*' ? '*' : splitEtags(inm);
  if (ims !== undefined) conditions.ifModifiedSince = ims;
  if (ius !== undefined) conditions.ifUnmodifiedSince = ius;
  return conditions;
}

/** Read options of a GET/HEAD: range, conditions, If-Range, and abort when the client goes. */
export function readOptions(req: IncomingMessage, res: ServerResponse): ReadOptions {
  const range = parseRangeHeader(header(req, 'range'));
  const conditions = requestConditions(req);
  return {
    // Unparseable ranges are ignored (RFC 9110); a valid but unsatisfiable one is 416.
    ...(range && { range }),
    ...(Object.keys(conditions).length && { conditions }),
    ...(header(req, 'if-range') && { ifRange: header(req, 'if-range')! }),
    signal: abortOnClose(req, res),
  };
}

/** Answer a GET/HEAD with the result of a read, streaming the body. */
export async function sendRead(
  res: ServerResponse,
  r: ReadResult,
  head: boolean,
  extra: Record<string, string> = {},
): Promise<void> {
  const headers: Record<string, string> = {
    ...infoHeaders(r.info),
    'accept-ranges': 'bytes',
    'content-type': r.info.mimeType || 'application/octet-stream',
    ...extra,
  };
  if (r.status === 200 || r.status === 206) {
    const span = r.range ?? { start: 0, end: r.info.size - 1 };
    headers['content-length'] = String(Math.max(0, span.end - span.start + 1));
    if (r.status === 206) headers['content-range'] = `bytes ${span.start}-${span.end}/${r.info.size}`;
  } else {
    headers['content-length'] = '0';
    if (r.status === 416) headers['content-range'] = `bytes */${r.info.size}`;
  }
  res.writeHead(r.status, headers);
  if (!r.body || head) {
    (r.body as { destroy?: () => void } | undefined)?.destroy?.();
    res.end();
    return;
  }
  await pipeline(r.body, res);
}

/** Abort when the client goes away before the exchange is done. */
export function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  const stop = () => {
    if (!res.writableFinished) ac.abort(new StorageError('CANCELLED', 'the client went away'));
  };
  req.once('aborted', stop);
  res.once('close', stop);
  return ac.signal;
}

/** The headers Reva's data plane and ownCloud answer with, plus the whole info for Stowage's own client. */
export function infoHeaders(info: ResourceInfo): Record<string, string> {
  const etag = quoteEtag(info.etag);
  const h: Record<string, string> = {
    etag,
    'oc-etag': etag,
    'oc-fileid': formatResourceId(info.id),
    'last-modified': new Date(info.mtime).toUTCString(),
  };
  // The whole info, for Stowage's own client (left out when too big for a header).
  const whole = Buffer.from(JSON.stringify(info)).toString('base64url');
  if (whole.length <= 8192) h['x-stowage-info'] = whole;
  const sums = info.checksums;
  if (sums?.sha1) h['oc-checksum'] = `SHA1:${sums.sha1}`;
  else if (sums?.md5) h['oc-checksum'] = `MD5:${sums.md5}`;
  else if (sums?.adler32) h['oc-checksum'] = `ADLER32:${sums.adler32}`;
  return h;
}
