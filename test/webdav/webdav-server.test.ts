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
import { createWebdavServerFileSystem } from '../../src/webdav-server/index.js';
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
});
