/**
 * GETs of several ranges at once (RFC 9110 §14.6), as vector reads (davix, ROOT over HTTP) send
 * them: one multipart/byteranges answer with the parts in the order asked, merged where they
 * overlap or nearly touch, read from a local file, from a small file held whole, and from a stream
 * (a driver that gives neither); the whole file where ranges would send more than it.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Driver } from '../../src/index.js';
import { openFds } from '../helpers/fds.js';
import { type DavEnv, overriding, startDav } from './server.js';

const MiB = 1024 * 1024;
const big = randomBytes(3 * MiB + 12_345);
/** Small files are read whole at once (up to 64 KiB). */
const small = randomBytes(5000);

let env: DavEnv;
/** The same, through a driver whose reads give only a stream (no local file, no bytes at hand). */
let streamed: DavEnv;

beforeAll(async () => {
  const onlyStreams = (d: Driver) =>
    overriding(d, {
      read: async (ref, opts) => {
        const { file: _file, bytes: _bytes, ...rest } = await d.read(ref, opts);
        return rest;
      },
    });
  [env, streamed] = await Promise.all([
    startDav([{ id: 'u-br', username: 'br' }], { watch: false }),
    startDav([{ id: 'u-br', username: 'br' }], { watch: false, wrap: onlyStreams }),
  ]);
  for (const e of [env, streamed]) {
    const s = await e.provider.as('br');
    const sp = await s.personalSpace();
    await s.write({ space: sp.id, path: 'big.bin' }, big);
    await s.write({ space: sp.id, path: 'small.txt' }, small);
  }
});
afterAll(async () => {
  await env?.close();
  await streamed?.close();
});

const get = (e: DavEnv, p: string, headers: Record<string, string> = {}, method = 'GET') =>
  fetch(`${e.url}/remote.php/webdav/${p}`, { method, headers: { authorization: e.basic('br'), ...headers } });

interface Part {
  type: string;
  range: string;
  /** sha1 of the part's bytes (deep equality of MiBs is slow) */
  sha1: string;
}
const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

/** The parts of a multipart/byteranges body, checked for its framing on the way. */
async function partsOf(r: Response): Promise<Part[]> {
  const boundary = /^multipart\/byteranges; boundary=([0-9a-f]+)$/.exec(
    r.headers.get('content-type') ?? '',
  )?.[1];
  expect(boundary, r.headers.get('content-type') ?? '').toBeTruthy();
  const body = Buffer.from(await r.arrayBuffer());
  expect(String(body.length)).toBe(r.headers.get('content-length'));
  const delim = Buffer.from(`\r\n--${boundary}`);
  const all = Buffer.concat([Buffer.from('\r\n'), body]);
  expect(all.subarray(all.length - delim.length - 4).toString()).toBe(`${delim}--\r\n`);
  const parts: Part[] = [];
  let at = 0;
  for (;;) {
    expect(all.indexOf(delim, at)).toBe(at);
    at += delim.length;
    if (all.subarray(at, at + 2).toString() === '--') break;
    const headEnd = all.indexOf('\r\n\r\n', at);
    const head = all
      .subarray(at + 2, headEnd)
      .toString('latin1')
      .split('\r\n');
    const next = all.indexOf(delim, headEnd + 4);
    const field = (name: string) => head.find((h) => h.startsWith(`${name}: `))?.slice(name.length + 2) ?? '';
    parts.push({
      type: field('content-type'),
      range: field('content-range'),
      sha1: sha1(all.subarray(headEnd + 4, next)),
    });
    at = next;
  }
  return parts;
}

/** The parts expected for inclusive spans of `file`. */
const expected = (file: Buffer, spans: [number, number][], type = 'application/octet-stream') =>
  spans.map(([s, e]) => ({
    type,
    range: `bytes ${s}-${e}/${file.length}`,
    sha1: sha1(file.subarray(s, e + 1)),
  }));

describe('webdav: several ranges in one GET', () => {
  it('sends the parts of a local file in the order asked, across read boundaries, as HEAD announces them', async () => {
    const n = big.length;
    const range = `bytes=1048570-2097160, 0-99 ,-10`;
    const r = await get(env, 'big.bin', { range });
    expect(r.status).toBe(206);
    expect(r.headers.get('content-range')).toBeNull();
    expect(r.headers.get('accept-ranges')).toBe('bytes');
    expect(r.headers.get('etag')).toBeTruthy();
    const spans: [number, number][] = [
      [1048570, 2097160],
      [0, 99],
      [n - 10, n - 1],
    ];
    expect(await partsOf(r)).toEqual(expected(big, spans));
    const head = await get(env, 'big.bin', { range }, 'HEAD');
    expect(head.status).toBe(206);
    expect(head.headers.get('content-type')).toMatch(/^multipart\/byteranges; boundary=/);
    expect(head.headers.get('content-length')).toBe(r.headers.get('content-length'));
    // A small file, held whole by the read: the parts from those bytes.
    const s = await get(env, 'small.txt', { range: 'bytes=4990-,0-9,1000-1099' });
    expect(await partsOf(s)).toEqual(
      expected(
        small,
        [
          [4990, 4999],
          [0, 9],
          [1000, 1099],
        ],
        'text/plain',
      ),
    );
  });

  it('merges ranges that overlap or nearly touch, drops those past the end, and answers 416 when none is left', async () => {
    for (const [range, span] of [
      ['bytes=0-9,5-19', 'bytes 0-19/5000'],
      ['bytes=0-9,50-59', 'bytes 0-59/5000'], // 40 bytes apart: less than a part's header
      ['bytes=100-199,0-120', 'bytes 0-199/5000'],
      ['bytes=0-9, 999999-', 'bytes 0-9/5000'],
      ['bytes=-10,4000-', 'bytes 4000-4999/5000'],
    ] as const) {
      const r = await get(env, 'small.txt', { range });
      expect(r.status, range).toBe(206);
      expect(r.headers.get('content-type'), range).toBe('text/plain');
      expect(r.headers.get('content-range'), range).toBe(span);
      const [start, end] = span.slice(6, -5).split('-').map(Number) as [number, number];
      expect(Buffer.from(await r.arrayBuffer()).equals(small.subarray(start, end + 1)), range).toBe(true);
    }
    const none = await get(env, 'small.txt', { range: 'bytes=5000-,999999-6000000' });
    expect(none.status).toBe(416);
    expect(none.headers.get('content-range')).toBe('bytes */5000');
    expect((await none.arrayBuffer()).byteLength).toBe(0);
  });

  it('sends the whole file for ranges adding up to more than it, too many ranges, a malformed one, or a stale If-Range', async () => {
    const whole = async (range: string, extra: Record<string, string> = {}) => {
      const r = await get(env, 'small.txt', { range, ...extra });
      expect(r.status, range).toBe(200);
      expect(r.headers.get('content-range')).toBeNull();
      expect(Buffer.from(await r.arrayBuffer()).equals(small), range).toBe(true);
    };
    // The same bytes asked twice over (a way to have a server send a file many times).
    await whole('bytes=0-2999,4000-4999,0-4999');
    await whole('bytes=0-9,x-1');
    await whole('bytes=0-9,20-10');
    await whole('bytes=0-9,100-199', { 'if-range': '"not-the-etag"' });
    const many = (k: number) =>
      `bytes=${Array.from({ length: k }, (_, i) => `${i * 20_000}-${i * 20_000 + 9}`).join(',')}`;
    const tooMany = await get(env, 'big.bin', { range: many(201) });
    expect(tooMany.status).toBe(200);
    expect(tooMany.headers.get('content-length')).toBe(String(big.length));
    await tooMany.arrayBuffer();
    const most = await get(env, 'big.bin', { range: many(157) });
    expect(most.status).toBe(206);
    const parts = await partsOf(most);
    expect(parts).toHaveLength(157);
    expect(parts[156]).toEqual(expected(big, [[156 * 20_000, 156 * 20_000 + 9]])[0]);
    // The etag still holds: the parts.
    const etag = (await get(env, 'small.txt', {}, 'HEAD')).headers.get('etag')!;
    const held = await get(env, 'small.txt', { range: 'bytes=0-9,100-199', 'if-range': etag });
    expect(held.status).toBe(206);
    expect(await partsOf(held)).toHaveLength(2);
  });

  it('reads the parts from a stream when the driver gives no file, in order and near enough, else the whole file', async () => {
    // 951,414 bytes read and dropped on the way: under the 1 MiB allowed.
    const r = await get(streamed, 'big.bin', { range: 'bytes=10-19,500000-1548575,2000000-2000009' });
    expect(r.status).toBe(206);
    expect(await partsOf(r)).toEqual(
      expected(big, [
        [10, 19],
        [500000, 1548575],
        [2000000, 2000009],
      ]),
    );
    const s = await get(streamed, 'small.txt', { range: 'bytes=0-9,100-199' });
    expect(await partsOf(s)).toHaveLength(2);
    const whole = async (range: string) => {
      const w = await get(streamed, 'big.bin', { range });
      expect(w.status, range).toBe(200);
      expect(sha1(new Uint8Array(await w.arrayBuffer())), range).toBe(sha1(big));
    };
    // Out of order: a stream cannot go back, and reading it twice could splice two contents.
    await whole('bytes=2000000-2000009,0-9');
    // Two bytes, 3 MiB apart: the whole file at the client's pace, not 3 MiB read ahead of it.
    await whole('bytes=0-0,-1');
    // A local file is read where each part is, however far apart.
    expect((await get(env, 'big.bin', { range: 'bytes=0-0,-1' })).status).toBe(206);
  });

  it('answers 416 with no body on a kept connection: the next answer follows at once', async () => {
    for (const [e, file, range] of [
      [env, 'small.txt', 'bytes=5000-5010,7000-'],
      [env, 'big.bin', 'bytes=9999999-,99999999-'],
      [streamed, 'big.bin', 'bytes=9999999-,99999999-'],
      [env, 'small.txt', 'bytes=-0,-0'],
    ] as const) {
      const u = new URL(e.url);
      const raw = await new Promise<string>((resolve, reject) => {
        const sock = net.connect(Number(u.port), u.hostname);
        const chunks: Buffer[] = [];
        sock.on('data', (c) => chunks.push(c));
        sock.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
        sock.on('error', reject);
        const auth = e.basic('br');
        sock.write(
          `GET /remote.php/webdav/${file} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nRange: ${range}\r\n\r\n` +
            `HEAD /remote.php/webdav/small.txt HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`,
        );
      });
      expect(raw, range).toMatch(/^HTTP\/1\.1 416 /);
      expect(raw).toMatch(/\r\ncontent-length: 0\r\n/i);
      const afterFirst = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      expect(afterFirst.slice(0, 16), `${file} ${range}`).toBe('HTTP/1.1 200 OK\r');
    }
  });

  it('lets the file go after a multipart answer, whole or given up half way, and goes on serving', async () => {
    for (const e of [env, streamed]) {
      const before = openFds();
      await (await get(e, 'big.bin', { range: 'bytes=0-9,2000000-2000009' })).arrayBuffer();
      // A client that reads the first MiB of a 3 MiB answer of parts, then goes.
      const u = new URL(`${e.url}/remote.php/webdav/big.bin`);
      await new Promise<void>((resolve, reject) => {
        const req = http.get(
          {
            host: u.hostname,
            port: u.port,
            path: u.pathname,
            headers: { authorization: e.basic('br'), range: 'bytes=0-1048575,2000000-3000000' },
          },
          (res) => {
            let got = 0;
            res.on('data', (c: Buffer) => {
              got += c.length;
              if (got >= MiB) {
                res.destroy();
                resolve();
              }
            });
          },
        );
        req.once('error', reject);
      });
      await expect.poll(openFds, { timeout: 5000 }).toBeLessThanOrEqual(before);
      const again = await get(e, 'small.txt', { range: 'bytes=0-0,4999-4999' });
      expect(await partsOf(again)).toEqual(
        expected(
          small,
          [
            [0, 0],
            [4999, 4999],
          ],
          'text/plain',
        ),
      );
    }
  });
});
