/**
 * stowage/webdav-server: the npm webdav-server package (v2) serving a Stowage space through our
 * FileSystem adapter. Bytes must land in the space (with ids and checksums), and come back.
 */
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v2 as webdav } from 'webdav-server';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import {
  createWebdavServerFileSystem,
  WEBDAV_SERVER_PROPERTY_PREFIX,
} from '../../src/webdav-server/index.js';
import { tempRoot } from '../helpers/tmp.js';

let storage: StorageProvider;
let server: webdav.WebDAVServer;
let url: string;
let spaceId: string;
const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');

beforeAll(async () => {
  const root = await tempRoot('wds');
  storage = new StorageProvider({ drivers: await createPosixDriver({ root: path.join(root, 'data') }) });
  const space = await storage.createSpace({ type: 'project', name: 'Served by webdav-server' });
  spaceId = space.id;
  server = new webdav.WebDAVServer({ port: 0, hostname: '127.0.0.1' });
  const fs = await createWebdavServerFileSystem({ storage, space: space.id });
  await new Promise<void>((resolve) => server.setFileSystem('/', fs, () => resolve()));
  const http = await new Promise<import('node:http').Server>((resolve) => server.start((s) => resolve(s!)));
  url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.stop(() => resolve()));
  await storage.close();
});

describe('stowage/webdav-server', () => {
  it('serves a space: MKCOL, PUT, PROPFIND, GET, MOVE, COPY and DELETE land in Stowage', async () => {
    expect((await fetch(`${url}/docs`, { method: 'MKCOL' })).status).toBe(201);
    const body = Buffer.alloc(300_000, 9);
    const put = await fetch(`${url}/docs/a%20file.bin`, { method: 'PUT', body });
    expect(put.status).toBe(201);
    // The write is committed before webdav-server answers: the provider sees it, with checksums.
    const info = await storage.stat({ space: spaceId, path: 'docs/a file.bin' });
    expect(info.size).toBe(body.length);
    expect(info.checksums?.sha1).toBe(sha1(body));
    const got = Buffer.from(await (await fetch(`${url}/docs/a%20file.bin`)).arrayBuffer());
    expect(sha1(got)).toBe(sha1(body));
    const listing = await (
      await fetch(`${url}/docs/`, { method: 'PROPFIND', headers: { depth: '1' } })
    ).text();
    expect(listing).toContain('a%20file.bin');
    expect(
      (
        await fetch(`${url}/docs/a%20file.bin`, {
          method: 'MOVE',
          headers: { destination: `${url}/docs/moved.bin` },
        })
      ).status,
    ).toBeLessThan(300); // webdav-server answers 204 where RFC 4918 says 201: its own choice
    const moved = await storage.stat({ space: spaceId, path: 'docs/moved.bin' });
    expect(moved.id).toEqual(info.id); // a move keeps the id
    // Its creation date is the resource's, not its modification time.
    await storage.setMtime({ space: spaceId, path: 'docs/moved.bin' }, Date.UTC(2001, 0, 1));
    const props = await (
      await fetch(`${url}/docs/moved.bin`, { method: 'PROPFIND', headers: { depth: '0' } })
    ).text();
    const shown = Date.parse(props.match(/<D:creationdate>([^<]*)</i)?.[1] ?? '');
    expect(Math.floor(shown / 1000)).toBe(Math.floor(moved.created! / 1000));
    expect(
      (
        await fetch(`${url}/docs/moved.bin`, {
          method: 'COPY',
          headers: { destination: `${url}/docs/copy.bin` },
        })
      ).status,
    ).toBeLessThan(300);
    expect((await storage.stat({ space: spaceId, path: 'docs/copy.bin' })).id).not.toEqual(info.id);
    expect((await fetch(`${url}/docs/copy.bin`, { method: 'DELETE' })).status).toBe(200);
    await expect(storage.stat({ space: spaceId, path: 'docs/copy.bin' })).rejects.toThrow();
    // Deleted through the adapter means in the trash, as any Stowage delete.
    const trashed: string[] = [];
    for await (const t of storage.listTrash(spaceId)) trashed.push(t.path);
    expect(trashed).toContain('/docs/copy.bin');
    expect((await fetch(`${url}/nope/x.txt`, { method: 'PUT', body: 'x' })).status).toBe(409);
    expect((await fetch(`${url}/missing.txt`)).status).toBe(404);
  });

  it('keeps dead properties in the resource: they follow a move and a copy, outlive the server, and a new file at the old path has none', async () => {
    const prop = (value: string) =>
      `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><color xmlns="http://example.com/ns/">${value}</color></D:prop></D:set></D:propertyupdate>`;
    const ask =
      '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><color xmlns="http://example.com/ns/"/></D:prop></D:propfind>';
    const color = async (at: string, base = url) => {
      const r = await fetch(`${base}/${at}`, { method: 'PROPFIND', body: ask, headers: { depth: '0' } });
      expect(r.status).toBe(207);
      return /<([\w:]*)color[^>]*>([^<]*)<\/\1color>/.exec(await r.text())?.[2];
    };
    expect((await fetch(`${url}/p.txt`, { method: 'PUT', body: 'p' })).status).toBe(201);
    expect((await fetch(`${url}/p.txt`, { method: 'PROPPATCH', body: prop('red') })).status).toBe(207);
    expect(await color('p.txt')).toBe('red');
    const move = await fetch(`${url}/p.txt`, { method: 'MOVE', headers: { destination: `${url}/q.txt` } });
    expect(move.status).toBeLessThan(300);
    expect(await color('q.txt')).toBe('red');
    const copy = await fetch(`${url}/q.txt`, { method: 'COPY', headers: { destination: `${url}/r.txt` } });
    expect(copy.status).toBeLessThan(300);
    expect(await color('r.txt')).toBe('red');
    // Before, properties stayed with the path: the moved file lost them, a new one inherited them.
    expect((await fetch(`${url}/p.txt`, { method: 'PUT', body: 'new' })).status).toBe(201);
    expect(await color('p.txt')).toBeUndefined();
    // They are in Stowage, not in the server's memory: another server over the same space sees them.
    const again = new webdav.WebDAVServer({ port: 0, hostname: '127.0.0.1' });
    const fs = await createWebdavServerFileSystem({ storage, space: spaceId });
    await new Promise<void>((resolve) => again.setFileSystem('/', fs, () => resolve()));
    const http = await new Promise<import('node:http').Server>((resolve) => again.start((s) => resolve(s!)));
    try {
      expect(await color('q.txt', `http://127.0.0.1:${(http.address() as AddressInfo).port}`)).toBe('red');
    } finally {
      await new Promise<void>((resolve) => again.stop(() => resolve()));
    }
    const removed = prop('').replace('<D:set>', '<D:remove>').replace('</D:set>', '</D:remove>');
    expect((await fetch(`${url}/q.txt`, { method: 'PROPPATCH', body: removed })).status).toBe(207);
    expect(await color('q.txt')).toBeUndefined();
    const { metadata } = await storage.stat({ space: spaceId, path: 'r.txt' }, { metadataKeys: '*' });
    expect(Object.keys(metadata ?? {})).toEqual([
      `${WEBDAV_SERVER_PROPERTY_PREFIX}http://example.com/ns/color`,
    ]);
  });

  it('drops the lock of a resource deleted or moved away, so a new resource at its path is not locked', async () => {
    const lockinfo =
      '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
    const lock = (at: string) =>
      fetch(`${url}/${at}`, { method: 'LOCK', body: lockinfo, headers: { timeout: 'Second-600' } });
    for (const gone of ['DELETE', 'MOVE'] as const) {
      expect((await fetch(`${url}/l.txt`, { method: 'PUT', body: 'l' })).status).toBeLessThan(300);
      const first = await lock('l.txt');
      expect(first.status).toBe(200);
      const token = first.headers.get('lock-token')!;
      const headers: Record<string, string> = { if: `(${token})` };
      if (gone === 'MOVE') headers.destination = `${url}/l-moved.txt`;
      expect((await fetch(`${url}/l.txt`, { method: gone, headers })).status).toBeLessThan(300);
      expect((await fetch(`${url}/l.txt`, { method: 'PUT', body: 'again' })).status).toBe(201);
      expect((await lock('l.txt')).status, gone).toBe(200); // 423 while the old lock lingered
      expect(
        (await fetch(`${url}/l.txt`, { method: 'DELETE', headers: { if: `(${token})` } })).status,
      ).toBeLessThan(500);
    }
  });
});
