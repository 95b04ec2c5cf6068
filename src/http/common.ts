/**
 * What the HTTP doors (the CS3 data plane and WebDAV) share: header parsing, conditional and
 * range requests, download responses, and the ownCloud-style headers of a resource.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { digestHeader } from '../core/checksums.js';
import { parseHttpDate, parseRangesHeader } from '../core/conditions.js';
import { StorageError } from '../core/errors.js';
import type { StorageProvider } from '../core/provider.js';
import { formatResourceId } from '../core/refs.js';
import type { Conditions, ReadOptions, ReadResult, Ref, ResourceInfo } from '../core/types.js';
import { MAX_RANGES, planParts, readsInOrder, sendParts } from './byteranges.js';

/**
 * The etag a resource has now (null: there is none), or undefined when it cannot be told. An
 * upload keeps it just before its write: see {@link landedBefore}.
 */
export async function etagNow(session: StorageProvider, ref: Ref): Promise<string | null | undefined> {
  try {
    return (await session.stat(ref)).etag;
  } catch (err) {
    return StorageError.is(err, 'NOT_FOUND') ? null : undefined;
  }
}

/**
 * Whether an upload asked again after the server stopped during its write or right after it (a
 * TUS upload's last byte sent again, a chunked upload's MOVE asked again) was written then.
 * `kept` is the etag its target had just before that write (null: none); `bytes` reads the
 * upload's bytes (only read when they must be compared).
 *
 * - The target's etag is still `kept`, or the target is gone: undefined, write it.
 * - The target holds these bytes (the same size and SHA-1): it landed, the upload is done (the
 *   target's info).
 * - The target holds something else (written since, or in place of a write that did not land):
 *   FAILED_PRECONDITION (412), a conflict the client settles as it would a failed If-Match,
 *   rather than an answer of done for what may not have landed, or a write over what someone
 *   wrote since.
 */
export async function landedBefore(
  session: StorageProvider,
  ref: Ref,
  kept: string | null,
  bytes: () => AsyncIterable<Uint8Array>,
): Promise<ResourceInfo | undefined> {
  let now: ResourceInfo;
  try {
    now = await session.stat(ref);
  } catch (err) {
    if (StorageError.is(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
  if (now.etag === kept) return undefined;
  const sha1 = now.type === 'file' ? now.checksums?.sha1?.toLowerCase() : undefined;
  if (sha1) {
    const hash = createHash('sha1');
    let size = 0;
    for await (const chunk of bytes()) {
      hash.update(chunk);
      size += chunk.length;
    }
    if (size === now.size && hash.digest('hex') === sha1) return now;
  }
  throw new StorageError(
    'FAILED_PRECONDITION',
    'the file changed since this upload was written, or was changed while it was: upload it again',
    { reason: 'condition' },
  );
}

/** An etag in quotes, as HTTP (and Reva) sends it. */
export function quoteEtag(etag: string): string {
  return `"${etag}"`;
}

/**
 * A formatter of whole seconds that keeps the last few strings it made (the files of a listing
 * share seconds often); `max` bounds what it keeps.
 */
function bySecond(format: (d: Date) => string, max: number): (ms: number) => string {
  const made = new Map<number, string>();
  return (ms) => {
    const sec = Math.floor(ms / 1000);
    let d = made.get(sec);
    if (d === undefined) {
      d = format(new Date(sec * 1000));
      if (made.size >= max) made.clear();
      made.set(sec, d);
    }
    return d;
  };
}

/** A time (ms since epoch) as an HTTP date (`Tue, 15 Nov 1994 08:12:31 GMT`). */
export const httpDate: (ms: number) => string = bySecond((d) => d.toUTCString(), 256);

/**
 * An RFC 3339 date-time in UTC to the second (`2026-11-22T10:00:00Z`), as WebDAV's
 * `DAV:creationdate` carries it and as the clients that read it parse it (macOS's webdavfs takes
 * no fractions of a second).
 */
export const isoSeconds: (ms: number) => string = bySecond((d) => `${d.toISOString().slice(0, 19)}Z`, 4096);

/** One header's value (the first, when repeated). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function intHeader(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,16}$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

/** `Upload-Length`: absent, or a non-negative integer (anything else is refused, not ignored). */
export function uploadLength(req: IncomingMessage): number | undefined {
  const v = header(req, 'upload-length');
  if (v === undefined) return undefined;
  const n = intHeader(v);
  if (n === undefined)
    throw new StorageError(
      'INVALID_ARGUMENT',
      `Upload-Length must be a byte count (a non-negative integer), not "${v.slice(0, 40)}"`,
      {
        reason: 'bad-header',
      },
    );
  return n;
}

/** An HTTP date header (RFC 9110 §5.6.7, any of its three forms), or undefined: ignored. */
export function dateHeader(v: string | undefined): number | undefined {
  return v ? parseHttpDate(v) : undefined;
}

/**
 * A favorite mark as ownCloud's clients and Reva send it (`oc:favorite`, CS3 metadata): `1`/`true`
 * or `0`/`false` (also empty); undefined for anything else.
 */
export function favoriteFlag(v: string): boolean | undefined {
  const t = v.trim().toLowerCase();
  if (t === '1' || t === 'true') return true;
  if (t === '0' || t === 'false' || t === '') return false;
  return undefined;
}

/**
 * `X-OC-Mtime` is Unix seconds, possibly fractional, as are CS3's `mtime` metadata and the
 * ownCloud dialect's `DAV:lastmodified` (`what` names the source in the error).
 */
export function mtimeHeader(v: string | undefined, what = 'X-OC-Mtime'): number | undefined {
  if (v === undefined || !v.trim()) return undefined;
  if (!/^\d{1,15}(\.\d+)?$/.test(v.trim())) {
    throw new StorageError('INVALID_ARGUMENT', `malformed mtime: expected seconds since 1970 (${what})`, {
      reason: 'bad-header',
    });
  }
  return Number(v.trim()) * 1000;
}

/** An entity tag as RFC 9110 §8.8.3 writes it: quoted, perhaps weak. */
const ENTITY_TAG = /^(W\/)?"[\x21\x23-\x7e\x80-\xff]*"$/;

/**
 * The entity tags of an If-Match or If-None-Match list. A malformed one (unquoted, say) names no
 * resource, so it is left out: an If-Match of nothing but such tags fails, as Apache's does.
 */
export function splitEtags(v: string): string[] {
  return v
    .split(',')
    .map((t) => t.trim())
    .filter((t) => ENTITY_TAG.test(t));
}

/** An If-Range header: an HTTP date or an entity tag; anything else never holds (sent as a weak tag). */
export function ifRangeHeader(v: string | undefined): string | undefined {
  if (!v?.trim()) return undefined;
  const t = v.trim();
  return ENTITY_TAG.test(t) || dateHeader(t) !== undefined ? t : 'W/""';
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

/**
 * Answer `Expect: 100-continue` only once something reads the request's body (for a server's
 * `checkContinue` event, which Node otherwise answers with 100 at once): a request refused before
 * its body is read (401, 403, 409, 412, 423...) gets its final status straight away, and the client
 * does not send the body in vain (RFC 9110 §10.1.1). The 100 goes a turn after the first read, and
 * not at all if the final answer began meanwhile (a refusal drains the body just before answering,
 * and closes the connection, since the client may or may not send the body then).
 */
export function continueOnRead(req: IncomingMessage, res: ServerResponse): void {
  const read = req._read;
  let asked = false;
  waiting.add(req);
  req._read = function (this: IncomingMessage, n: number) {
    if (!asked) {
      asked = true;
      setImmediate(() => {
        if (!res.headersSent && !res.writableEnded && !res.destroyed) {
          res.writeContinue();
          waiting.delete(req);
        }
      });
    }
    return read.call(this, n);
  };
}

/** Requests with `Expect: 100-continue` that have not been told to send their body. */
const waiting = new WeakSet<IncomingMessage>();

/** How long the rest of a refused body is still read after the answer, ms. */
export const LINGER_MS = 3_000;

/**
 * Before answering a request whose body is refused unread: the connection closes after the
 * answer, in stages (RFC 9112 §9.6). The answer is sent and the sending side shut, then the rest
 * of the body is still read and dropped for up to {@link LINGER_MS} before the connection is cut.
 * A client that reads the answer only once it has sent its body (libsoup, so GNOME Files) then
 * gets the status (507, 423...) instead of a connection reset mid-body; a slow or endless sender
 * still cannot hold the connection. A client still waiting for `100 Continue` sends no body: its
 * connection is cut with the answer.
 */
export function refuseBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  res.setHeader('connection', 'close');
  // The socket is taken now: a request destroyed meanwhile (its body loop threw) has none.
  const socket = req.socket;
  if (socket && !waiting.has(req)) {
    // Node calls it once a `Connection: close` answer is written (and would cut at once).
    socket.destroySoon = function (this: typeof socket) {
      this.end();
      const cut = setTimeout(() => this.destroy(), LINGER_MS);
      this.once('close', () => clearTimeout(cut));
    };
  } else res.once('finish', () => socket?.destroySoon());
  req.resume();
}

/** The ranges of a request's Range header when it asks more than one (and not too many to serve). */
function multipleRanges(req: IncomingMessage, ranges = parseRangesHeader(header(req, 'range'))) {
  return ranges && ranges.length > 1 && ranges.length <= MAX_RANGES ? ranges : undefined;
}

/**
 * Read options of a GET/HEAD: range, conditions, If-Range, and abort when the client goes. A
 * request for several ranges reads from the start of the file (If-Range and conditions decided
 * as for one) and {@link sendRead} sends the parts.
 */
export function readOptions(req: IncomingMessage, res: ServerResponse): ReadOptions {
  const ranges = parseRangesHeader(header(req, 'range'));
  const range = multipleRanges(req, ranges) ? { start: 0 } : ranges?.length === 1 ? ranges[0] : undefined;
  const conditions = requestConditions(req);
  const ifRange = ifRangeHeader(header(req, 'if-range'));
  return {
    // Unparseable ranges are ignored (RFC 9110); a valid but unsatisfiable one is 416.
    ...(range && { range }),
    ...(Object.keys(conditions).length && { conditions }),
    ...(ifRange && { ifRange }),
    signal: abortOnClose(req, res),
  };
}

/**
 * Answer a GET/HEAD with the result of a read, streaming the body; with the whole info when the
 * request asks for it, and a `Digest` (RFC 3230) when its `Want-Digest` names one the file has.
 */
export async function sendRead(
  req: IncomingMessage,
  res: ServerResponse,
  r: ReadResult,
  head: boolean,
  extra: Record<string, string> = {},
): Promise<void> {
  const ranges = r.status === 206 ? multipleRanges(req) : undefined;
  const parts = ranges && planParts(ranges, r.info.size, readsInOrder(r));
  // None can be had: 416. Better sent whole (overlapping, or out of order for a stream): 200.
  if (parts === null) {
    // A new result, not a copy: the read's file and body stay out of a 416 (which says it has none).
    if (r.body) await release(r.body);
    r = { status: 416, info: r.info };
  } else if (ranges && !parts) r = { ...r, status: 200, range: undefined };
  const digest = digestHeader(header(req, 'want-digest'), r.info.checksums);
  const headers: Record<string, string> = {
    ...infoHeaders(r.info, wantsInfo(req)),
    ...(digest && { digest }),
    'accept-ranges': 'bytes',
    'content-type': r.info.mimeType || 'application/octet-stream',
    // Stored content is the users', not this server's pages: an uploaded HTML or SVG file opened
    // here runs no script and reaches no API with the viewer's credentials.
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    ...extra,
  };
  if (parts) {
    const body = r.body;
    return sendParts(res, r, parts, head, headers, () => (body ? release(body) : Promise.resolve()));
  }
  if (r.status === 200 || r.status === 206) {
    const span = r.range ?? { start: 0, end: r.info.size - 1 };
    headers['content-length'] = String(Math.max(0, span.end - span.start + 1));
    if (r.status === 206) headers['content-range'] = `bytes ${span.start}-${span.end}/${r.info.size}`;
  } else if (r.status === 304) {
    // No Content-Length (it would have to be the 200's) and no representation metadata (RFC 9110 §15.4.5).
    delete headers['content-type'];
  } else {
    headers['content-length'] = '0';
    if (r.status === 416) headers['content-range'] = `bytes */${r.info.size}`;
  }
  res.writeHead(r.status, headers);
  if (r.bytes) {
    res.end(head ? undefined : r.bytes);
    return;
  }
  if (!r.body || head) {
    if (r.body) await release(r.body);
    res.end();
    return;
  }
  if (r.file) {
    const body = r.body;
    try {
      await sendFile(res, r.file, () => release(body));
    } finally {
      (body as { destroy?: () => void }).destroy?.(); // (closed already, unless it failed)
    }
    return;
  }
  await pipeline(r.body, res);
}

/**
 * Destroy a body not read to its end and wait until it closed (for a local file: its handle). A
 * response ends only after that, so a client that has its answer finds the file let go of.
 */
function release(body: NonNullable<ReadResult['body']>): Promise<void> {
  const s = body as NodeJS.ReadableStream & { destroy?: () => void; closed?: boolean };
  if (!s.destroy || s.closed) {
    s.destroy?.();
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    s.once('close', () => resolve());
    s.destroy!();
  });
}

/** Bytes per read of {@link sendFile}; two such buffers per response. */
const FILE_CHUNK = 1024 * 1024;

/**
 * Copy a span of a local file to a response through two buffers used in turn: one is read into
 * while the socket takes the other. (A read stream allocates a fresh buffer per chunk: the page
 * faults and garbage collection cost ~25% more CPU for big files.) A buffer is read into again only
 * once the socket has taken it.
 */
async function sendFile(
  res: ServerResponse,
  file: NonNullable<ReadResult['file']>,
  /** Closes the file once read, before the response ends. */
  done: () => Promise<void>,
): Promise<void> {
  const total = Math.max(0, file.end - file.start + 1);
  const size = Math.min(FILE_CHUNK, Math.max(1, total));
  const bufs = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
  const taken: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  let gone: ((err: Error) => void) | undefined;
  const closed = new Promise<never>((_, reject) => {
    gone = reject;
  });
  closed.catch(() => {});
  const onClose = () => {
    if (!res.writableFinished) gone?.(new StorageError('CANCELLED', 'the client went away'));
  };
  res.once('close', onClose);
  try {
    let pos = file.start;
    for (let i = 0; pos <= file.end; i ^= 1) {
      await Promise.race([taken[i], closed]);
      const buf = bufs[i]!;
      const { bytesRead } = await file.handle.read(buf, 0, Math.min(size, file.end - pos + 1), pos);
      if (bytesRead === 0) throw new StorageError('ABORTED', 'the file got shorter while it was sent');
      pos += bytesRead;
      taken[i] = new Promise<void>((resolve, reject) => {
        res.write(buf.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve()));
      });
      taken[i]!.catch(() => {});
    }
    await Promise.race([Promise.all(taken), closed]);
    await done();
    res.end();
  } catch (err) {
    // A client that went away also closes the file under a read in flight (EBADF): say what it is.
    const cancelled = res.destroyed && !(err instanceof StorageError);
    res.destroy();
    throw cancelled ? new StorageError('CANCELLED', 'the client went away', { cause: err }) : err;
  } finally {
    res.off('close', onClose);
  }
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

/** ownCloud permission letters of a resource. */
export function ocPermissions(info: ResourceInfo): string {
  const p = info.permissions;
  if (!p) return info.type === 'folder' ? 'RDNVCK' : 'RDNVW';
  let s = '';
  if (p.addGrant) s += 'R';
  if (p.delete) s += 'D';
  if (p.move) s += 'NV';
  if (info.type === 'folder') {
    if (p.initiateFileUpload) s += 'C';
    if (p.createContainer) s += 'K';
  } else if (p.initiateFileUpload) s += 'W';
  return s;
}

/** The request header with which Stowage's own client asks for the whole info (`x-stowage-info`). */
export const WANT_INFO_HEADER = 'x-stowage-want-info';

/** Whether the request asks for the whole info in the answer (Stowage's own client does). */
export function wantsInfo(req: IncomingMessage): boolean {
  return req.headers[WANT_INFO_HEADER] === '1';
}

/**
 * The headers Reva's data plane and ownCloud answer with (`OC-Perm` when the info carries
 * permissions); with `full`, also the whole info for Stowage's own client, left out when too big
 * for a header.
 */
export function infoHeaders(info: ResourceInfo, full = false): Record<string, string> {
  const etag = quoteEtag(info.etag);
  const h: Record<string, string> = {
    etag,
    'oc-etag': etag,
    'oc-fileid': formatResourceId(info.id),
    'last-modified': httpDate(info.mtime),
  };
  if (info.permissions) h['oc-perm'] = ocPermissions(info);
  if (full) {
    const whole = Buffer.from(JSON.stringify(info)).toString('base64url');
    if (whole.length <= 8192) h['x-stowage-info'] = whole;
  }
  const sums = info.checksums;
  if (sums?.sha1) h['oc-checksum'] = `SHA1:${sums.sha1}`;
  else if (sums?.md5) h['oc-checksum'] = `MD5:${sums.md5}`;
  else if (sums?.adler32) h['oc-checksum'] = `ADLER32:${sums.adler32}`;
  return h;
}
