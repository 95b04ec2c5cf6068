/**
 * Downloads of local files, which HTTP responses copy through two reused buffers: whole files and
 * ranges across buffer boundaries, empty files, clients that go away, files that shrink meanwhile.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromLetters, ROLES } from '../../src/core/permissions.js';
import { openFds } from '../helpers/fds.js';
import { type DavEnv, startDav } from './server.js';

let env: DavEnv;
let home: string;
let spaceId: string;
let writtenAt: number;
/** The folder shared with `lister`, as a share is reached: by its node id. */
let listedUrl: string;
const MiB = 1024 * 1024;
const big = randomBytes(3 * MiB + 12_345);
/** Small files are read whole at once (up to 64 KiB): either side of that bound. */
const small = randomBytes(5000);
const atBound = randomBytes(64 * 1024);
const pastBound = randomBytes(64 * 1024 + 1);

beforeAll(async () => {
  env = await startDav(
    [
      { id: 'u-dl', username: 'dl' },
      { id: 'u-lister', username: 'lister' },
      { id: 'u-dropper', username: 'dropper' },
    ],
    { watch: false },
  );
  const s = await env.provider.as('dl');
  const sp = await s.personalSpace();
  spaceId = sp.id;
  home = await env.driver.spacePath(sp.id);
  // (a date is an If-Range validator only once it is a second old: see `settled`)
  await s.write({ space: sp.id, path: 'small.bin' }, small);
  await s.write({ space: sp.id, path: 'at-bound.bin' }, atBound);
  await s.write({ space: sp.id, path: 'past-bound.bin' }, pastBound);
  writtenAt = Date.now();
  const listed = await s.mkdir({ space: sp.id, path: 'listed' });
  listedUrl = `dav/spaces/${encodeURIComponent(`${listed.id.storageId}$${sp.id}!${listed.id.opaqueId}`)}/`;
  await s.write({ space: sp.id, path: 'listed/inside.txt' }, 'inside');
  // May see and list the folder, not download from it.
  await s.setGrant(
    { space: sp.id, path: 'listed' },
    { grantee: { type: 'user', id: 'u-lister' }, permissions: fromLetters('spl') },
  );
  await s.write({ space: sp.id, path: 'big.bin' }, big);
  await s.write({ space: sp.id, path: 'empty.bin' }, Buffer.alloc(0));
  await s.write({ space: sp.id, path: 'shrinks.bin' }, randomBytes(32 * MiB));
});
afterAll(() => env?.close());

const get = (p: string, headers: Record<string, string> = {}) =>
  fetch(`${env.url}/remote.php/webdav/${p}`, { headers: { authorization: env.basic('dl'), ...headers } });
const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

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
    // No range of an empty file can be stated in a Content-Range: the (empty) whole, not 416, which
    // would fail players and download managers that always ask for `bytes=0-`.
    for (const range of ['bytes=0-', 'bytes=0-99', 'bytes=-5']) {
      const r = await get('empty.bin', { range });
      expect(r.status, range).toBe(200);
      expect(r.headers.get('content-length')).toBe('0');
    }
    // A last position before the first makes the Range invalid, and an invalid Range is ignored.
    const reversed = await get('small.bin', { range: 'bytes=5-2' });
    expect(reversed.status).toBe(200);
    expect((await reversed.arrayBuffer()).byteLength).toBe(small.length);
  });

  it('serves a resumed download the whole new content once its If-Range no longer holds, never a splice', async () => {
    const s = await env.provider.as('dl');
    const at = { space: spaceId, path: 'resume.txt' };
    await s.write(at, 'AAAA');
    const first = await get('resume.txt', { range: 'bytes=0-1' });
    expect(first.status).toBe(206);
    expect(await first.text()).toBe('AA');
    const lastModified = first.headers.get('last-modified')!;
    const etag = first.headers.get('etag')!;
    // Rewritten within the same second: the date still reads the same, but names nothing strongly
    // (RFC 9110 §8.8.2.2), so the rest of the old content must not be served as a range.
    await s.write(at, 'BBBB');
    const second = await get('resume.txt', { range: 'bytes=2-3', 'if-range': lastModified });
    expect(second.status).toBe(200);
    expect(await second.text()).toBe('BBBB');
    // Replaced by something shorter than the range asked for: the new whole, not 416.
    await s.write(at, 'C');
    for (const validator of [etag, lastModified]) {
      const r = await get('resume.txt', { range: 'bytes=2-', 'if-range': validator });
      expect(r.status, validator).toBe(200);
      expect(await r.text()).toBe('C');
    }
    // An entity tag must be quoted: a bare one names no resource.
    const current = (await s.stat(at)).etag;
    const bare = await get('resume.txt', { range: 'bytes=0-0', 'if-range': current });
    expect(bare.status).toBe(200);
    await bare.arrayBuffer();
    const put = await fetch(`${env.url}/remote.php/webdav/resume.txt`, {
      method: 'PUT',
      headers: { authorization: env.basic('dl'), 'if-match': current },
      body: 'D',
    });
    expect(put.status).toBe(412);
    expect(await (await get('resume.txt')).text()).toBe('C');
  });

  it('never answers 304 to a client whose copy was replaced by a file with an older time (Finder revalidates by date)', async () => {
    const put = (body: string, mtime?: number) =>
      fetch(`${env.url}/remote.php/webdav/dated.txt`, {
        method: 'PUT',
        headers: { authorization: env.basic('dl'), ...(mtime && { 'x-oc-mtime': String(mtime) }) },
        body,
      });
    expect((await put('version A', 1_700_000_100)).status).toBe(201);
    const a = await get('dated.txt');
    const lastModified = a.headers.get('last-modified')!;
    expect(await a.text()).toBe('version A');
    // Another client uploads B with the older time of its own file
    expect((await put('version B', 1_700_000_000)).status).toBe(204);
    const b = await get('dated.txt', { 'if-modified-since': lastModified });
    expect(b.status).toBe(200);
    expect(await b.text()).toBe('version B');
    // Nor with the same time as A's
    expect((await put('version C', 1_700_000_100)).status).toBe(204);
    const c = await get('dated.txt', { 'if-modified-since': lastModified });
    expect(c.status).toBe(200);
    expect(await c.text()).toBe('version C');
    // A date later than any change: not modified
    const later = new Date(Date.now() + 2000).toUTCString();
    expect((await get('dated.txt', { 'if-modified-since': later })).status).toBe(304);
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

  it('lets go of a folder whose HTML index a client gave up half way, at once (not at a garbage collection)', async () => {
    const s = await env.provider.as('dl');
    await s.mkdir({ space: spaceId, path: 'many' });
    for (let i = 0; i < 8000; i += 500)
      await Promise.all(
        Array.from({ length: 500 }, (_, j) =>
          s.write({ space: spaceId, path: `many/a-rather-long-name-so-the-index-is-big-${i + j}.txt` }, 'x'),
        ),
      );
    const before = openFds();
    for (let i = 0; i < 10; i++) {
      const { res } = await partial('many/', 1024);
      res.destroy();
    }
    for (let i = 0; i < 50 && openFds() > before + 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(openFds()).toBeLessThanOrEqual(before + 1);
    // Past 5,000 entries the index is sent as listed, every entry once, and says so.
    const page = await (await get('many/')).text();
    const names = [...page.matchAll(/>a-rather-long-name-so-the-index-is-big-(\d+)\.txt</g)].map((m) =>
      Number(m[1]),
    );
    expect(names).toHaveLength(8000);
    expect(new Set(names).size).toBe(8000);
    expect(page).toMatch(/<\/table><p>More than 5,000 entries: in the storage's order\.<\/p>$/);
  });

  it('reads small files whole: full, ranges, conditions and HEAD over HTTP, and a body for API readers', async () => {
    // Their dates name them strongly once they are a second old (RFC 9110 §8.8.2.2).
    await new Promise((r) => setTimeout(r, Math.max(0, writtenAt + 1100 - Date.now())));
    const before = openFds();
    for (const [name, bytes] of [
      ['small.bin', small],
      ['at-bound.bin', atBound],
      ['past-bound.bin', pastBound],
    ] as const) {
      const whole = await get(name);
      expect(whole.status).toBe(200);
      expect(whole.headers.get('content-length')).toBe(String(bytes.length));
      const etag = whole.headers.get('etag')!;
      expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);
      const mid = await get(name, { range: 'bytes=100-4099' });
      expect(mid.status).toBe(206);
      expect(mid.headers.get('content-range')).toBe(`bytes 100-4099/${bytes.length}`);
      expect(Buffer.from(await mid.arrayBuffer()).equals(bytes.subarray(100, 4100))).toBe(true);
      const tail = await get(name, { range: `bytes=${bytes.length - 1}-` });
      expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(-1))).toBe(true);
      expect((await get(name, { range: `bytes=${bytes.length}-` })).status).toBe(416);
      expect((await get(name, { 'if-none-match': etag })).status).toBe(304);
      // If-Range: the range only while the validator holds, compared strongly (RFC 9110 §13.1.5).
      const lastModified = whole.headers.get('last-modified')!;
      // The same date in the two obsolete forms recipients must accept too (RFC 9110 §5.6.7).
      const d = new Date(lastModified);
      const [wd, dd, mon, yyyy, hms] = lastModified.split(/,? /) as [string, string, string, string, string];
      const weekday = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'][
        d.getUTCDay()
      ]!;
      const rfc850 = `${weekday}, ${dd}-${mon}-${yyyy.slice(2)} ${hms} GMT`;
      const asctime = `${wd} ${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${hms} ${yyyy}`;
      for (const [validator, status] of [
        [etag, 206],
        [lastModified, 206],
        [rfc850, 206],
        [asctime, 206],
        ['"not-it"', 200],
        [`W/${etag}`, 200],
        ['Sat, 01 Jan 2000 00:00:00 GMT', 200],
      ] as const) {
        const r = await get(name, { range: 'bytes=0-9', 'if-range': validator });
        expect(r.status, validator).toBe(status);
        expect((await r.arrayBuffer()).byteLength).toBe(status === 206 ? 10 : bytes.length);
      }
      const head = await fetch(`${env.url}/remote.php/webdav/${name}`, {
        method: 'HEAD',
        headers: { authorization: env.basic('dl') },
      });
      expect(head.headers.get('content-length')).toBe(String(bytes.length));
      expect((await head.arrayBuffer()).byteLength).toBe(0);
    }
    // In process, a small file's result carries its bytes, and `body` streams the same ones.
    const s = await env.provider.as('dl');
    const r = await s.read({ space: spaceId, path: 'small.bin' }, { range: { start: 10, end: 19 } });
    expect(r.status).toBe(206);
    expect(Buffer.from(r.bytes!).equals(small.subarray(10, 20))).toBe(true);
    const streamed: Buffer[] = [];
    for await (const c of r.body!) streamed.push(Buffer.from(c));
    expect(Buffer.concat(streamed).equals(small.subarray(10, 20))).toBe(true);
    // Every file was closed at once.
    expect(openFds()).toBeLessThanOrEqual(before);
  });

  it('reads again a small file rewritten in place while it is looked up, and never answers 412 for it', async () => {
    const file = path.join(home, 'flip.txt');
    fs.writeFileSync(file, 'short');
    // Another process rewrites it in place (truncate, then write) as fast as it can.
    const long = path.join(home, '..', 'flip-long.src');
    fs.writeFileSync(long, Buffer.alloc(60_000, 97));
    const writer = spawn(
      'sh',
      ['-c', `while :; do printf short > '${file}'; cat '${long}' > '${file}'; done`],
      {
        stdio: 'ignore',
      },
    );
    try {
      const statuses = new Map<number, number>();
      for (let i = 0; i < 300; i++) {
        const r = await get('flip.txt');
        const body = Buffer.from(await r.arrayBuffer());
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) expect(body.length).toBe(Number(r.headers.get('content-length')));
      }
      expect(statuses.get(412)).toBeUndefined();
      expect([...statuses.keys()].every((s) => s === 200 || s === 503)).toBe(true);
      expect(statuses.get(200)).toBeGreaterThan(150);
    } finally {
      writer.kill();
      fs.rmSync(long, { force: true });
    }
  });

  it('answers GET of a folder with its index, also to someone who may list it but not download from it', async () => {
    for (const [user, url] of [
      ['dl', 'remote.php/webdav/listed/'],
      ['lister', listedUrl],
    ] as const) {
      const r = await fetch(`${env.url}/${url}`, { headers: { authorization: env.basic(user) } });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await r.text()).toContain('inside.txt');
    }
    // Someone who may only drop files in gets a 403, not a cut connection.
    const s = await env.provider.as('dl');
    await s.setGrant(
      { space: spaceId, path: 'listed' },
      { grantee: { type: 'user', id: 'u-dropper' }, permissions: fromLetters(ROLES.uploader) },
    );
    const drop = await fetch(`${env.url}/${listedUrl}`, { headers: { authorization: env.basic('dropper') } });
    expect(drop.status).toBe(403);
    const refused = await fetch(`${env.url}/${listedUrl}inside.txt`, {
      headers: { authorization: env.basic('lister') },
    });
    expect(refused.status).toBe(403);
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
