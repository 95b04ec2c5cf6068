// Mount Stowage's WebDAV door on your own node:http server, next to your app's routes, and use it
// as a sync client or rclone would: MKCOL, PUT, PROPFIND, a ranged GET, MOVE, and the refusals.
// Run: npm run build && node examples/webdav-embed.mjs
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { StaticIdentitySource, StorageProvider } from 'stowage';
import { createPosixDriver } from 'stowage/drivers/posix';
import { WebDav } from 'stowage/webdav';

const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-webdav-'));
const provider = new StorageProvider({
  drivers: await createPosixDriver({ root: path.join(dir, 'data') }),
  // Basic auth checks passwords against the identity source (Bearer takes the CS3 door's JWT).
  identity: await StaticIdentitySource.create({
    users: [{ id: 'u-ada', username: 'ada', password: 'correct horse battery staple' }],
  }),
});
// uploadsDir: where ownCloud/Nextcloud chunked uploads are staged (turns them on).
const dav = new WebDav({ provider, uploadsDir: path.join(dir, 'chunks') });
const server = http.createServer(async (req, res) => {
  if (req.url === '/health') return res.end('ok'); // a route of your own
  // handle() answers what is WebDAV's (its endpoints, status.php, OCS) and returns false otherwise.
  if (!(await dav.handle(req, res))) res.writeHead(404).end();
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;
console.log(`WebDAV at ${base}/remote.php/webdav/ (also /remote.php/dav/files/ada/ and /dav/spaces/<id>/)`);

const auth = `Basic ${Buffer.from('ada:correct horse battery staple').toString('base64')}`;
const dav$ = (method, p, headers = {}, body) =>
  fetch(`${base}/remote.php/webdav/${p}`, { method, headers: { authorization: auth, ...headers }, body });

// Ada's personal space appears on her first login.
assert.equal((await dav$('MKCOL', 'results')).status, 201);
const put = await dav$(
  'PUT',
  'results/run%20001.csv',
  { 'x-oc-mtime': '1700000000' },
  't,counts\n0,12\n1,15\n',
);
assert.equal(put.status, 201);
console.log('PUT 201, OC-FileId', put.headers.get('oc-fileid'), 'OC-ETag', put.headers.get('oc-etag'));

// PROPFIND Depth 1, with the ownCloud properties sync clients ask for.
const listing = await dav$(
  'PROPFIND',
  'results/',
  { depth: '1', 'content-type': 'application/xml' },
  `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>
     <d:getetag/><d:getcontentlength/><d:getlastmodified/><oc:fileid/><oc:checksums/><oc:permissions/>
   </d:prop></d:propfind>`,
);
assert.equal(listing.status, 207);
const xml = await listing.text();
console.log('PROPFIND 207:', [...xml.matchAll(/<d:href>([^<]*)<\/d:href>/g)].map((m) => m[1]).join(', '));
assert.match(xml, /<oc:checksum>SHA1:[0-9a-f]{40} MD5:[0-9a-f]{32} ADLER32:[0-9a-f]{8}<\/oc:checksum>/);
assert.match(xml, /Tue, 14 Nov 2023 22:13:20 GMT/); // the X-OC-Mtime it was given

// A ranged GET, then a MOVE (Destination as a full URL, as clients send it).
const part = await dav$('GET', 'results/run%20001.csv', { range: 'bytes=0-7' });
assert.equal(part.status, 206);
assert.equal(await part.text(), 't,counts');
const move = await dav$('MOVE', 'results/run%20001.csv', {
  destination: `${base}/remote.php/webdav/results/run-001.csv`,
});
assert.equal(move.status, 201);

// The same file through the TypeScript API: moved, same id, and on disk under its readable name.
const ada = await provider.as('ada');
const home = await ada.personalSpace();
const info = await ada.stat({ space: home.id, path: 'results/run-001.csv' });
assert.equal(`${info.id.storageId}$${info.id.spaceId}!${info.id.opaqueId}`, put.headers.get('oc-fileid'));
console.log('moved, same id:', info.id.opaqueId, `${info.size} bytes`);

// Refusals: no credentials, a wrong password, a path that climbs out.
assert.equal((await fetch(`${base}/remote.php/webdav/`, { method: 'PROPFIND' })).status, 401);
const wrong = `Basic ${Buffer.from('ada:guess').toString('base64')}`;
assert.equal(
  (await fetch(`${base}/remote.php/webdav/`, { method: 'PROPFIND', headers: { authorization: wrong } }))
    .status,
  401,
);
// (sent with node:http and the path as is: fetch, like any URL parser, would resolve the %2e%2e
// itself and ask for another URL)
const target = { host: '127.0.0.1', port: server.address().port };
const climb = await new Promise((resolve, reject) =>
  http
    .get(
      {
        ...target,
        path: '/remote.php/webdav/results/%2e%2e/%2e%2e/etc/passwd',
        headers: { authorization: auth },
      },
      (r) => {
        r.resume();
        resolve(r.statusCode);
      },
    )
    .on('error', reject),
);
assert.equal(climb, 400);
assert.equal(await (await fetch(`${base}/health`)).text(), 'ok');
console.log('401 without or with wrong credentials, 400 for %2e%2e; /health still yours');

await new Promise((resolve) => server.close(resolve));
await provider.close();
await fsp.rm(dir, { recursive: true, force: true });
