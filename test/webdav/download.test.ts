/**
 * Downloads of local files, which HTTP responses copy through two reused buffers: whole files and
 * ranges across buffer boundaries, empty files, clients that go away, files that shrink meanwhile.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, startDav } from './server.js';

let env: DavEnv;
let home: string;
const MiB = 1024 * 1024;
const big = randomBytes(3 * MiB + 12_345);

beforeAll(async () => {
  env = await startDav([{ id: 'u-dl', username: 'dl' }], { watch: false });
  const s = await env.provider.as('dl');
  const sp = await s.personalSpace();
  home = await env.driver.spacePath(sp.id);
  await s.write({ space: sp.id, path: 'big.bin' }, big);
  await s.write({ space: sp.id, path: 'empty.bin' }, Buffer.alloc(0));
  await s.write({ space: sp.id, path: 'shrinks.bin' }, randomBytes(32 * MiB));
});
afterAll(() => env?.close());

const get = (p: string, headers: Record<string, string> = {}) =>
  fetch(`${env.url}/remote.php/webdav/${p}`, { headers: { authorization: env.basic('dl'), ...headers } });
const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');
const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** A request whose body is read until `stopAfter` bytes, then left hanging or dropped. */
function partial(p: string, stopAfter: number): Promise<{ res: http.IncomingMessage; got: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${env.url}/remote.php/webdav/${p}`);
    const req = http.get(
      { host: u.hostname, port: u.port, path: u.pathname, headers: { authorization: env.basic('dl') } },
      (res) => {
        let got = 0;
        const onData = (c: Buffer) => {
          got += c.length;
          if (got >= stopAfter) {
            res.pause();
            res.off('data', onData);
            resolve({ res, got });
          }
        };
        res.on('data', onData);
      },
    );
    req.once('error', reject);
  });
}

describe('webdav: downloads', () => {
  it('sends whole files over several buffers, and ranges across their boundaries', async () => {
    const whole = await get('big.bin');
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-length')).toBe(String(big.length));
    expect(sha1(new Uint8Array(await whole.arrayBuffer()))).toBe(sha1(big));

    for (const [range, start, end] of [
      ['bytes=1048570-2097160', 1048570, 2097160],
      ['bytes=0-0', 0, 0],
      [`bytes=${big.length - 5}-`, big.length - 5, big.length - 1],
      ['bytes=-1048577', big.length - 1048577, big.length - 1],
    ] as const) {
      const r = await get('big.bin', { range });
      expect(r.status).toBe(206);
      expect(r.headers.get('content-range')).toBe(`bytes ${start}-${end}/${big.length}`);
      expect(Buffer.from(await r.arrayBuffer()).equals(big.subarray(start, end + 1))).toBe(true);
    }
    const empty = await get('empty.bin');
    expect(empty.status).toBe(200);
    expect((await empty.arrayBuffer()).byteLength).toBe(0);
  });

  it('closes the file after each download, whole or given up half way, and goes on serving', async () => {
    const before = openFds();
    for (let i = 0; i < 5; i++) await (await get('big.bin')).arrayBuffer();
    for (let i = 0; i < 5; i++) {
      const { res } = await partial('shrinks.bin', 2 * MiB);
      res.destroy();
    }
    // The server notices each close and lets go of its file.
    for (let i = 0; i < 50 && openFds() > before + 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(openFds()).toBeLessThanOrEqual(before + 1);
    expect(sha1(new Uint8Array(await (await get('big.bin')).arrayBuffer()))).toBe(sha1(big));
  });

  it('cuts the response short, never pads it, when the file shrinks while it is sent', async () => {
    const { res, got } = await partial('shrinks.bin', MiB);
    fs.truncateSync(path.join(home, 'shrinks.bin'), 4 * MiB);
    const total = await new Promise<number>((resolve) => {
      let n = got;
      res.on('data', (c: Buffer) => {
        n += c.length;
      });
      res.once('error', () => resolve(n));
      res.once('aborted', () => resolve(n));
      res.once('end', () => resolve(n));
      res.once('close', () => resolve(n));
      res.resume();
    });
    expect(total).toBeLessThan(32 * MiB);
    expect(res.complete).toBe(false);
    expect((await get('big.bin')).status).toBe(200);
  });
});
