/**
 * Cross-origin calls from web pages (CORS): preflights answered before any sign-in for the
 * origins allowed, the headers clients read exposed to them, other origins left without CORS
 * headers (a browser then keeps the answer from the page) and their preflights refused.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corsHandler } from '../../src/http/cors.js';
import { type DavEnv, startDav } from './server.js';

let env: DavEnv;
const APP = 'https://files.example.org';

beforeAll(async () => {
  env = await startDav([{ id: 'u-ann', username: 'ann' }], {
    watch: false,
    cors: { origins: [APP, 'http://localhost:3000'] },
  });
});
afterAll(() => env?.close());

/** A raw request (fetch would not send an Origin of our choosing everywhere). */
function request(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${env.url}${path}`, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('CORS', () => {
  it('answers a preflight from an allowed origin without credentials, with every method the doors take', async () => {
    for (const origin of [APP, 'http://localhost:3000', 'HTTPS://FILES.example.org:443']) {
      const r = await request('OPTIONS', '/remote.php/webdav/', {
        origin,
        'access-control-request-method': 'PROPFIND',
        'access-control-request-headers': 'authorization, depth, content-type',
      });
      expect(r.status, origin).toBe(204);
      expect(r.headers['access-control-allow-origin']).toBe(origin);
      expect(r.headers['access-control-allow-methods']).toMatch(/\bPROPFIND\b.*\bMOVE\b.*\bLOCK\b/);
      expect(r.headers['access-control-allow-headers']).toBe('authorization, depth, content-type');
      expect(r.headers['access-control-max-age']).toBe('600');
      // (a browser's remembered credentials and cookies are never sent along)
      expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    }
  });

  it('lets an allowed page read the answers and the headers its clients use, signed in as ever', async () => {
    const auth = env.basic('ann');
    const put = await request(
      'PUT',
      '/remote.php/webdav/c.txt',
      { origin: APP, authorization: auth },
      'cors',
    );
    expect(put.status).toBe(201);
    expect(put.headers['access-control-allow-origin']).toBe(APP);
    const exposed = put.headers['access-control-expose-headers']!.split(', ');
    for (const h of [
      'ETag',
      'OC-FileId',
      'OC-ETag',
      'Location',
      'Content-Range',
      'Upload-Offset',
      'Lock-Token',
    ])
      expect(exposed).toContain(h);
    expect(put.headers.vary).toContain('Origin');
    const list = await request('PROPFIND', '/remote.php/webdav/', {
      origin: APP,
      authorization: auth,
      depth: '1',
    });
    expect(list.status).toBe(207);
    expect(list.text).toContain('c.txt');
    expect(list.headers['access-control-allow-origin']).toBe(APP);
    expect(list.headers.vary).toBe('Origin, Brief, Prefer');
    // Still no way in without credentials: a cross-origin page is a client like any other.
    const anon = await request('PROPFIND', '/remote.php/webdav/', { origin: APP, depth: '1' });
    expect(anon.status).toBe(401);
    expect(anon.headers['access-control-allow-origin']).toBe(APP);
    // A plain OPTIONS (no preflight) is WebDAV's, as before.
    const options = await request('OPTIONS', '/remote.php/webdav/', { origin: APP, authorization: auth });
    expect(options.headers.dav).toMatch(/\b1\b.*\b2\b/);
  });

  it('gives other origins no CORS headers, and refuses their preflights', async () => {
    for (const origin of [
      'https://evil.example',
      'null',
      'https://files.example.org.evil.example',
      'file://',
    ]) {
      const pre = await request('OPTIONS', '/remote.php/webdav/', {
        origin,
        'access-control-request-method': 'DELETE',
      });
      expect(pre.status, origin).toBe(403);
      expect(pre.headers['access-control-allow-origin']).toBeUndefined();
      const get = await request('GET', '/remote.php/webdav/c.txt', {
        origin,
        authorization: env.basic('ann'),
      });
      expect(get.status).toBe(200);
      expect(get.headers['access-control-allow-origin']).toBeUndefined();
    }
    // Without an Origin (not a browser page), nothing changes.
    const plain = await request('GET', '/remote.php/webdav/c.txt', { authorization: env.basic('ann') });
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
    expect(plain.headers.vary).toBeUndefined();
  });

  it('takes * for any origin, and refuses what is no origin', () => {
    expect(() => corsHandler({ origins: ['https://a.example/path'] })).toThrow(/no origin/);
    expect(() => corsHandler({ origins: ['files.example.org'] })).toThrow(/no origin/);
    const any = corsHandler({ origins: ['*'] });
    const headers: Record<string, string> = {};
    const res = {
      setHeader: (k: string, v: string) => {
        headers[k] = v;
      },
    } as unknown as http.ServerResponse;
    const req = { method: 'GET', headers: { origin: 'https://anyone.example' } } as http.IncomingMessage;
    expect(any(req, res)).toBe(false);
    expect(headers['access-control-allow-origin']).toBe('https://anyone.example');
  });
});
