// An app already built on the npm webdav-server package (v2) keeps it, and serves a Stowage space
// through stowage/webdav-server's FileSystem: the bytes land in the space, with ids and checksums.
// (webdav-server is an optional peer dependency: `npm install webdav-server` in your app.)
// Run: npm run build && node examples/webdav-server-adapter.mjs
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StorageProvider } from 'stowage';
import { createPosixDriver } from 'stowage/drivers/posix';
import { createWebdavServerFileSystem } from 'stowage/webdav-server';
import { v2 as webdav } from 'webdav-server';

const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-wds-'));
const storage = new StorageProvider({ drivers: await createPosixDriver({ root: path.join(dir, 'data') }) });
const space = await storage.createSpace({ type: 'project', name: 'Served by webdav-server' });

// webdav-server does its own auth and routing; Stowage is its file system.
const server = new webdav.WebDAVServer({ port: 0, hostname: '127.0.0.1' });
const fs = await createWebdavServerFileSystem({ storage, space: space.id });
await new Promise((resolve) => server.setFileSystem('/', fs, resolve));
const httpServer = await new Promise((resolve) => server.start(resolve));
const base = `http://127.0.0.1:${httpServer.address().port}`;

assert.equal((await fetch(`${base}/scans`, { method: 'MKCOL' })).status, 201);
assert.equal(
  (await fetch(`${base}/scans/img-001.raw`, { method: 'PUT', body: Buffer.alloc(4096, 7) })).status,
  201,
);

// Committed in Stowage before webdav-server answered: an id, checksums, the tree size.
const info = await storage.stat({ space: space.id, path: 'scans/img-001.raw' });
console.log(
  'stowage sees',
  info.path,
  info.size,
  'bytes, id',
  info.id.opaqueId,
  'sha1',
  info.checksums?.sha1,
);
assert.equal(info.size, 4096);
assert.ok(info.checksums?.sha1);
const root = await storage.stat({ space: space.id, path: '' });
assert.equal(root.size, 4096);

// And what Stowage writes shows through webdav-server.
await storage.write({ space: space.id, path: 'scans/notes.txt' }, 'exposure 20 ms\n');
assert.equal(await (await fetch(`${base}/scans/notes.txt`)).text(), 'exposure 20 ms\n');
console.log('webdav-server serves what the API wrote');

await new Promise((resolve) => server.stop(resolve));
await storage.close();
await fsp.rm(dir, { recursive: true, force: true });
