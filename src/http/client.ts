/**
 * What Stowage's HTTP clients share (the CS3 client driver's data-plane transfers, the WebDAV
 * client driver): streamed requests whose body failures cut the request off, conditional
 * headers, and reading a resource's info or an error back from an answer.
 *
 * @module
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { bodyChunks } from '../core/body.js';
import { parseHttpDate } from '../core/conditions.js';
import type { Body } from '../core/driver.js';
import { StorageError, toStorageError } from '../core/errors.js';
import type { Conditions, ReadResult, ResourceInfo } from '../core/types.js';
import { WANT_INFO_HEADER } from './common.js';

/** Keep-alive agents for http and https. */
export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export function keepAliveAgents(): Agents {
  return { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
}

/**
 * One request, its body streamed; a body that fails destroys the request (the server sees an
 * unfinished body and keeps nothing) and the failure is what the promise rejects with.
 */
export function httpRequest(
  agents: Agents,
  method: string,
  url: string,
  headers: Record<string, string>,
  body: Body | undefined,
  signal: AbortSignal | undefined,
): Promise<http.IncomingMessage> {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(u, {
      method,
      headers: { [WANT_INFO_HEADER]: '1', ...headers },
      agent: u.protocol === 'https:' ? agents.https : agents.http,
      ...(signal && { signal }),
    });
    let bodyError: unknown;
    req.once('response', resolve);
    req.once('error', (err) => {
      if (StorageError.is(bodyError)) reject(bodyError);
      else if (bodyError)
        reject(new StorageError('CANCELLED', 'the body failed', { reason: 'body', cause: bodyError }));
      else if (signal?.aborted) reject(new StorageError('CANCELLED', 'cancelled', { cause: err }));
      else reject(toStorageError(err, 'transfer'));
    });
    if (body === undefined) {
      req.end();
      return;
    }
    const source = Readable.from(bodyChunks(body), { objectMode: false });
    source.once('error', (err) => {
      bodyError = err;
      req.destroy(err);
    });
    source.pipe(req);
  });
}

/**
 * The body, checked against its declared size on the way: a longer or shorter one fails here, so
 * the request is cut off before the server commits anything (and before it waits for bytes that
 * never come).
 */
export async function* exactly(body: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > size) {
      throw new StorageError('INVALID_ARGUMENT', `body longer than the declared ${size} bytes`, {
        reason: 'size-mismatch',
      });
    }
    yield chunk;
  }
  if (n !== size) {
    throw new StorageError('INVALID_ARGUMENT', `body of ${n} bytes, ${size} declared`, {
      reason: 'size-mismatch',
    });
  }
}

/** An etag as a header wants it: quoted (unless it already is, or is weak). */
export function quoted(e: string): string {
  return e.startsWith('"') || e.startsWith('W/') ? e : `"${e}"`;
}

/** An If-Range validator as a header: a date as it is, an entity tag quoted. */
export function ifRangeValue(v: string): string {
  return parseHttpDate(v) !== undefined ? v.trim() : quoted(v);
}

export function conditionHeaders(c: Conditions | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  if (!c) return h;
  const list = (v: readonly string[] | '*') => (v === '*' ? '*' : v.map(quoted).join(', '));
  if (c.ifMatch !== undefined) h['if-match'] = list(c.ifMatch);
  if (c.ifNoneMatch !== undefined) h['if-none-match'] = list(c.ifNoneMatch);
  if (c.ifModifiedSince !== undefined) h['if-modified-since'] = new Date(c.ifModifiedSince).toUTCString();
  if (c.ifUnmodifiedSince !== undefined)
    h['if-unmodified-since'] = new Date(c.ifUnmodifiedSince).toUTCString();
  return h;
}

export function infoFrom(res: http.IncomingMessage): ResourceInfo | undefined {
  const raw = res.headers['x-stowage-info'];
  if (typeof raw !== 'string') return undefined;
  try {
    return JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as ResourceInfo;
  } catch {
    return undefined;
  }
}

/** The first `limit` bytes of an (error) answer's body, as text. */
export async function bodyHead(res: http.IncomingMessage, limit = 65_536): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    size += (c as Buffer).length;
    if (size > limit) break;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A download's answer as a ReadResult: its status, the served range, and the body when there is one. */
export function readResultOf(res: http.IncomingMessage, info: ResourceInfo): ReadResult {
  const status = res.statusCode as ReadResult['status'];
  const out: ReadResult = { status, info };
  if (status === 206) {
    const m = /^bytes (\d+)-(\d+)\//.exec(String(res.headers['content-range'] ?? ''));
    if (m) out.range = { start: Number(m[1]), end: Number(m[2]) };
  }
  if (status === 200 || status === 206) out.body = res;
  else res.resume();
  return out;
}

/** The StorageError an HTTP error answer stands for (its JSON body, else its status). */
export async function httpFailure(res: http.IncomingMessage): Promise<StorageError> {
  const text = await bodyHead(res);
  try {
    const e = JSON.parse(text) as {
      code?: string;
      reason?: string;
      message?: string;
    };
    if (e.code) {
      return new StorageError(
        e.code as StorageError['code'],
        e.message ?? 'transfer failed',
        e.reason ? { reason: e.reason as StorageError['reason'] & string } : {},
      );
    }
  } catch {
    // not ours
  }
  const code =
    res.statusCode === 404
      ? 'NOT_FOUND'
      : res.statusCode === 401
        ? 'UNAUTHENTICATED'
        : res.statusCode === 403
          ? 'PERMISSION_DENIED'
          : res.statusCode === 412
            ? 'FAILED_PRECONDITION'
            : res.statusCode === 423
              ? 'LOCKED'
              : res.statusCode === 507
                ? 'INSUFFICIENT_STORAGE'
                : 'INTERNAL';
  return new StorageError(code, `transfer failed with HTTP ${res.statusCode}`);
}
