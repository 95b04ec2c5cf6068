/**
 * Cross-origin requests (the Fetch standard's CORS) for web apps served from another origin than
 * the storage: a browser file manager, `tus-js-client`, the `webdav` npm package in a page. Only
 * the origins named are answered; a preflight is answered before any sign-in (a browser sends no
 * credentials with it), everything else still needs them. No `Access-Control-Allow-Credentials`:
 * a page sends its own `Authorization` header, and a browser's remembered Basic credentials or
 * cookies never ride along to a cross-origin request.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StorageError } from '../core/errors.js';

/** Options of {@link corsHandler}. */
export interface CorsOptions {
  /**
   * Origins whose pages may call (`https://files.example.org`, `http://localhost:3000`), or `*`
   * for any. An origin is a scheme, a host and a port, nothing else.
   */
  origins: readonly string[];
  /** How long a browser may keep a preflight's answer, seconds (default 600). */
  maxAgeSeconds?: number;
}

/** Every method the doors answer (WebDAV, the ownCloud endpoints, TUS and the data plane). */
const METHODS =
  'GET, HEAD, PUT, POST, PATCH, DELETE, OPTIONS, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK, REPORT';

/** Response headers a page may read besides the safelisted ones (what clients of the doors use). */
const EXPOSED = [
  'ETag',
  'OC-ETag',
  'OC-FileId',
  'OC-Checksum',
  'X-OC-Mtime',
  'Last-Modified',
  'Content-Range',
  'Accept-Ranges',
  'Content-Disposition',
  'Location',
  'Lock-Token',
  'DAV',
  'Allow',
  'Retry-After',
  'WWW-Authenticate',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Tus-Checksum-Algorithm',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Defer-Length',
  'Upload-Metadata',
  'X-Stowage-Error',
  'X-Stowage-Info',
].join(', ');

/** `scheme://host[:port]` in lower case, or undefined when `s` is no origin. */
function originOf(s: string): string | undefined {
  if (s === 'null') return undefined;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash)
    return undefined;
  // (new URL drops a default port and lower-cases the host; a trailing "/" is dropped too)
  return u.origin;
}

/**
 * A request hook for cross-origin callers: it adds the CORS response headers for an allowed
 * origin and answers preflights (true: answered, the request goes no further). Requests from
 * other origins get no CORS headers (the browser keeps their answers from the page), and their
 * preflights a 403.
 */
export function corsHandler(opts: CorsOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const any = opts.origins.includes('*');
  const allowed = new Set<string>();
  for (const o of opts.origins) {
    if (o === '*') continue;
    const norm = originOf(o.trim());
    if (!norm)
      throw new StorageError(
        'INVALID_ARGUMENT',
        `CORS origin ${JSON.stringify(o)} is no origin (scheme://host[:port], or *)`,
      );
    allowed.add(norm);
  }
  const maxAge = String(Math.max(0, Math.floor(opts.maxAgeSeconds ?? 600)));
  return (req, res) => {
    const given = req.headers.origin;
    if (given === undefined) return false;
    res.setHeader('vary', 'Origin');
    const origin = originOf(given);
    const ok = origin !== undefined && (any || allowed.has(origin));
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!ok) {
      if (!preflight) return false;
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`cross-origin requests from ${origin ?? 'this origin'} are not allowed here\n`);
      return true;
    }
    res.setHeader('access-control-allow-origin', given);
    if (!preflight) {
      res.setHeader('access-control-expose-headers', EXPOSED);
      return false;
    }
    // (the request headers asked for are allowed: what a page may send is the server's to judge,
    // with the request's own credentials, as for any client)
    const asked = req.headers['access-control-request-headers'];
    res.writeHead(204, {
      'access-control-allow-methods': METHODS,
      ...(asked && { 'access-control-allow-headers': asked }),
      'access-control-max-age': maxAge,
      vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    });
    res.end();
    // The body of a preflight, if any, is not wanted.
    req.resume();
    return true;
  };
}
