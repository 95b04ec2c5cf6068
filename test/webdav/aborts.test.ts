/**
 * Requests cut short or raced by the client (found by a soak of aborted requests): a GET whose
 * client is gone at once, a TUS upload terminated while a PATCH is still appending or finishing
 * it, a chunk sent again while its first try lands, a chunked transfer deleted while a chunk is
 * still coming, and transfers a client gave up on. The server stays up, and no state comes back.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, type DavInit, davFetch, startDav } from './server.js';

let env: DavEnv;
let port: number;

beforeAll(async () => {
  env = await startDav([{ id: 'u-alice', username: 'alice', createSpaces: true }], { watch: false });
  port = Number(new URL(env.url).port);
});
afterAll(() => env?.close());

const dav = (method: string, url: string, init?: DavInit) => davFetch(env, method, url, 'alice', init);
const auth = () => env.basic('alice');

/** A raw HTTP/1.1 exchange whose body is sent in parts, each when the test says. */
function raw(method: string, url: string, headers: Record<string, string>) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  let answer = '';
  s.on('data', (c) => (answer += c));
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  const lines = Object.entries({ host: 'x', authorization: auth(), connection: 'close', ...headers })
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n');
  s.write(`${method} ${url} HTTP/1.1\r\n${lines}\r\n\r\n`);
  return {
    send: (b: Buffer) => new Promise<void>((r) => s.write(b, () => r())),
    /** The status line's code, once the answer came and the connection closed. */
    status: async () => {
      await closed;
      return Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1] ?? 0);
    },
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('webdav: requests cut short or raced by their client', () => {
  it('stays up when GETs of a big file are closed right after they are sent', async () => {
    expect(
      (await dav('PUT', '/remote.php/webdav/big.bin', { body: Buffer.alloc(1024 * 1024, 7) })).status,
    ).toBe(201);
    for (let i = 0; i < 40; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.write(`GET /remote.php/webdav/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth()}\r\n\r\n`);
          setTimeout(() => s.destroy(), i % 4);
        });
        s.on('error', () => {});
        s.on('close', () => resolve());
      });
    }
    const r = await dav('GET', '/remote.php/webdav/big.bin');
    expect(r.status).toBe(200);
    expect((await r.arrayBuffer()).byteLength).toBe(1024 * 1024);
  });

  /** A TUS upload of `length` bytes created on the personal space; its upload URL (a path). */
  async function tusUpload(name: string, length: number): Promise<string> {
    const r = await dav('POST', '/remote.php/webdav/', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': String(length),
        'upload-metadata': `filename ${Buffer.from(name).toString('base64')}`,
      },
    });
    expect(r.status).toBe(201);
    return new URL(r.headers.get('location')!).pathname;
  }

  const tusPatch = (loc: string, length: number) =>
    raw('PATCH', loc, {
      'tus-resumable': '1.0.0',
      'upload-offset': '0',
      'content-type': 'application/offset+octet-stream',
      'content-length': String(length),
    });

  for (const last of [false, true]) {
    it(`keeps a TUS upload terminated while a PATCH ${last ? 'with its last byte' : 'of some of it'} is still coming terminated`, async () => {
      const length = 256 * 1024;
      const name = `tus-${last ? 'last' : 'part'}.bin`;
      const loc = await tusUpload(name, length);
      const sent = last ? length : length / 2;
      const p = tusPatch(loc, sent);
      await p.send(Buffer.alloc(sent / 2, 1));
      await pause(100);
      const del = await fetch(`${env.url}${loc}`, {
        method: 'DELETE',
        headers: { 'tus-resumable': '1.0.0', authorization: auth() },
      });
      expect(del.status).toBe(204);
      await p.send(Buffer.alloc(sent - sent / 2, 1));
      expect(await p.status()).toBe(404);
      // Terminated it stays: nothing to resume, and no file was made.
      const head = await fetch(`${env.url}${loc}`, {
        method: 'HEAD',
        headers: { 'tus-resumable': '1.0.0', authorization: auth() },
      });
      expect(head.status).toBe(404);
      expect((await dav('HEAD', `/remote.php/webdav/${name}`)).status).toBe(404);
      // (and the server is up)
      expect((await dav('PROPFIND', '/remote.php/webdav/', { headers: { depth: '0' } })).status).toBe(207);
    });
  }

  it('counts a chunk sent again while its first try lands once, not twice (no 413)', async () => {
    const size = 512 * 1024;
    const up = '/remote.php/dav/uploads/alice/retried';
    expect((await dav('MKCOL', up, { headers: { 'oc-total-length': String(size) } })).status).toBe(201);
    const data = Buffer.alloc(size, 3);
    const headers = { 'content-length': String(size) };
    // The first try, all of it but its last byte (a client that then timed out on it)...
    const first = raw('PUT', `${up}/00000`, headers);
    await first.send(data.subarray(0, size - 1));
    await pause(100);
    // ...the second try, half of it; then the first lands.
    const second = raw('PUT', `${up}/00000`, headers);
    await second.send(data.subarray(0, size / 2));
    await pause(100);
    await first.send(data.subarray(size - 1));
    expect(await first.status()).toBe(201);
    await second.send(data.subarray(size / 2));
    expect(await second.status()).toBe(201);
    const move = await dav('MOVE', `${up}/.file`, {
      headers: { destination: `${env.url}/remote.php/dav/files/alice/retried.bin` },
    });
    expect(move.status).toBe(201);
    expect(Buffer.from(await (await dav('GET', '/remote.php/webdav/retried.bin')).arrayBuffer())).toEqual(
      data,
    );
  });

  it('deletes a chunked transfer while a chunk is still coming, leaving nothing behind', async () => {
    const chunks = path.join(env.root, 'chunks');
    for (let i = 0; i < 5; i++) {
      const up = `/remote.php/dav/uploads/alice/cancelled-${i}`;
      expect((await dav('MKCOL', up)).status).toBe(201);
      const put = raw('PUT', `${up}/00000`, { 'content-length': String(64 * 1024) });
      await put.send(Buffer.alloc(32 * 1024, 1));
      await pause(50);
      // (and more chunks start while it goes: each makes a temp file in the transfer's folder)
      const more = Array.from({ length: 8 }, (_, n) =>
        raw('PUT', `${up}/0000${n + 1}`, { 'content-length': '1' }),
      );
      expect((await dav('DELETE', up)).status).toBe(204);
      await put.send(Buffer.alloc(32 * 1024, 1));
      expect(await put.status()).toBe(404);
      for (const m of more) {
        await m.send(Buffer.from('x'));
        expect([201, 404]).toContain(await m.status());
      }
      await dav('DELETE', up);
    }
    const left = fs
      .readdirSync(chunks, { recursive: true })
      .map(String)
      .filter((p) => p.includes('cancelled'));
    expect(left).toEqual([]);
  });

  it('makes room for a new transfer by dropping the one idle longest, once a user has a hundred', async () => {
    const base = '/remote.php/dav/uploads/alice';
    for (let i = 0; i < 100; i++) expect((await dav('MKCOL', `${base}/left-${i}`)).status).toBe(201);
    // All of them busy a moment ago: none goes, the new one is refused.
    expect((await dav('MKCOL', `${base}/new-0`)).status).toBe(507);
    // Given up by their client: a minute without a chunk.
    const userDir = fs
      .readdirSync(path.join(env.root, 'chunks'))
      .map((d) => path.join(env.root, 'chunks', d))
      .find((d) => fs.existsSync(path.join(d, 'left-0')))!;
    for (let i = 0; i < 100; i++) {
      const old = new Date(Date.now() - 120_000 + i * 100);
      fs.utimesSync(path.join(userDir, `left-${i}`), old, old);
    }
    expect((await dav('MKCOL', `${base}/new-1`)).status).toBe(201);
    expect(fs.existsSync(path.join(userDir, 'left-0'))).toBe(false);
    expect(fs.existsSync(path.join(userDir, 'left-1'))).toBe(true);
    for (let i = 1; i < 100; i++) await dav('DELETE', `${base}/left-${i}`);
    await dav('DELETE', `${base}/new-1`);
  });
});
