/**
 * The WebDAV door as clients and attackers see it: authentication, grants, the ownCloud dialect,
 * chunked uploads, what lands on disk, and bad input of every kind.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import * as xattr from 'fs-xattr';
import { SaxesParser } from 'saxes';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mintRevaToken, signJwt } from '../../src/cs3/jwt.js';
import { LINGER_MS } from '../../src/http/common.js';
import { type Driver, fromLetters, ROLES, type StorageEvent } from '../../src/index.js';
import { type DavEnv, type DavInit, davFetch, listenEvents, SECRET, startDav } from './server.js';

let env: DavEnv;
let projectId: string;
/** A JSON answer, loosely typed. */
// biome-ignore lint/suspicious/noExplicitAny: the shape is what the assertions check
const json = (r: Response): Promise<any> => r.json();

/** A request with the path sent exactly as given (fetch would normalise `%2e%2e`). */
function raw(method: string, rawPath: string, user: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(env.url);
    const req = http.request(
      { host: u.hostname, port: u.port, method, path: rawPath, headers: { authorization: env.basic(user) } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

const sha1 = (b: string | Buffer) => createHash('sha1').update(b).digest('hex');

/** Throws unless `xml` is a well-formed, namespace-correct document. */
function wellFormed(xml: string): void {
  const parser = new SaxesParser({ xmlns: true });
  parser.on('error', (err) => {
    throw err;
  });
  parser.write(xml).close();
}

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
    { id: 'u-eve', username: 'eve' },
  ]);
  const ann = await env.provider.as('ann');
  const project = await ann.createSpace({ type: 'project', name: 'Shared lab' });
  projectId = project.id;
  await ann.setGrant(
    { space: project.id, path: '' },
    {
      grantee: { type: 'user', id: 'u-bob' },
      permissions: fromLetters(ROLES.editor),
    },
  );
});
afterAll(() => env?.close());

const dav = (method: string, url: string, user: string | null, init?: DavInit) =>
  davFetch(env, method, url, user, init);

const PROPS = `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>
<d:getetag/><oc:id/><oc:fileid/><oc:permissions/><d:getlastmodified/><d:resourcetype/><d:getcontentlength/><oc:checksums/><oc:size/><d:quota-used-bytes/><d:quota-available-bytes/></d:prop></d:propfind>`;

describe('webdav: authentication and grants', () => {
  it('asks for credentials, refuses wrong ones, and takes Basic or a Bearer token', async () => {
    const none = await dav('PROPFIND', '/remote.php/webdav/', null, { headers: { depth: '0' } });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    const wrong = await fetch(`${env.url}/remote.php/webdav/`, {
      method: 'PROPFIND',
      headers: { depth: '0', authorization: `Basic ${Buffer.from('ann:nope').toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
    const token = mintRevaToken({ id: 'u-ann', username: 'ann' }, SECRET);
    const bearer = await fetch(`${env.url}/remote.php/webdav/`, {
      method: 'PROPFIND',
      headers: { depth: '0', authorization: `Bearer ${token}` },
    });
    expect(bearer.status).toBe(207);
    const forged = await fetch(`${env.url}/remote.php/webdav/`, {
      method: 'PROPFIND',
      headers: {
        depth: '0',
        authorization: `Bearer ${mintRevaToken({ id: 'u-ann', username: 'ann' }, 'other')}`,
      },
    });
    expect(forged.status).toBe(401);
    // A token a gateway scoped to a public link of Ann's (Ann as its user) is not Ann's login.
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    const scoped = signJwt({ ...claims, scope: { 'publicshare:link-1': { role: 3 } } }, SECRET);
    for (const [method, url] of [
      ['PROPFIND', '/remote.php/webdav/'],
      ['PUT', '/remote.php/webdav/by-link.txt'],
    ] as const) {
      const r = await fetch(`${env.url}${url}`, {
        method,
        headers: { depth: '0', authorization: `Bearer ${scoped}` },
        ...(method === 'PUT' && { body: 'x' }),
      });
      expect(r.status, method).toBe(401);
      expect(await r.text()).toContain('scoped (publicshare)');
    }
    expect((await dav('GET', '/remote.php/webdav/by-link.txt', 'ann')).status).toBe(404);
    // Another scheme is named in the answer, not taken for a wrong password.
    const digest = await fetch(`${env.url}/remote.php/webdav/`, {
      method: 'PROPFIND',
      headers: { depth: '0', authorization: 'Digest username="ann", realm="x"' },
    });
    expect(digest.status).toBe(401);
    expect(await digest.text()).toContain('Basic and Bearer authentication are supported here, not Digest');
    const empty = await fetch(`${env.url}/remote.php/webdav/`, {
      method: 'PROPFIND',
      headers: { depth: '0', authorization: 'Basic' },
    });
    expect(empty.status).toBe(401);
    expect(await empty.text()).toContain('malformed Basic credentials');
  });

  it('shows a space only to those holding a grant in it, and someone else’s files URL to nobody', async () => {
    const put = await dav('PUT', `/dav/spaces/${projectId}/notes.txt`, 'bob', { body: 'from bob' });
    expect(put.status).toBe(201);
    for (const [method, url] of [
      ['PROPFIND', `/dav/spaces/${projectId}/`],
      ['GET', `/dav/spaces/${projectId}/notes.txt`],
      ['PUT', `/dav/spaces/${projectId}/eve.txt`],
      ['DELETE', `/dav/spaces/${projectId}/notes.txt`],
      ['PROPFIND', '/remote.php/dav/files/ann/'],
    ] as const) {
      const r = await dav(method, url, 'eve', {
        headers: { depth: '0' },
        ...(method === 'PUT' && { body: 'x' }),
      });
      expect(r.status, `${method} ${url}`).toBe(404);
    }
    expect(await (await dav('GET', `/dav/spaces/${projectId}/notes.txt`, 'ann')).text()).toBe('from bob');
  });
});

describe('webdav: the ownCloud dialect', () => {
  it('answers status.php, capabilities and the user as desktop clients expect', async () => {
    const st = await (await fetch(`${env.url}/status.php`)).json();
    expect(st).toMatchObject({ installed: true, maintenance: false, versionstring: expect.any(String) });
    const caps = await dav('GET', '/ocs/v1.php/cloud/capabilities?format=json', 'ann', {
      headers: { 'ocs-apirequest': 'true' },
    });
    const c = await json(caps);
    expect(c.ocs.meta.statuscode).toBe(100);
    expect(c.ocs.data.capabilities.dav.chunking).toBe('1.0');
    expect(c.ocs.data.capabilities.checksums.preferredUploadType).toBe('SHA1');
    const user = await json(await dav('GET', '/ocs/v2.php/cloud/user?format=json', 'ann'));
    expect(user.ocs.data.id).toBe('ann');
    expect((await dav('GET', '/ocs/v1.php/cloud/capabilities', null)).status).toBe(401);
  });

  it('answers PROPFIND with oc: properties, 200 propstat first, and the content type clients need', async () => {
    await dav('MKCOL', '/remote.php/webdav/docs', 'ann');
    await dav('PUT', '/remote.php/webdav/docs/a%20b%20%23%25%26.txt', 'ann', { body: 'hello' });
    const r = await dav('PROPFIND', '/remote.php/webdav/docs/', 'ann', {
      headers: { depth: '1' },
      body: PROPS,
    });
    expect(r.status).toBe(207);
    expect(r.headers.get('content-type')).toBe('application/xml; charset=utf-8');
    const xml = await r.text();
    expect(xml).toContain('<d:href>/remote.php/webdav/docs/</d:href>');
    expect(xml).toContain('<d:href>/remote.php/webdav/docs/a%20b%20%23%25%26.txt</d:href>');
    expect(xml).toMatch(/<oc:permissions>R?DNVCK<\/oc:permissions>/);
    expect(xml).toMatch(/<oc:permissions>R?DNVW<\/oc:permissions>/);
    expect(xml).toContain(`<oc:checksum>SHA1:${sha1('hello')} MD5:`);
    expect(xml).toMatch(/<oc:id>[^<]+\$[^<]+![^<]+<\/oc:id>/);
    expect(xml.indexOf('200 OK')).toBeLessThan(
      xml.indexOf('404 Not Found') === -1 ? Infinity : xml.indexOf('404 Not Found'),
    );
    // The stray text node owncloudcmd sends, and oc: props in the default namespace.
    const odd = await dav('PROPFIND', '/remote.php/webdav/docs/', 'ann', {
      headers: { depth: '0', 'content-type': 'text/xml; charset=utf-8' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><id xmlns="http://owncloud.org/ns"/><d:getetag/></d:prop>M</d:propfind>',
    });
    expect(odd.status).toBe(207);
    expect(await odd.text()).toContain('<oc:id>');
    // quota-used-bytes: a folder's own tree size whether it is the target or a child; the space
    // root's what the quota counts.
    await dav('PUT', '/remote.php/webdav/outside-docs.txt', 'ann', { body: 'not in docs' });
    const used = async (url: string, depth: string) => {
      const xml = await (await dav('PROPFIND', url, 'ann', { headers: { depth }, body: PROPS })).text();
      return xml
        .split('<d:response>')
        .slice(1)
        .flatMap((r) => {
          const q = /<d:quota-used-bytes>(\d+)</.exec(r);
          return q ? [[/<d:href>([^<]*)</.exec(r)![1]!, Number(q[1])] as const] : [];
        });
    };
    expect(await used('/remote.php/webdav/docs/', '0')).toEqual([['/remote.php/webdav/docs/', 5]]);
    expect(new Map(await used('/remote.php/webdav/', '1')).get('/remote.php/webdav/docs/')).toBe(5);
    // quota-available-bytes (RFC 4331 §3, required on collections): with no quota, the room the
    // storage beneath still has (Finder shows it as the capacity, rclone about as free).
    const quota = await (
      await dav('PROPFIND', '/remote.php/webdav/', 'ann', { headers: { depth: '0' }, body: PROPS })
    ).text();
    const available = Number(/<d:quota-available-bytes>(\d+)</.exec(quota)?.[1]);
    const disk = await fsp.statfs(env.root);
    expect(Math.abs(available - disk.bavail * disk.bsize)).toBeLessThan(256 * 1024 * 1024);
  });

  it('verifies OC-Checksum (a mismatch leaves nothing), keeps X-OC-Mtime, and answers with ids', async () => {
    const bad = await dav('PUT', '/remote.php/webdav/sum.txt', 'ann', {
      body: 'payload',
      headers: { 'oc-checksum': `SHA1:${sha1('other')}` },
    });
    expect(bad.status).toBe(400);
    expect((await dav('GET', '/remote.php/webdav/sum.txt', 'ann')).status).toBe(404);
    const ok = await dav('PUT', '/remote.php/webdav/sum.txt', 'ann', {
      body: 'payload',
      headers: { 'oc-checksum': `SHA1:${sha1('payload')}`, 'x-oc-mtime': '1700000000' },
    });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('etag')).toMatch(/^".+"$/);
    expect(ok.headers.get('oc-etag')).toBe(ok.headers.get('etag'));
    expect(ok.headers.get('oc-fileid')).toMatch(/\$.+!/);
    expect(ok.headers.get('x-oc-mtime')).toBe('accepted');
    expect(ok.headers.get('oc-perm')).toBe('RDNVW'); // sync clients journal it from the upload
    // Stowage's own client asks for the whole info; nobody else gets it.
    expect(ok.headers.get('x-stowage-info')).toBeNull();
    const got = await dav('GET', '/remote.php/webdav/sum.txt', 'ann');
    expect(got.headers.get('last-modified')).toBe(new Date(1_700_000_000_000).toUTCString());
    const full = await dav('HEAD', '/remote.php/webdav/sum.txt', 'ann', {
      headers: { 'x-stowage-want-info': '1' },
    });
    expect(JSON.parse(Buffer.from(full.headers.get('x-stowage-info')!, 'base64url').toString()).name).toBe(
      'sum.txt',
    );
    // A checksum or mtime the client meant to be used is never silently dropped: malformed is 400,
    // and neither the file nor its mtime changes.
    for (const [headers, reason] of [
      [{ 'oc-checksum': 'garbage' }, 'bad-header'],
      [{ 'oc-checksum': 'SHA256:abcd' }, 'checksum-unsupported'],
      [{ 'x-oc-mtime': 'abc' }, 'bad-header'],
      [{ 'x-oc-mtime': '-5' }, 'bad-header'],
    ] as const) {
      const refused = await dav('PUT', '/remote.php/webdav/sum.txt', 'ann', { body: 'changed', headers });
      expect(refused.status).toBe(400);
      expect(await refused.text()).toContain(`<st:reason xmlns:st="urn:stowage">${reason}</st:reason>`);
    }
    const still = await dav('GET', '/remote.php/webdav/sum.txt', 'ann');
    expect(await still.text()).toBe('payload');
    expect(still.headers.get('last-modified')).toBe(new Date(1_700_000_000_000).toUTCString());
    // 304: no body, so no Content-Length (RFC 9110 §8.6 allows only the 200's) and no Content-Type.
    const notModified = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const u = new URL(env.url);
      http
        .get(
          {
            host: u.hostname,
            port: u.port,
            path: '/remote.php/webdav/sum.txt',
            headers: { authorization: env.basic('ann'), 'if-none-match': ok.headers.get('etag')! },
          },
          (res) => {
            res.resume();
            resolve(res);
          },
        )
        .once('error', reject);
    });
    expect(notModified.statusCode).toBe(304);
    expect(notModified.headers['content-length']).toBeUndefined();
    expect(notModified.headers['content-type']).toBeUndefined();
    expect(notModified.headers.etag).toBe(ok.headers.get('etag'));
    const again = await dav('PUT', '/remote.php/webdav/sum.txt', 'ann', {
      body: 'v2',
      headers: { 'if-match': '"not-the-etag"' },
    });
    expect(again.status).toBe(412);
    const replaced = await dav('PUT', '/remote.php/webdav/sum.txt', 'ann', {
      body: 'v2',
      headers: { 'if-match': ok.headers.get('etag')! },
    });
    expect(replaced.status).toBe(204);
  });

  it('checks If-Match, If-None-Match and If-Unmodified-Since before DELETE, COPY, MOVE, PROPPATCH and LOCK', async () => {
    const base = '/remote.php/webdav/cond';
    expect((await dav('MKCOL', base, 'ann')).status).toBe(201);
    const put = await dav('PUT', `${base}/f.txt`, 'ann', { body: 'keep me' });
    const etag = put.headers.get('etag')!;
    const dest = { destination: `${env.url}${base}/g.txt` };
    const proppatch = `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:k>v</x:k></d:prop></d:set></d:propertyupdate>`;
    const lock = `<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>`;
    const refused: [string, Record<string, string>][] = [
      ['if-match', { 'if-match': '"not-it"' }],
      ['if-none-match', { 'if-none-match': etag }],
      ['if-none-match *', { 'if-none-match': '*' }],
      ['if-unmodified-since', { 'if-unmodified-since': 'Sat, 01 Jan 2000 00:00:00 GMT' }],
    ];
    for (const [what, cond] of refused) {
      for (const [method, headers, body] of [
        ['DELETE', {}, undefined],
        ['COPY', dest, undefined],
        ['MOVE', dest, undefined],
        ['PROPPATCH', {}, proppatch],
        ['LOCK', {}, lock],
      ] as const) {
        const r = await dav(method, `${base}/f.txt`, 'ann', { headers: { ...headers, ...cond }, body });
        expect(r.status, `${method} with ${what}`).toBe(412);
      }
    }
    // Nothing happened: the file is there, unchanged, unlocked, without the property, and not copied.
    const after = await dav('GET', `${base}/f.txt`, 'ann');
    expect(after.status).toBe(200);
    expect(after.headers.get('etag')).toBe(etag);
    expect(await after.text()).toBe('keep me');
    expect((await dav('GET', `${base}/g.txt`, 'ann')).status).toBe(404);
    const props = await dav('PROPFIND', `${base}/f.txt`, 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:k/><d:lockdiscovery/></d:prop></d:propfind>',
    });
    const text = await props.text();
    expect(text).not.toContain('<x:k>v</x:k>');
    expect(text).not.toContain('activelock');
    // The conditions that hold let each through.
    expect(
      (await dav('COPY', `${base}/f.txt`, 'ann', { headers: { ...dest, 'if-match': etag } })).status,
    ).toBe(201);
    expect(
      (await dav('DELETE', `${base}/g.txt`, 'ann', { headers: { 'if-none-match': '"other"' } })).status,
    ).toBe(204);
    expect((await dav('MKCOL', `${base}/new`, 'ann', { headers: { 'if-match': '*' } })).status).toBe(412);
    expect((await dav('DELETE', `${base}/f.txt`, 'ann', { headers: { 'if-match': etag } })).status).toBe(204);
  });

  it('refuses an X-OC-Mtime the filesystem cannot store, and keeps nothing', async () => {
    const far = await dav('PUT', '/remote.php/webdav/far-future.txt', 'ann', {
      body: 'x',
      headers: { 'x-oc-mtime': '99999999999999' },
    });
    expect(far.status).toBe(400);
    expect(await far.text()).toContain('cannot store that modification time');
    expect((await dav('GET', '/remote.php/webdav/far-future.txt', 'ann')).status).toBe(404);
    const home = await env.driver.spacePath((await (await env.provider.as('ann')).personalSpace()).id);
    expect(readdirSync(path.join(home, '.stowage', 'tmp')).filter((n) => n.startsWith('up-'))).toEqual([]);
    const fine = await dav('PUT', '/remote.php/webdav/far-future.txt', 'ann', {
      body: 'x',
      headers: { 'x-oc-mtime': '4102444800' }, // 2100-01-01
    });
    expect(fine.status).toBe(201);
  });

  it('copies a folder at Depth 0 as an empty folder with its dead properties', async () => {
    const base = '/remote.php/webdav/d0';
    expect((await dav('MKCOL', base, 'ann')).status).toBe(201);
    expect((await dav('PUT', `${base}/inside.txt`, 'ann', { body: 'x' })).status).toBe(201);
    const set = `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:colour>teal</x:colour></d:prop></d:set></d:propertyupdate>`;
    expect((await dav('PROPPATCH', base, 'ann', { body: set })).status).toBe(207);
    const copy = await dav('COPY', base, 'ann', { headers: { depth: '0', destination: `${base}-copy` } });
    expect(copy.status).toBe(201);
    const props = await dav('PROPFIND', `${base}-copy`, 'ann', {
      headers: { depth: '1' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:colour/></d:prop></d:propfind>',
    });
    const xml = await props.text();
    expect(xml).toMatch(/:colour xmlns:\w+="urn:x">teal</);
    expect(xml).not.toContain('inside.txt');
  });

  it('changes nothing when a Depth: 0 copy of a folder over something is refused (the Destination is not deleted first)', async () => {
    const ann = await env.provider.as('ann');
    const shared = await ann.mkdir({ space: projectId, path: 'd0g' });
    await ann.mkdir({ space: projectId, path: 'd0g/src' });
    await ann.write({ space: projectId, path: 'd0g/victim.txt' }, 'keep me');
    // May delete, not create folders.
    await ann.setGrant(
      { space: projectId, path: 'd0g' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters('splrwdmvtq') },
    );
    const base = `/dav/spaces/${encodeURIComponent(`${shared.id.storageId}$${projectId}!${shared.id.opaqueId}`)}`;
    try {
      const copy = await dav('COPY', `${base}/src/`, 'eve', {
        headers: { depth: '0', destination: `${base}/victim.txt`, overwrite: 'T' },
      });
      expect(copy.status).toBe(403);
      expect(await ann.read({ space: projectId, path: 'd0g/victim.txt' }).then((r) => r.info.size)).toBe(7);
      for await (const item of ann.listTrash(projectId)) expect(item.path).not.toBe('/d0g/victim.txt');
      // Who may create folders replaces it, and what was there goes to the trash.
      const ok = await dav('COPY', `/dav/spaces/${projectId}/d0g/src/`, 'bob', {
        headers: { depth: '0', destination: `/dav/spaces/${projectId}/d0g/victim.txt`, overwrite: 'T' },
      });
      expect(ok.status).toBe(204);
      expect((await ann.stat({ space: projectId, path: 'd0g/victim.txt' })).type).toBe('folder');
      const trashed: string[] = [];
      for await (const item of ann.listTrash(projectId)) trashed.push(item.path);
      expect(trashed).toContain('/d0g/victim.txt');
    } finally {
      await ann.removeGrant({ space: projectId, path: 'd0g' }, { type: 'user', id: 'u-eve' });
    }
  });

  it('assembles a chunked upload (chunking NG) with its whole-file checksum', async () => {
    const parts = [Buffer.alloc(300_000, 1), Buffer.alloc(300_000, 2), Buffer.from('tail')];
    const whole = Buffer.concat(parts);
    const base = '/remote.php/dav/uploads/ann/transfer-1';
    expect(
      (await dav('MKCOL', base, 'ann', { headers: { 'oc-total-length': String(whole.length) } })).status,
    ).toBe(201);
    let offset = 0;
    for (const p of parts) {
      const name = String(offset).padStart(16, '0');
      expect((await dav('PUT', `${base}/${name}`, 'ann', { body: p })).status).toBe(201);
      offset += p.length;
    }
    // Someone else cannot see or finish it.
    expect(
      (await dav('MOVE', `${base}/.file`, 'bob', { headers: { destination: '/remote.php/dav/files/bob/x' } }))
        .status,
    ).toBe(404);
    const done = await dav('MOVE', `${base}/.file`, 'ann', {
      headers: {
        destination: '/remote.php/dav/files/ann/big.bin',
        'oc-checksum': `SHA1:${sha1(whole)}`,
        'oc-total-length': String(whole.length),
        'x-oc-mtime': '1700000000',
      },
    });
    expect(done.status).toBe(201);
    expect(done.headers.get('etag')).toBeTruthy();
    const got = Buffer.from(
      await (await dav('GET', '/remote.php/dav/files/ann/big.bin', 'ann')).arrayBuffer(),
    );
    expect(sha1(got)).toBe(sha1(whole));
    expect((await dav('PROPFIND', base, 'ann', { headers: { depth: '1' } })).status).toBe(404);
  });

  it('lists the chunks of an upload in progress, however many (a client resuming asks which it has)', async () => {
    const base = '/remote.php/dav/uploads/ann/listed';
    expect((await dav('MKCOL', base, 'ann')).status).toBe(201);
    const folder = (await fsp.readdir(path.join(env.root, 'chunks'), { recursive: true }))
      .map(String)
      .find((n) => n.endsWith('/listed'))!;
    // 3,000 chunks (written beside the door, to be quick), then one through it.
    for (let i = 0; i < 3000; i++)
      await fsp.writeFile(
        path.join(env.root, 'chunks', folder, String(i * 10).padStart(8, '0')),
        '0123456789',
      );
    expect(
      (await dav('PUT', `${base}/${String(30000).padStart(8, '0')}`, 'ann', { body: 'tail' })).status,
    ).toBe(201);
    const r = await dav('PROPFIND', base, 'ann', { headers: { depth: '1' } });
    expect(r.status).toBe(207);
    expect(r.headers.get('content-length')).toBeNull(); // streamed
    const xml = await r.text();
    wellFormed(xml);
    const sizes = [...xml.matchAll(/<d:getcontentlength>(\d+)</g)].map((m) => Number(m[1]));
    expect(sizes).toHaveLength(3001);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(30004);
    expect(xml).toContain(`<d:href>${base}/00030000</d:href>`);
    expect((await dav('DELETE', base, 'ann')).status).toBe(204);
  });

  it('checks If-Match and If-None-Match of the MOVE that assembles a chunked upload against the file it replaces', async () => {
    const target = '/remote.php/dav/files/ann/chunked-cond.txt';
    const first = await dav('PUT', target, 'ann', { body: 'first' });
    const etag = first.headers.get('etag')!;
    const upload = async (n: number, body: string) => {
      const base = `/remote.php/dav/uploads/ann/cond-${n}`;
      expect((await dav('MKCOL', base, 'ann')).status).toBe(201);
      expect((await dav('PUT', `${base}/${'0'.padStart(16, '0')}`, 'ann', { body })).status).toBe(201);
      return base;
    };
    const base = await upload(1, 'second');
    const refused: Record<string, string>[] = [
      { 'if-match': '"not-it"' },
      { 'if-match': `W/${etag}` },
      { 'if-none-match': '*' },
    ];
    for (const cond of refused) {
      const r = await dav('MOVE', `${base}/.file`, 'ann', { headers: { destination: target, ...cond } });
      expect(r.status, JSON.stringify(cond)).toBe(412);
    }
    // The file is as it was, and the upload is still there to finish.
    expect(await (await dav('GET', target, 'ann')).text()).toBe('first');
    const done = await dav('MOVE', `${base}/.file`, 'ann', {
      headers: { destination: target, 'if-match': etag },
    });
    expect(done.status).toBe(204);
    expect(await (await dav('GET', target, 'ann')).text()).toBe('second');
    // A weak tag is not enough for a PUT either (If-Match compares strongly, RFC 9110 §13.1.1).
    const now = (await dav('GET', target, 'ann')).headers.get('etag')!;
    expect((await dav('PUT', target, 'ann', { body: 'x', headers: { 'if-match': `W/${now}` } })).status).toBe(
      412,
    );
    expect((await dav('PUT', target, 'ann', { body: 'third', headers: { 'if-match': now } })).status).toBe(
      204,
    );
  });

  it('keeps Overwrite: F and the length declared at MKCOL for the MOVE that assembles a chunked upload', async () => {
    const target = '/remote.php/dav/files/ann/chunked-ow.txt';
    expect((await dav('PUT', target, 'ann', { body: 'KEEP-ME' })).status).toBe(201);
    const up = '/remote.php/dav/uploads/ann/ow-1';
    expect((await dav('MKCOL', up, 'ann', { headers: { 'oc-total-length': '5' } })).status).toBe(201);
    expect((await dav('PUT', `${up}/00000`, 'ann', { body: 'CLOBB' })).status).toBe(201);
    const ow = await dav('MOVE', `${up}/.file`, 'ann', { headers: { destination: target, overwrite: 'F' } });
    expect(ow.status).toBe(412);
    expect(await (await dav('GET', target, 'ann')).text()).toBe('KEEP-ME');
    expect(
      (await dav('MOVE', `${up}/.file`, 'ann', { headers: { destination: target, overwrite: 'X' } })).status,
    ).toBe(400);
    // A chunk missing: the declared 30 bytes are not there, whatever the MOVE says (or does not).
    const gap = '/remote.php/dav/uploads/ann/gap-1';
    expect((await dav('MKCOL', gap, 'ann', { headers: { 'oc-total-length': '30' } })).status).toBe(201);
    expect((await dav('PUT', `${gap}/0`, 'ann', { body: '0000000000' })).status).toBe(201);
    expect((await dav('PUT', `${gap}/20`, 'ann', { body: '2222222222' })).status).toBe(201);
    const short = '/remote.php/dav/files/ann/missing-chunk.bin';
    expect((await dav('MOVE', `${gap}/.file`, 'ann', { headers: { destination: short } })).status).toBe(400);
    expect(
      (await dav('MOVE', `${gap}/.file`, 'ann', { headers: { destination: short, 'oc-total-length': '20' } }))
        .status,
    ).toBe(400);
    expect((await dav('GET', short, 'ann')).status).toBe(404);
    // With the chunk, it completes.
    expect((await dav('PUT', `${gap}/10`, 'ann', { body: '1111111111' })).status).toBe(201);
    expect((await dav('MOVE', `${gap}/.file`, 'ann', { headers: { destination: short } })).status).toBe(201);
    expect(await (await dav('GET', short, 'ann')).text()).toBe('000000000011111111112222222222');
  });

  it('answers a chunked upload’s MOVE asked again after a stop during or right after its write as what happened: done, written, or a conflict', async () => {
    const driver = env.provider.driverFor('');
    const write = driver.write;
    const chunks = path.join(env.root, 'chunks');
    const noteOf = async (name: string) => {
      for (const u of await fsp.readdir(chunks)) {
        const p = path.join(chunks, u, name, '.writing');
        if (await fsp.stat(p).catch(() => undefined)) return p;
      }
      throw new Error(`no note kept before the write of ${name}`);
    };
    const transfer = async (name: string, body: string) => {
      const up = `/remote.php/dav/uploads/ann/${name}`;
      expect((await dav('MKCOL', up, 'ann')).status).toBe(201);
      expect((await dav('PUT', `${up}/${'0'.padStart(16, '0')}`, 'ann', { body })).status).toBe(201);
      return `${up}/.file`;
    };
    const move = (file: string, target: string, headers: Record<string, string> = {}) =>
      dav('MOVE', file, 'ann', { headers: { destination: target, ...headers } });
    // The process stops during the write (before it lands) or right after it: the disk is left as
    // it was then (the note kept before the write is there: it was synced before the write began),
    // and nothing after the write runs. (A throw stands for the stop; what the handler would do on
    // that throw is undone by putting the note back.)
    const stoppedMove = async (file: string, target: string, landed: boolean) => {
      const name = file.split('/').at(-2)!;
      let note: string | undefined;
      const spy = vi.spyOn(driver, 'write').mockImplementationOnce(async function (
        this: Driver,
        ...a: Parameters<Driver['write']>
      ) {
        note = await fsp.readFile(await noteOf(name), 'utf8');
        if (landed) await write.apply(this, a);
        throw new Error('(the process stops here)');
      });
      try {
        expect((await move(file, target)).status).toBe(500);
      } finally {
        spy.mockRestore();
      }
      const folder = (await fsp.readdir(chunks)).map((u) => path.join(chunks, u, name));
      for (const f of folder)
        if (await fsp.stat(f).catch(() => undefined)) await fsp.writeFile(path.join(f, '.writing'), note!);
    };
    const text = async (target: string) => (await dav('GET', target, 'ann')).text();
    const exists = async (file: string) =>
      (await dav('PROPFIND', file.replace(/\/\.file$/, ''), 'ann', { headers: { depth: '0' } })).status ===
      207;
    const f = (name: string) => `/remote.php/dav/files/ann/${name}`;

    // Landed, nobody wrote since: done (made by the first MOVE), with Overwrite: F too.
    const a = await transfer('resume-a', 'from the upload');
    await stoppedMove(a, f('resume-a.txt'), true);
    expect(await text(f('resume-a.txt'))).toBe('from the upload');
    const etag = (await dav('GET', f('resume-a.txt'), 'ann')).headers.get('etag');
    const again = await move(a, f('resume-a.txt'), { overwrite: 'F' });
    expect(again.status).toBe(201);
    expect(again.headers.get('etag')).toBe(etag);
    expect(await exists(a)).toBe(false);

    // Landed, then someone wrote the file: theirs stays, and the client is told of a conflict
    // (412, as for a failed If-Match), each time it asks.
    const b = await transfer('resume-b', 'mine');
    await stoppedMove(b, f('resume-b.txt'), true);
    expect((await dav('PUT', f('resume-b.txt'), 'ann', { body: 'edited since' })).status).toBe(204);
    expect((await move(b, f('resume-b.txt'))).status).toBe(412);
    expect((await move(b, f('resume-b.txt'))).status).toBe(412);
    expect(await text(f('resume-b.txt'))).toBe('edited since');

    // Cut short during the write, then someone wrote the file: a conflict too, never "done".
    expect((await dav('PUT', f('resume-c.txt'), 'ann', { body: 'old' })).status).toBe(201);
    const c = await transfer('resume-c', 'new');
    await stoppedMove(c, f('resume-c.txt'), false);
    expect(await text(f('resume-c.txt'))).toBe('old');
    expect((await dav('PUT', f('resume-c.txt'), 'ann', { body: 'theirs' })).status).toBe(204);
    expect((await move(c, f('resume-c.txt'))).status).toBe(412);
    expect(await text(f('resume-c.txt'))).toBe('theirs');

    // Cut short during the write, nobody wrote since: the MOVE asked again writes it.
    expect((await dav('PUT', f('resume-d.txt'), 'ann', { body: 'old' })).status).toBe(201);
    const d = await transfer('resume-d', 'new');
    await stoppedMove(d, f('resume-d.txt'), false);
    expect((await move(d, f('resume-d.txt'))).status).toBe(204);
    expect(await text(f('resume-d.txt'))).toBe('new');

    // A MOVE that failed while the process ran on (its If-Match) leaves nothing to take for a
    // stop: after an edit, asked again without the condition, it writes as asked.
    expect((await dav('PUT', f('resume-e.txt'), 'ann', { body: 'old' })).status).toBe(201);
    const e = await transfer('resume-e', 'new');
    expect((await move(e, f('resume-e.txt'), { 'if-match': '"not-it"' })).status).toBe(412);
    expect((await dav('PUT', f('resume-e.txt'), 'ann', { body: 'edited' })).status).toBe(204);
    expect((await move(e, f('resume-e.txt'))).status).toBe(204);
    expect(await text(f('resume-e.txt'))).toBe('new');

    // Landed, then asked again to another Destination: written there as asked.
    const g = await transfer('resume-g', 'twice');
    await stoppedMove(g, f('first-place.txt'), true);
    expect((await move(g, f('second-place.txt'))).status).toBe(201);
    expect(await text(f('second-place.txt'))).toBe('twice');
  });

  it('writes the human-readable tree, with ids and checksums in xattrs', async () => {
    await dav('PUT', '/remote.php/webdav/docs/on-disk.txt', 'ann', { body: 'on disk' });
    const session = await env.provider.as('ann');
    const space = await session.personalSpace();
    const file = path.join(await env.driver.spacePath(space.id), 'docs', 'on-disk.txt');
    expect(await fsp.readFile(file, 'utf8')).toBe('on disk');
    const rec = JSON.parse((await xattr.getAttribute(file, 'user.stowage.n')).toString());
    expect(rec.ck.sha1).toBe(sha1('on disk'));
    const r = await dav('PROPFIND', '/remote.php/webdav/docs/on-disk.txt', 'ann', {
      headers: { depth: '0' },
      body: PROPS,
    });
    expect(await r.text()).toContain(`!${rec.id}</oc:id>`);
  });
});

describe('webdav: bad input', () => {
  it('refuses XML entities (XXE, entity bombs), malformed and oversized bodies with 4xx, and stays up', async () => {
    const bodies = {
      xxe: '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d:propfind xmlns:d="DAV:"><d:prop><d:getetag>&x;</d:getetag></d:prop></d:propfind>',
      bomb: `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">${Array.from({ length: 9 }, (_, i) => `<!ENTITY ${String.fromCharCode(98 + i)} "${`&${String.fromCharCode(97 + i)};`.repeat(10)}">`).join('')}]><d:propfind xmlns:d="DAV:"><d:prop>&j;</d:prop></d:propfind>`,
      malformed: '<d:propfind xmlns:d="DAV:"><d:prop>',
      deep: `<d:propfind xmlns:d="DAV:"><d:prop>${'<x>'.repeat(100)}${'</x>'.repeat(100)}</d:prop></d:propfind>`,
    };
    for (const [what, body] of Object.entries(bodies)) {
      for (const method of ['PROPFIND', 'PROPPATCH', 'LOCK']) {
        const r = await dav(method, '/remote.php/webdav/docs', 'ann', { headers: { depth: '0' }, body });
        expect(r.status, `${what} ${method}`).toBe(400);
        expect(await r.text()).toContain('<s:message>');
      }
    }
    const huge = await dav('PROPPATCH', '/remote.php/webdav/docs', 'ann', {
      body: 'x'.repeat(2 * 1024 * 1024),
    });
    expect(huge.status).toBe(413);
    expect((await dav('PROPFIND', '/remote.php/webdav/', 'ann', { headers: { depth: '0' } })).status).toBe(
      207,
    );
  });

  it('never writes a metadata key that is no XML name into a multistatus (no forged responses)', async () => {
    expect((await dav('PUT', `/dav/spaces/${projectId}/tagged.txt`, 'bob', { body: 't' })).status).toBe(201);
    const bob = await env.provider.as('bob');
    const forged =
      '{urn:x}a xmlns:x="urn:x"/></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/FAKE</d:href><d:propstat><d:prop><x:a';
    await bob.setMetadata({ space: projectId, path: 'tagged.txt' }, { [forged]: 'v', '{urn:x}fine': 'ok' });
    for (const body of [
      undefined, // allprop
      '<d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
    ]) {
      const r = await dav('PROPFIND', `/dav/spaces/${projectId}/`, 'ann', { headers: { depth: '1' }, body });
      const xml = await r.text();
      wellFormed(xml);
      expect(xml).not.toContain('/FAKE');
      expect(xml).toContain('fine');
    }
  });

  it('keeps a multistatus well-formed whatever the names and the values set through other doors', async () => {
    const bob = await env.provider.as('bob');
    expect((await dav('PUT', `/dav/spaces/${projectId}/decl.txt`, 'bob', { body: 'd' })).status).toBe(201);
    await bob.setMetadata(
      { space: projectId, path: 'decl.txt' },
      {
        '{urn:x}note': '<?xml version="1.0"?><x:note xmlns:x="urn:x">hi</x:note>',
        '{urn:x}pi': '<x:pi xmlns:x="urn:x">hi</x:pi><?evil?>',
      },
    );
    // Names XML 1.0 cannot carry (U+FFFE, U+FFFF, control characters), listed and trashed.
    expect((await dav('MKCOL', `/dav/spaces/${projectId}/odd`, 'bob')).status).toBe(201);
    for (const name of ['nc%EF%BF%BEx.txt', 'nc%EF%BF%BFy.txt', 'ctl%01z.txt'])
      expect((await dav('PUT', `/dav/spaces/${projectId}/odd/${name}`, 'bob', { body: 'z' })).status).toBe(
        201,
      );
    expect((await dav('DELETE', `/dav/spaces/${projectId}/odd/nc%EF%BF%BFy.txt`, 'bob')).status).toBe(204);
    for (const [url, depth] of [
      [`/dav/spaces/${projectId}/`, '1'],
      [`/dav/spaces/${projectId}/odd/`, '1'],
      [`/remote.php/dav/spaces/trash-bin/${projectId}/`, '1'],
    ] as const) {
      const r = await dav('PROPFIND', url, 'ann', { headers: { depth } });
      expect(r.status, url).toBe(207);
      const xml = await r.text();
      wellFormed(xml);
      if (url === `/dav/spaces/${projectId}/`) expect(xml).toContain('&lt;?xml version=');
    }
  });

  it('closes a connection whose refused body is still coming, and one that stays silent', async () => {
    const u = new URL(env.url);
    /** Open a socket, send `head` and one byte of body; resolves with what came back once it closed. */
    const dribble = (port: string, head: string) =>
      new Promise<{ text: string; ms: number }>((resolve, reject) => {
        const t0 = Date.now();
        const sock = net.connect(Number(port), u.hostname, () => sock.write(`${head}x`));
        let text = '';
        sock.on('data', (d) => {
          text += d.toString();
        });
        sock.on('error', reject);
        sock.on('close', () => resolve({ text, ms: Date.now() - t0 }));
        setTimeout(() => sock.destroy(new Error('still open after 10 s')), 10_000).unref();
      });
    // No credentials, 100,000 bytes announced, one sent: 401 at once; the rest of the body may
    // still come for a moment (a lingering close), then the connection ends.
    const anon = await dribble(
      u.port,
      'PUT /remote.php/webdav/slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n',
    );
    expect(anon.text).toMatch(/^HTTP\/1\.1 401/);
    expect(anon.text.toLowerCase()).toContain('connection: close');
    expect(anon.ms).toBeLessThan(LINGER_MS + 2_000);
    // A client waiting for 100 Continue sends no body: its connection closes with the answer.
    const waiting = await dribble(
      u.port,
      'PUT /remote.php/webdav/slow.bin HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n',
    );
    expect(waiting.text).toMatch(/^HTTP\/1\.1 401/);
    expect(waiting.text.toLowerCase()).toContain('connection: close');
    expect(waiting.ms).toBeLessThan(LINGER_MS);
    // A silent connection (an authenticated body that stalls) is closed after the idle timeout.
    const quick = await startDav([{ id: 'u-q', username: 'q' }], { watch: false, idleTimeoutMs: 500 });
    try {
      const stalled = await dribble(
        new URL(quick.url).port,
        `PUT /remote.php/webdav/stall.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${quick.basic('q')}\r\nContent-Length: 100000\r\n\r\n`,
      );
      expect(stalled.ms).toBeLessThan(5_000);
      // Nothing of the unfinished upload is left.
      expect(
        (
          await fetch(`${quick.url}/remote.php/webdav/stall.bin`, {
            headers: { authorization: quick.basic('q') },
          })
        ).status,
      ).toBe(404);
    } finally {
      await quick.close();
    }
  });

  it('bounds the XML bodies held at once and the time one may take (trickling connections hold no memory for long)', async () => {
    const MiB = 1024 * 1024;
    const small = await startDav([{ id: 'u-q', username: 'q' }], {
      watch: false,
      xmlBodies: { maxBytes: 3 * MiB, deadlineMs: 1_500 },
    });
    const port = Number(new URL(small.url).port);
    const head = (n: number) =>
      `PROPPATCH /remote.php/webdav/ HTTP/1.1\r\nHost: x\r\nAuthorization: ${small.basic('q')}\r\nContent-Type: application/xml\r\nContent-Length: ${n}\r\n\r\n`;
    /** A PROPPATCH announcing 1 MiB - 1 whose body stops `missing` bytes short, then trickles a byte every 200 ms. */
    const trickle = (missing: number) => {
      const sock = net.connect(port, '127.0.0.1');
      const t0 = Date.now();
      let text = '';
      sock.on('data', (d) => {
        text += d.toString();
      });
      sock.on('error', () => {});
      sock.write(head(MiB - 1));
      sock.write(Buffer.alloc(MiB - 1 - missing, 0x20));
      const drip = setInterval(() => sock.write(' '), 200);
      const closed = new Promise<{ text: string; ms: number }>((resolve) =>
        sock.on('close', () => {
          clearInterval(drip);
          resolve({ text, ms: Date.now() - t0 });
        }),
      );
      setTimeout(() => sock.destroy(), 10_000).unref();
      return closed;
    };
    /** The property the PROPPATCHes set, as PROPFIND shows it. */
    const shown = async () =>
      (
        await fetch(`${small.url}/remote.php/webdav/`, {
          method: 'PROPFIND',
          headers: { authorization: small.basic('q'), depth: '0' },
          body: '<d:propfind xmlns:d="DAV:"><d:prop><x:k xmlns:x="urn:x"/></d:prop></d:propfind>',
        })
      ).text();
    try {
      // Three bodies 0.9 MiB along, trickling: the budget (3 MiB) is nearly spent.
      const held = [trickle(100 * 1024), trickle(100 * 1024), trickle(100 * 1024)];
      await new Promise((r) => setTimeout(r, 500));
      // A fourth body gets no room: 503 at once, with when to try again; nothing changed.
      const busy = await fetch(`${small.url}/remote.php/webdav/`, {
        method: 'PROPPATCH',
        headers: { authorization: small.basic('q'), 'content-type': 'application/xml' },
        body: `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><x:k xmlns:x="urn:x">${'v'.repeat(MiB / 2)}</x:k></d:prop></d:set></d:propertyupdate>`,
      });
      expect(busy.status).toBe(503);
      expect(busy.headers.get('retry-after')).toBe('2');
      expect(await busy.text()).toContain('too many request bodies');
      // (a small body still fits)
      expect(await shown()).toContain('404 Not Found');
      // Past the deadline each trickling one is answered 408 and its connection closed.
      for (const r of await Promise.all(held)) {
        expect(r.text).toMatch(/^HTTP\/1\.1 408/);
        expect(r.text.toLowerCase()).toContain('connection: close');
        expect(r.ms).toBeLessThan(1_500 + LINGER_MS + 2_000);
      }
      // Their bytes are given back: a body as big as the refused one goes through now.
      const ok = await fetch(`${small.url}/remote.php/webdav/`, {
        method: 'PROPPATCH',
        headers: { authorization: small.basic('q'), 'content-type': 'application/xml' },
        body: `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><x:k xmlns:x="urn:x">small</x:k></d:prop></d:set><d:remove><d:prop><x:pad xmlns:x="urn:x">${' '.repeat(MiB / 2)}</x:pad></d:prop></d:remove></d:propertyupdate>`,
      });
      expect(ok.status).toBe(207);
      expect(await shown()).toMatch(/>small<\/x\d*:k>/);
    } finally {
      await small.close();
    }
  });

  it('stays up after refusing a chunked body it has not read to its end (over quota, too big)', async () => {
    const u = new URL(env.url);
    const small = await env.provider.createSpace({ type: 'project', name: 'Tiny quota', quota: 1024 * 1024 });
    await env.provider.setGrant(
      { space: small.id, path: '' },
      { grantee: { type: 'user', id: 'u-ann' }, permissions: fromLetters(ROLES.manager) },
    );
    /** Send a request with a chunked body of `bytes` bytes; resolves with the status line. */
    const chunked = (method: string, path: string, bytes: number, extra = '') =>
      new Promise<string>((resolve, reject) => {
        const sock = net.connect(Number(u.port), u.hostname, () => {
          sock.write(
            `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${env.basic('ann')}\r\n${extra}Transfer-Encoding: chunked\r\n\r\n`,
          );
          const piece = Buffer.alloc(64 * 1024, 120);
          let sent = 0;
          const more = () => {
            while (sent < bytes && !sock.destroyed) {
              sent += piece.length;
              if (!sock.write(`${piece.length.toString(16)}\r\n${piece}\r\n`))
                return void sock.once('drain', more);
            }
            if (!sock.destroyed) sock.write('0\r\n\r\n');
          };
          more();
        });
        let text = '';
        sock.on('data', (d) => {
          text += d.toString();
        });
        sock.on('error', () => {}); // the server may close while we still send
        sock.on('close', () => resolve(text.split('\r\n')[0] ?? ''));
        setTimeout(() => sock.destroy(new Error('still open after 10 s')), 10_000).unref();
        sock.once('timeout', reject);
      });
    expect(await chunked('PUT', `/dav/spaces/${small.id}/over.bin`, 3 * 1024 * 1024)).toMatch(/ 507 /);
    expect(await chunked('PROPFIND', '/remote.php/webdav/', 3 * 1024 * 1024, 'Depth: 0\r\n')).toMatch(
      / 413 /,
    );
    // Still serving, and nothing of the refused upload is there.
    await new Promise((r) => setTimeout(r, 200));
    expect((await dav('PROPFIND', '/remote.php/webdav/', 'ann', { headers: { depth: '0' } })).status).toBe(
      207,
    );
    expect((await dav('GET', `/dav/spaces/${small.id}/over.bin`, 'ann')).status).toBe(404);
  });

  it('lets a client that reads only once its body is sent see why the body was refused (GNOME Files)', async () => {
    // libsoup writes the whole body before it reads: a close mid-body reset the connection, and
    // the user saw "HTTP Error: (null)" instead of 507 or 423.
    const u = new URL(env.url);
    const tiny = await env.provider.createSpace({ type: 'project', name: 'Linger quota', quota: 1000 });
    await env.provider.setGrant(
      { space: tiny.id, path: '' },
      { grantee: { type: 'user', id: 'u-ann' }, permissions: fromLetters(ROLES.manager) },
    );
    const size = 8 * 1024 * 1024;
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(u.port), u.hostname, async () => {
        sock.write(
          `PUT /dav/spaces/${tiny.id}/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${env.basic('ann')}\r\nContent-Length: ${size}\r\n\r\n`,
        );
        const piece = Buffer.alloc(64 * 1024, 1);
        for (let sent = 0; sent < size; sent += piece.length)
          if (!sock.write(piece)) await new Promise((r) => sock.once('drain', r));
        sock.resume(); // only now read
      });
      sock.pause();
      let text = '';
      sock.on('data', (d) => {
        text += d.toString();
        if (text.includes('</d:error>')) {
          sock.destroy();
          resolve(text);
        }
      });
      sock.on('error', (err) => reject(new Error(`${err.message} after: ${text.slice(0, 80)}`)));
      setTimeout(() => sock.destroy(new Error('no answer after 10 s')), 10_000).unref();
    });
    expect(answer).toMatch(/^HTTP\/1\.1 507 /);
    expect((await dav('GET', `/dav/spaces/${tiny.id}/big.bin`, 'ann')).status).toBe(404);
  });

  it('serves uploaded HTML sandboxed, and clamps a range end however far past the file', async () => {
    expect(
      (await dav('PUT', '/remote.php/webdav/page.html', 'ann', { body: '<script>alert(1)</script>' })).status,
    ).toBe(201);
    const page = await dav('GET', '/remote.php/webdav/page.html', 'ann');
    expect(page.headers.get('content-security-policy')).toContain('sandbox');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const far = await dav('GET', '/remote.php/webdav/page.html', 'ann', {
      headers: { range: 'bytes=0-99999999999999999999999' },
    });
    expect(far.status).toBe(206);
    expect(far.headers.get('content-range')).toBe('bytes 0-24/25');
  });

  it('refuses traversal, encoded slashes, NUL and overlong names in URLs, and creates nothing', async () => {
    for (const url of [
      '/remote.php/webdav/%2e%2e/%2e%2e/etc/passwd',
      '/remote.php/webdav/docs/..%2f..%2fx',
      '/remote.php/webdav/a%2fb',
      '/remote.php/webdav/nul%00.txt',
      `/remote.php/webdav/${'n'.repeat(300)}`,
      '/remote.php/webdav/bad%zz',
    ]) {
      expect(await raw('PUT', url, 'ann', 'x'), url).toBe(400);
    }
    const listing = await (
      await dav('PROPFIND', '/remote.php/webdav/', 'ann', { headers: { depth: '1' } })
    ).text();
    expect(listing).not.toMatch(/passwd|nul|nnnnnnnn|a%2fb/);
  });

  it('reads a URL ending in "/" as a folder: a file there is not found, and PUT or LOCK makes no file of it', async () => {
    const file = '/remote.php/webdav/slash-kept.txt';
    expect((await dav('PUT', file, 'ann', { body: 'kept' })).status).toBe(201);
    const lockBody =
      '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';
    const dest = { destination: `${env.url}/remote.php/webdav/slash-moved.txt` };
    for (const [method, init] of [
      ['GET', {}],
      ['HEAD', {}],
      ['DELETE', {}],
      ['PROPFIND', { headers: { depth: '0' } }],
      [
        'PROPPATCH',
        {
          body: '<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><x:a xmlns:x="urn:x">1</x:a></d:prop></d:set></d:propertyupdate>',
        },
      ],
      ['MOVE', { headers: dest }],
      ['COPY', { headers: dest }],
      ['LOCK', { body: lockBody }],
      ['UNLOCK', { headers: { 'lock-token': '<opaquelocktoken:none>' } }],
    ] as const) {
      const r = await dav(method, `${file}/`, 'ann', init);
      expect(r.status, method).toBe(404);
    }
    // PUT to a folder's URL makes no file under the folder's name, nor does a LOCK of one unmapped.
    const put = await dav('PUT', '/remote.php/webdav/slash-new/', 'ann', { body: 'lost?' });
    expect(put.status).toBe(409);
    expect(await put.text()).toMatch(/names a folder/);
    expect((await dav('PUT', `${file}/`, 'ann', { body: 'replaced?' })).status).toBe(409);
    expect((await dav('LOCK', '/remote.php/webdav/slash-new/', 'ann', { body: lockBody })).status).toBe(409);
    expect((await dav('GET', file, 'ann')).status).toBe(200);
    expect(await (await dav('GET', file, 'ann')).text()).toBe('kept');
    for (const gone of ['slash-new', 'slash-moved.txt'])
      expect(
        (await dav('PROPFIND', `/remote.php/webdav/${gone}`, 'ann', { headers: { depth: '0' } })).status,
      ).toBe(404);
    // Folders are reached either way, and MKCOL takes the slash.
    expect((await dav('MKCOL', '/remote.php/webdav/slash-dir/', 'ann')).status).toBe(201);
    expect(
      (await dav('PROPFIND', '/remote.php/webdav/slash-dir', 'ann', { headers: { depth: '0' } })).status,
    ).toBe(207);
    expect((await dav('GET', '/remote.php/webdav/slash-dir/', 'ann')).status).toBe(200);
    expect((await dav('DELETE', '/remote.php/webdav/slash-dir/', 'ann')).status).toBe(204);
  });

  it('refuses an UNLOCK whose token is no URI with 400, and one naming no lock here with 409', async () => {
    const file = '/remote.php/webdav/unlock-me.txt';
    expect((await dav('PUT', file, 'ann', { body: 'x' })).status).toBe(201);
    for (const token of ['<garbage>', 'garbage', '<>'])
      expect((await dav('UNLOCK', file, 'ann', { headers: { 'lock-token': token } })).status, token).toBe(
        400,
      );
    const other = await dav('UNLOCK', file, 'ann', {
      headers: { 'lock-token': '<opaquelocktoken:nothing-here>' },
    });
    expect(other.status).toBe(409);
  });

  it('takes a Destination naming the server as a reverse proxy passed it on (Host, X-Forwarded-Host, Forwarded)', async () => {
    await dav('PUT', '/remote.php/webdav/proxied.txt', 'ann', { body: 'via a proxy' });
    const u = new URL(env.url);
    const move = (from: string, to: string, headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: u.hostname,
            port: u.port,
            method: 'MOVE',
            path: `/remote.php/webdav/${from}`,
            headers: { authorization: env.basic('ann'), destination: `${to}`, ...headers },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.once('error', reject);
        req.end();
      });
    const at = (n: number) => `https://cloud.example.com:8443/remote.php/webdav/proxied-${n}.txt`;
    // nginx's `$host`: the name without the port clients use
    expect(await move('proxied.txt', at(1), { host: 'cloud.example.com' })).toBe(201);
    // The proxy gave its own address as the Host and said the client's in a header
    expect(await move('proxied-1.txt', at(2), { 'x-forwarded-host': 'cloud.example.com:8443' })).toBe(201);
    expect(
      await move('proxied-2.txt', at(3), {
        forwarded: 'for=10.0.0.1;proto=https;host="cloud.example.com:8443"',
      }),
    ).toBe(201);
    // The default port of the scheme is the same server whether said or not
    expect(
      await move('proxied-3.txt', 'https://cloud.example.com/remote.php/webdav/proxied-4.txt', {
        'x-forwarded-host': 'cloud.example.com:443',
      }),
    ).toBe(201);
    // Still another server: another name, or another port of a name given with its port
    expect(await move('proxied-4.txt', at(5), { 'x-forwarded-host': 'other.example.com' })).toBe(502);
    expect(await move('proxied-4.txt', at(5), { host: 'cloud.example.com:9443' })).toBe(502);
    expect(await (await dav('GET', '/remote.php/webdav/proxied-4.txt', 'ann')).text()).toBe('via a proxy');
  });

  it('refuses a Destination on another host or in a space without a grant', async () => {
    await dav('PUT', '/remote.php/webdav/keep.txt', 'ann', { body: 'keep' });
    const other = await dav('MOVE', '/remote.php/webdav/keep.txt', 'ann', {
      headers: { destination: 'http://elsewhere.example/remote.php/webdav/x.txt' },
    });
    expect(other.status).toBe(502);
    // Also as a scheme-relative URL, and for the MOVE that assembles a chunked upload.
    const relative = await dav('COPY', '/remote.php/webdav/keep.txt', 'ann', {
      headers: { destination: '//elsewhere.example/remote.php/webdav/x2.txt' },
    });
    expect(relative.status).toBe(502);
    const up = '/remote.php/dav/uploads/ann/elsewhere-1';
    expect((await dav('MKCOL', up, 'ann', { headers: { 'oc-total-length': '2' } })).status).toBe(201);
    expect((await dav('PUT', `${up}/0`, 'ann', { body: 'ab' })).status).toBe(201);
    const chunked = await dav('MOVE', `${up}/.file`, 'ann', {
      headers: { destination: 'http://elsewhere.example/remote.php/webdav/x3.txt', 'oc-total-length': '2' },
    });
    expect(chunked.status).toBe(502);
    // HTTP/1.0 without Host: a Destination URL cannot be checked, so it is refused.
    const u = new URL(env.url);
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(u.port), u.hostname, () =>
        sock.write(
          `COPY /remote.php/webdav/keep.txt HTTP/1.0\r\nAuthorization: ${env.basic('ann')}\r\nDestination: http://elsewhere.example/remote.php/webdav/x4.txt\r\n\r\n`,
        ),
      );
      let text = '';
      sock.on('data', (d) => {
        text += d.toString();
      });
      sock.on('close', () => resolve(text));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.[01] 400/);
    for (const name of ['x.txt', 'x2.txt', 'x3.txt', 'x4.txt'])
      expect((await dav('GET', `/remote.php/webdav/${name}`, 'ann')).status).toBe(404);
    const eveSpace = await (await env.provider.as('eve')).personalSpace();
    const noGrant = await dav('COPY', '/remote.php/webdav/keep.txt', 'ann', {
      headers: { destination: `/dav/spaces/${eveSpace.id}/stolen.txt` },
    });
    expect(noGrant.status).toBe(404);
    expect((await dav('GET', '/remote.php/webdav/keep.txt', 'ann')).status).toBe(200);
  });

  it('reads an unencoded UTF-8 Destination as UTF-8, and refuses "." and ".." in one', async () => {
    expect((await dav('MKCOL', '/remote.php/webdav/dots', 'ann')).status).toBe(201);
    expect((await dav('PUT', '/remote.php/webdav/dots/a.txt', 'ann', { body: 'a' })).status).toBe(201);
    // Raw bytes on the wire (fetch would refuse them), as some clients send them.
    const u = new URL(env.url);
    const raw = (destination: Buffer) =>
      new Promise<string>((resolve, reject) => {
        const sock = net.connect(Number(u.port), u.hostname, () =>
          sock.write(
            Buffer.concat([
              Buffer.from(
                `COPY /remote.php/webdav/dots/a.txt HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\nAuthorization: ${env.basic('ann')}\r\nDestination: `,
              ),
              destination,
              Buffer.from('\r\n\r\n'),
            ]),
          ),
        );
        let text = '';
        sock.on('data', (d) => {
          text += d.toString();
        });
        sock.on('close', () => resolve(text));
        sock.on('error', reject);
      });
    expect(await raw(Buffer.from(`${env.url}/remote.php/webdav/dots/raw é.txt`, 'utf8'))).toMatch(
      /^HTTP\/1\.1 201/,
    );
    expect(
      (await dav('GET', `/remote.php/webdav/dots/${encodeURIComponent('raw é.txt')}`, 'ann')).status,
    ).toBe(200);
    expect(await raw(Buffer.from([...Buffer.from('/remote.php/webdav/dots/bad'), 0xe9, 0x2e]))).toMatch(
      /^HTTP\/1\.1 400/,
    );
    for (const destination of [
      '/remote.php/webdav/dots/../up.txt',
      '/remote.php/webdav/dots/%2e%2e/up.txt',
      `${env.url}/remote.php/webdav/dots/./same.txt`,
    ]) {
      const r = await dav('MOVE', '/remote.php/webdav/dots/a.txt', 'ann', { headers: { destination } });
      expect(r.status, destination).toBe(400);
    }
    expect((await dav('GET', '/remote.php/webdav/dots/a.txt', 'ann')).status).toBe(200);
    expect((await dav('GET', '/remote.php/webdav/up.txt', 'ann')).status).toBe(404);
    // What a URL parser would read as `/` or drop (a backslash, a tab) is part of a name, as in
    // request URLs: it never climbs out of the folder.
    expect(await raw(Buffer.from('/remote.php/webdav/dots/x\\..\\..\\up.txt'))).toMatch(/^HTTP\/1\.1 20[14]/);
    expect(await raw(Buffer.from(`${env.url}/remote.php/webdav/dots/.\t./up.txt`))).toMatch(
      /^HTTP\/1\.1 (20[14]|400|409)/,
    );
    expect((await dav('GET', '/remote.php/webdav/up.txt', 'ann')).status).toBe(404);
    expect(
      (await dav('GET', `/remote.php/webdav/dots/${encodeURIComponent('x\\..\\..\\up.txt')}`, 'ann')).status,
    ).toBe(200);
  });

  it('refuses another user’s lock token', async () => {
    const lockBody =
      '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>bob</d:owner></d:lockinfo>';
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/locked.txt`, 'bob', { body: lockBody });
    expect(lock.status).toBe(201);
    const token = lock.headers.get('lock-token')!;
    expect(token).toMatch(/^<opaquelocktoken:/);
    const byAnn = await dav('PUT', `/dav/spaces/${projectId}/locked.txt`, 'ann', {
      body: 'ann overwrites',
      headers: { if: `(${token})` },
    });
    expect(byAnn.status).toBe(423);
    // The precondition names the locked file (no trailing slash) in a well-formed body.
    const body = await byAnn.text();
    wellFormed(body);
    expect(body).toContain(
      `<d:lock-token-submitted><d:href>/dav/spaces/${projectId}/locked.txt</d:href></d:lock-token-submitted>`,
    );
    const byBob = await dav('PUT', `/dav/spaces/${projectId}/locked.txt`, 'bob', {
      body: 'bob writes',
      headers: { if: `(${token})` },
    });
    expect(byBob.status).toBe(204);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/locked.txt`, 'ann')).text()).toBe('bob writes');
  });
});

describe('webdav: HTTP details', () => {
  /** Send a request's head on a fresh connection; what the server says before any body is sent. */
  const expectContinue = (head: string, body?: string) =>
    new Promise<string>((resolve, reject) => {
      const u = new URL(env.url);
      const sock = net.connect(Number(u.port), u.hostname, () => sock.write(head));
      let got = '';
      sock.on('data', (d) => {
        got += d.toString('latin1');
        if (body !== undefined && got.startsWith('HTTP/1.1 100') && got.includes('\r\n\r\n')) {
          sock.write(body);
          body = undefined;
          got = '';
        } else if (got.includes('\r\n\r\n') && !got.startsWith('HTTP/1.1 100')) {
          sock.destroy();
          resolve(got);
        }
      });
      sock.on('error', reject);
      setTimeout(() => {
        sock.destroy();
        resolve(got);
      }, 3000);
    });

  it('answers Expect: 100-continue only when the body is wanted: a refusal comes at once, without it', async () => {
    expect((await dav('PUT', '/remote.php/webdav/expect.txt', 'ann', { body: 'there' })).status).toBe(201);
    const put = (headers: string) =>
      `PUT /remote.php/webdav/expect.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n${headers}\r\n`;
    const refused = await expectContinue(put(`Authorization: ${env.basic('ann')}\r\nIf-None-Match: *\r\n`));
    expect(refused).toMatch(/^HTTP\/1\.1 412 /);
    const unauthenticated = await expectContinue(put(''));
    expect(unauthenticated).toMatch(/^HTTP\/1\.1 401 /);
    const accepted = await expectContinue(put(`Authorization: ${env.basic('ann')}\r\n`), 'fresh');
    expect(accepted).toMatch(/^HTTP\/1\.1 204 /);
    // A 204 carries no body, and says so by having no Content-Length (RFC 9110 §8.6).
    expect(accepted.toLowerCase()).not.toContain('content-length');
    expect(await (await dav('GET', '/remote.php/webdav/expect.txt', 'ann')).text()).toBe('fresh');
  });

  it('answers OPTIONS * about the server, and a method nobody knows with 501', async () => {
    const star = await expectContinue('OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(star).toMatch(/^HTTP\/1\.1 200 /);
    expect(star.toLowerCase()).toContain('\r\ndav: 1, 2, 3\r\n');
    const unknown = await expectContinue(
      `FROBNICATE /remote.php/webdav/ HTTP/1.1\r\nHost: x\r\nAuthorization: ${env.basic('ann')}\r\n\r\n`,
    );
    expect(unknown).toMatch(/^HTTP\/1\.1 501 /);
    // A known method this server does not take: 405, with what the resource allows.
    const known = await dav('PATCH', '/remote.php/webdav/', 'ann');
    expect(known.status).toBe(405);
    expect(known.headers.get('allow')).toContain('PROPFIND');
    // Bad bytes are still 400, and the server is still up.
    expect(await expectContinue('GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect((await dav('PROPFIND', '/remote.php/webdav/', 'ann', { headers: { depth: '0' } })).status).toBe(
      207,
    );
  });

  it('says at the server root that it speaks WebDAV, and sends clients on to the personal space', async () => {
    // Windows' WebClient asks OPTIONS / before it maps any folder, without credentials.
    const options = await dav('OPTIONS', '/', null, {
      headers: { 'user-agent': 'Microsoft-WebDAV-MiniRedir/10.0.19045' },
    });
    expect(options.status).toBe(200);
    expect(options.headers.get('dav')).toBe('1, 2, 3');
    expect(options.headers.get('ms-author-via')).toBe('DAV');
    for (const method of ['GET', 'HEAD', 'PROPFIND']) {
      const r = await dav(method, '/', null, { redirect: 'manual' });
      expect(r.status, method).toBe(302);
      expect(r.headers.get('location')).toBe('/remote.php/webdav/');
    }
    const put = await dav('PUT', '/', 'ann', { body: 'x' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toContain('PROPFIND');
    // Followed, with credentials: the personal space.
    expect((await dav('PROPFIND', '/', 'ann', { headers: { depth: '0' } })).status).toBe(207);
  });

  it('takes a PROPFIND of a file without Depth, refuses infinity on folders only, and answers an empty prop well-formed', async () => {
    expect((await dav('PUT', '/remote.php/webdav/depthless.txt', 'ann', { body: 'd' })).status).toBe(201);
    for (const depth of [undefined, 'infinity']) {
      const r = await dav('PROPFIND', '/remote.php/webdav/depthless.txt', 'ann', {
        headers: depth ? { depth } : {},
      });
      expect(r.status, depth).toBe(207);
      expect((await r.text()).match(/<d:response>/g)).toHaveLength(1);
    }
    const folder = await dav('PROPFIND', '/remote.php/webdav/', 'ann');
    expect(folder.status).toBe(403);
    expect(await folder.text()).toContain('<d:propfind-finite-depth/>');
    expect((await dav('PROPFIND', '/remote.php/webdav/no-such.txt', 'ann')).status).toBe(404);
    const empty = await dav('PROPFIND', '/remote.php/webdav/depthless.txt', 'ann', {
      headers: { depth: '0' },
      body: '<d:propfind xmlns:d="DAV:"><d:prop/></d:propfind>',
    });
    const xml = await empty.text();
    wellFormed(xml);
    expect(xml).toContain('<d:propstat><d:prop></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>');
  });

  it('names the precondition of a protected property, and the methods a resource allows in a 405', async () => {
    const r = await dav('PROPPATCH', '/remote.php/webdav/depthless.txt', 'ann', {
      body: '<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:getetag>"x"</d:getetag></d:prop></d:set></d:propertyupdate>',
    });
    expect(r.status).toBe(207);
    expect(await r.text()).toContain(
      '<d:status>HTTP/1.1 403 Forbidden</d:status><d:error><d:cannot-modify-protected-property/></d:error>',
    );
    const onFile = await dav('MKCOL', '/remote.php/webdav/depthless.txt', 'ann');
    expect(onFile.status).toBe(405);
    expect(onFile.headers.get('allow')).toContain('PUT');
    expect(onFile.headers.get('allow')).not.toContain('MKCOL');
    const onFolder = await dav('MKCOL', '/remote.php/webdav/', 'ann');
    expect(onFolder.status).toBe(405);
    expect(onFolder.headers.get('allow')).not.toMatch(/MKCOL|PUT/);
  });
});

describe('webdav: locked destinations', () => {
  const lockBody =
    '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';
  it('a COPY or MOVE that fails leaves a locked destination and its lock as they were', async () => {
    const dst = `/dav/spaces/${projectId}/kept.txt`;
    expect((await dav('PUT', dst, 'ann', { body: 'keep me' })).status).toBe(201);
    const token = (await dav('LOCK', dst, 'ann', { body: lockBody })).headers.get('lock-token')!;
    expect((await dav('PUT', '/remote.php/webdav/mover.txt', 'ann', { body: 'from home' })).status).toBe(201);
    // Across spaces a MOVE cannot go: refused (502, another namespace), and nothing changed.
    const moved = await dav('MOVE', '/remote.php/webdav/mover.txt', 'ann', {
      headers: { destination: dst, if: `<${env.url}${dst}> (${token})` },
    });
    expect(moved.status).toBe(502);
    expect(await (await dav('GET', dst, 'ann')).text()).toBe('keep me');
    // Still locked: another write without the token is refused.
    expect((await dav('PUT', dst, 'ann', { body: 'x' })).status).toBe(423);
    // A COPY onto it with the token replaces it in one step.
    const copied = await dav('COPY', '/remote.php/webdav/mover.txt', 'ann', {
      headers: { destination: dst, if: `<${env.url}${dst}> (${token})` },
    });
    expect(copied.status).toBe(204);
    expect(await (await dav('GET', dst, 'ann')).text()).toBe('from home');
  });

  it('refuses a Depth: infinity lock on a folder when a member is locked', async () => {
    const dir = `/dav/spaces/${projectId}/lk`;
    expect((await dav('MKCOL', dir, 'ann')).status).toBe(201);
    expect((await dav('MKCOL', `${dir}/sub`, 'ann')).status).toBe(201);
    expect((await dav('PUT', `${dir}/sub/f.txt`, 'ann', { body: 'mine' })).status).toBe(201);
    const token = (await dav('LOCK', `${dir}/sub/f.txt`, 'ann', { body: lockBody })).headers.get(
      'lock-token',
    )!;
    const tree = await dav('LOCK', dir, 'bob', { body: lockBody, headers: { depth: 'infinity' } });
    expect(tree.status).toBe(423);
    expect(await tree.text()).toContain(`<d:no-conflicting-lock><d:href>${dir}/sub/f.txt</d:href>`);
    // The member's holder keeps writing it with her token.
    const put = await dav('PUT', `${dir}/sub/f.txt`, 'ann', {
      body: 'still mine',
      headers: { if: `<${env.url}${dir}/sub/f.txt> (${token})` },
    });
    expect(put.status).toBe(204);
    // A Depth: 0 lock of the folder itself does not reach the member.
    expect((await dav('LOCK', dir, 'bob', { body: lockBody, headers: { depth: '0' } })).status).toBe(200);
  });

  it('moves a locked file over another locked file with both tokens', async () => {
    const a = `/dav/spaces/${projectId}/la.txt`;
    const b = `/dav/spaces/${projectId}/lb.txt`;
    for (const u of [a, b]) expect((await dav('PUT', u, 'ann', { body: u })).status).toBe(201);
    const ta = (await dav('LOCK', a, 'ann', { body: lockBody })).headers.get('lock-token')!;
    const tb = (await dav('LOCK', b, 'ann', { body: lockBody })).headers.get('lock-token')!;
    const onlyOne = await dav('MOVE', a, 'ann', {
      headers: { destination: b, if: `<${env.url}${a}> (${ta})` },
    });
    expect(onlyOne.status).toBe(423);
    const both = await dav('MOVE', a, 'ann', {
      headers: { destination: b, if: `<${env.url}${a}> (${ta}) <${env.url}${b}> (${tb})` },
    });
    expect(both.status).toBe(204);
    expect(await (await dav('GET', b, 'ann')).text()).toBe(a);
    expect((await dav('GET', a, 'ann')).status).toBe(404);
  });

  it('reads untagged If lists of a COPY or MOVE as about the source, not the Destination (RFC 4918 §10.4.4)', async () => {
    const base = `/dav/spaces/${projectId}`;
    expect((await dav('PUT', `${base}/u1.txt`, 'ann', { body: 'u1' })).status).toBe(201);
    const token = (await dav('LOCK', `${base}/u1.txt`, 'ann', { body: lockBody })).headers.get('lock-token')!;
    const moved = await dav('MOVE', `${base}/u1.txt`, 'ann', {
      headers: { destination: `${base}/u1-new.txt`, if: `(${token})` },
    });
    expect(moved.status).toBe(201);
    const etag = (await dav('PUT', `${base}/et.txt`, 'ann', { body: 'et' })).headers.get('etag')!;
    const copy = (ifHeader: string) =>
      dav('COPY', `${base}/et.txt`, 'ann', { headers: { destination: `${base}/et-copy.txt`, if: ifHeader } });
    expect((await copy('(["not-the-etag"])')).status).toBe(412);
    expect((await copy(`([${etag}])`)).status).toBe(201);
    // A tagged list about the Destination still counts: its etag must match.
    expect((await copy(`<${env.url}${base}/et-copy.txt> (["stale"])`)).status).toBe(412);
  });

  it('refuses a COPY or MOVE onto the source or a folder above it, by path or by id, and changes nothing', async () => {
    const base = `/dav/spaces/${projectId}`;
    for (const p of ['cz', 'cz/a', 'cz/a/b'])
      expect((await dav('MKCOL', `${base}/${p}`, 'ann')).status).toBe(201);
    expect((await dav('PUT', `${base}/cz/a/b/thesis.tex`, 'ann', { body: 'thesis' })).status).toBe(201);
    expect((await dav('PUT', `${base}/cz/notes.txt`, 'ann', { body: 'notes' })).status).toBe(201);
    const ann = await env.provider.as('u-ann');
    const idOf = async (p: string) => {
      const { id } = await ann.stat({ space: projectId, path: p });
      return `/dav/spaces/${encodeURIComponent(`${id.storageId}$${id.spaceId}!${id.opaqueId}`)}`;
    };
    const attempts: [string, string, Record<string, string>][] = [
      ['COPY', `${base}/cz/a/b`, { destination: `${base}/cz`, depth: '0' }],
      ['COPY', `${base}/cz/a/b`, { destination: `${base}/cz/a`, depth: 'infinity' }],
      ['MOVE', `${base}/cz/a/b`, { destination: `${base}/cz` }],
      ['COPY', `${base}/cz/a`, { destination: await idOf('cz/a'), depth: '0' }],
      ['COPY', await idOf('cz/a/b'), { destination: `${base}/cz/a`, depth: '0' }],
      ['MOVE', await idOf('cz/a'), { destination: await idOf('cz') }],
    ];
    for (const [method, from, headers] of attempts) {
      const r = await dav(method, from, 'ann', { headers });
      expect(r.status, `${method} ${from} -> ${headers.destination}`).toBe(403);
    }
    expect(await (await dav('GET', `${base}/cz/a/b/thesis.tex`, 'ann')).text()).toBe('thesis');
    expect(await (await dav('GET', `${base}/cz/notes.txt`, 'ann')).text()).toBe('notes');
    // Nothing went to the trash meanwhile.
    for await (const item of ann.listTrash(projectId)) expect(item.path).not.toMatch(/^\/cz/);
  });

  it('moves, replaces and deletes a folder whose members are locked when their tokens come in the If header (davfs2 does)', async () => {
    const base = `/dav/spaces/${projectId}`;
    const url = (p: string) => `${env.url}${base}/${p}`;
    expect((await dav('MKCOL', `${base}/lm`, 'ann')).status).toBe(201);
    expect((await dav('MKCOL', `${base}/lm/in`, 'ann')).status).toBe(201);
    for (const f of ['lm/in/a.txt', 'lm/b.txt'])
      expect((await dav('PUT', `${base}/${f}`, 'ann', { body: f })).status).toBe(201);
    const ta = (await dav('LOCK', `${base}/lm/in/a.txt`, 'ann', { body: lockBody })).headers.get(
      'lock-token',
    )!;
    const tb = (await dav('LOCK', `${base}/lm/b.txt`, 'ann', { body: lockBody })).headers.get('lock-token')!;
    const both = (dir: string) => `<${url(`${dir}/in/a.txt`)}> (${ta}) <${url(`${dir}/b.txt`)}> (${tb})`;
    const move = (user: string, ifHeader?: string) =>
      dav('MOVE', `${base}/lm`, user, {
        headers: { destination: `${base}/lm2`, ...(ifHeader && { if: ifHeader }) },
      });
    // Without the tokens, with one of the two, or from someone else (exclusive locks are ann's):
    // refused, and nothing moved.
    // The 423 names the member whose token is missing (RFC 4918 §16, lock-token-submitted).
    const named = async (r: Response) => {
      expect(r.status).toBe(423);
      return /<d:lock-token-submitted><d:href>([^<]*)<\/d:href><\/d:lock-token-submitted>/.exec(
        await r.text(),
      )?.[1];
    };
    expect([`${base}/lm/in/a.txt`, `${base}/lm/b.txt`]).toContain(await named(await move('ann')));
    expect(await named(await move('ann', `<${url('lm/in/a.txt')}> (${ta})`))).toBe(`${base}/lm/b.txt`);
    expect((await move('bob', both('lm'))).status).toBe(423);
    expect((await dav('GET', `${base}/lm/b.txt`, 'ann')).status).toBe(200);
    expect((await move('ann', both('lm'))).status).toBe(201);
    expect(await (await dav('GET', `${base}/lm2/in/a.txt`, 'ann')).text()).toBe('lm/in/a.txt');
    expect((await dav('GET', `${base}/lm/b.txt`, 'ann')).status).toBe(404);
    // The moved members' locks were dropped (RFC 4918 §7.7): their tokens name no lock any more.
    expect((await dav('PUT', `${base}/lm2/b.txt`, 'bob', { body: 'lm/b.txt' })).status).toBe(204);
    expect(
      (await dav('UNLOCK', `${base}/lm2/in/a.txt`, 'ann', { headers: { 'lock-token': ta } })).status,
    ).toBe(409);

    // A COPY that replaces the folder (Overwrite: T) takes its locked members along: their tokens.
    const ta2 = (await dav('LOCK', `${base}/lm2/in/a.txt`, 'ann', { body: lockBody })).headers.get(
      'lock-token',
    )!;
    const tb2 = (await dav('LOCK', `${base}/lm2/b.txt`, 'ann', { body: lockBody })).headers.get(
      'lock-token',
    )!;
    expect((await dav('MKCOL', `${base}/lsrc`, 'ann')).status).toBe(201);
    expect((await dav('PUT', `${base}/lsrc/c.txt`, 'ann', { body: 'c' })).status).toBe(201);
    const copy = (ifHeader?: string) =>
      dav('COPY', `${base}/lsrc`, 'ann', {
        headers: { destination: `${base}/lm2`, ...(ifHeader && { if: ifHeader }) },
      });
    expect(await named(await copy(`<${url('lm2/in/a.txt')}> (${ta2})`))).toBe(`${base}/lm2/b.txt`);
    expect((await dav('GET', `${base}/lm2/b.txt`, 'ann')).status).toBe(200);
    expect((await copy(`<${url('lm2/in/a.txt')}> (${ta2}) <${url('lm2/b.txt')}> (${tb2})`)).status).toBe(204);
    expect((await dav('GET', `${base}/lm2/c.txt`, 'ann')).status).toBe(200);
    expect((await dav('GET', `${base}/lm2/b.txt`, 'ann')).status).toBe(404);

    // DELETE of a folder with a locked member.
    expect((await dav('PUT', `${base}/lsrc/d.txt`, 'ann', { body: 'd' })).status).toBe(201);
    const td = (await dav('LOCK', `${base}/lsrc/d.txt`, 'ann', { body: lockBody })).headers.get(
      'lock-token',
    )!;
    expect(await named(await dav('DELETE', `${base}/lsrc`, 'ann'))).toBe(`${base}/lsrc/d.txt`);
    // Addressed by id, the member is named below the id the same way.
    const { id: lsrcId } = await (await env.provider.as('u-ann')).stat({ space: projectId, path: 'lsrc' });
    const byId = `/dav/spaces/${lsrcId.storageId}$${lsrcId.spaceId}!${lsrcId.opaqueId}`;
    expect(await named(await dav('DELETE', byId, 'ann'))).toBe(`${byId}/d.txt`);
    expect(
      (await dav('DELETE', `${base}/lsrc`, 'bob', { headers: { if: `<${url('lsrc/d.txt')}> (${td})` } }))
        .status,
    ).toBe(423);
    expect((await dav('GET', `${base}/lsrc/d.txt`, 'ann')).status).toBe(200);
    expect(
      (await dav('DELETE', `${base}/lsrc`, 'ann', { headers: { if: `<${url('lsrc/d.txt')}> (${td})` } }))
        .status,
    ).toBe(204);
    expect((await dav('GET', `${base}/lsrc/c.txt`, 'ann')).status).toBe(404);
  });
});

describe('webdav: TUS uploads on the spaces endpoint', () => {
  it('refuses to finish an upload into a folder someone else locked since it began, and finishes the locker’s own', async () => {
    const lockBody =
      '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';
    const b64 = (v: string) => Buffer.from(v).toString('base64');
    expect((await dav('MKCOL', `/dav/spaces/${projectId}/tl`, 'ann')).status).toBe(201);
    expect((await dav('MKCOL', `/dav/spaces/${projectId}/tl/sub`, 'ann')).status).toBe(201);
    const start = async (user: string, name: string) => {
      const r = await dav('POST', `/dav/spaces/${projectId}/tl/sub/`, user, {
        headers: {
          'tus-resumable': '1.0.0',
          'upload-length': '4',
          'upload-metadata': `filename ${b64(name)}`,
        },
      });
      expect(r.status).toBe(201);
      return r.headers.get('location')!;
    };
    const finish = (location: string) =>
      fetch(location, {
        method: 'PATCH',
        headers: {
          'tus-resumable': '1.0.0',
          'upload-offset': '0',
          'content-type': 'application/offset+octet-stream',
        },
        body: 'late',
      });
    const ann1 = await start('ann', 'late.txt');
    const bob1 = await start('bob', 'bobs.txt');
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/tl`, 'bob', {
      body: lockBody,
      headers: { depth: 'infinity' },
    });
    expect(lock.status).toBe(200);
    expect((await dav('PUT', `/dav/spaces/${projectId}/tl/sub/ctl.txt`, 'ann', { body: 'x' })).status).toBe(
      423,
    );
    expect((await finish(ann1)).status).toBe(423);
    expect((await dav('GET', `/dav/spaces/${projectId}/tl/sub/late.txt`, 'ann')).status).toBe(404);
    // The lock's holder finishes hers (a PATCH has no If header to carry the token).
    expect((await finish(bob1)).status).toBe(204);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/tl/sub/bobs.txt`, 'ann')).text()).toBe('late');
  });

  it('creates by POST on a folder (filename in Upload-Metadata), resumes with PATCH, and lands the file', async () => {
    const data = Buffer.concat([Buffer.alloc(100_000, 5), Buffer.from('end')]);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const created = await dav('POST', `/dav/spaces/${projectId}/`, 'ann', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': String(data.length),
        'upload-metadata': `filename ${b64('tus upload #1.bin')},mtime ${b64('1700000000')}`,
      },
    });
    expect(created.status).toBe(201);
    const location = created.headers.get('location')!;
    expect(location).toMatch(/\/data\/tus\//);
    // First half, then ask where we are, then the rest.
    const half = 60_000;
    const p1 = await fetch(location, {
      method: 'PATCH',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-offset': '0',
        'content-type': 'application/offset+octet-stream',
      },
      body: data.subarray(0, half),
    });
    expect(p1.status).toBe(204);
    const head = await fetch(location, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0' } });
    expect(head.headers.get('upload-offset')).toBe(String(half));
    const p2 = await fetch(location, {
      method: 'PATCH',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-offset': String(half),
        'content-type': 'application/offset+octet-stream',
      },
      body: data.subarray(half),
    });
    expect(p2.status).toBe(204);
    const got = await dav('GET', `/dav/spaces/${projectId}/tus%20upload%20%231.bin`, 'ann');
    expect(sha1(Buffer.from(await got.arrayBuffer()))).toBe(sha1(data));
    expect(got.headers.get('last-modified')).toBe(new Date(1_700_000_000_000).toUTCString());
    // OPTIONS says TUS is there; someone without a grant cannot start one.
    const opts = await dav('OPTIONS', `/dav/spaces/${projectId}/`, 'ann');
    expect(opts.headers.get('tus-resumable')).toBe('1.0.0');
    const eve = await dav('POST', `/dav/spaces/${projectId}/`, 'eve', {
      headers: { 'tus-resumable': '1.0.0', 'upload-length': '1', 'upload-metadata': `filename ${b64('x')}` },
    });
    expect(eve.status).toBe(404);
    // A whole-file checksum in the metadata is verified when the last byte is in.
    const bad = await dav('POST', `/dav/spaces/${projectId}/`, 'ann', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '5',
        'upload-metadata': `filename ${b64('sum.bin')},checksum ${b64(`SHA1 ${sha1('other')}`)}`,
        'content-type': 'application/offset+octet-stream',
      },
      body: 'hello',
    });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect((await dav('GET', `/dav/spaces/${projectId}/sum.bin`, 'ann')).status).toBe(404);
    const traversal = await dav('POST', `/dav/spaces/${projectId}/`, 'ann', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '1',
        'upload-metadata': `filename ${b64('../x')}`,
      },
    });
    expect(traversal.status).toBe(400);
  });
});

describe('webdav: locks, uploads and shares between users (review findings)', () => {
  const lockBody = (scope: 'exclusive' | 'shared', owner = 'someone') =>
    `<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:${scope}/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>${owner}</d:owner></d:lockinfo>`;
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('keeps a lock token its creator’s, shared or not', async () => {
    await dav('PUT', `/dav/spaces/${projectId}/s.txt`, 'ann', { body: 'ann' });
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/s.txt`, 'ann', { body: lockBody('shared') });
    const token = lock.headers.get('lock-token')!;
    const put = await dav('PUT', `/dav/spaces/${projectId}/s.txt`, 'bob', {
      body: 'bob',
      headers: { if: `(${token})` },
    });
    expect(put.status).toBe(423);
    const unlock = await dav('UNLOCK', `/dav/spaces/${projectId}/s.txt`, 'bob', {
      headers: { 'lock-token': token },
    });
    expect(unlock.status).toBe(403);
    const refresh = await dav('LOCK', `/dav/spaces/${projectId}/s.txt`, 'bob', {
      headers: { if: `(${token})` },
    });
    expect(refresh.status).toBe(403);
    // Another user's shared lock is refused rather than handed out and forgotten.
    const second = await dav('LOCK', `/dav/spaces/${projectId}/s.txt`, 'bob', { body: lockBody('shared') });
    expect(second.status).toBe(423);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/s.txt`, 'ann')).text()).toBe('ann');
    // Its holder refreshes it: the lock is shown again, without a Lock-Token header (none was made).
    const refreshed = await dav('LOCK', `/dav/spaces/${projectId}/s.txt`, 'ann', {
      headers: { if: `(${token})`, timeout: 'Second-600' },
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('lock-token')).toBeNull();
    expect(await refreshed.text()).toContain(token.replace(/^<|>$/g, ''));
    // The bare token (without the Coded-URL's angle brackets), as some clients send it, is taken.
    const bare = token.replace(/^<|>$/g, '');
    expect(
      (await dav('UNLOCK', `/dav/spaces/${projectId}/s.txt`, 'ann', { headers: { 'lock-token': bare } }))
        .status,
    ).toBe(204);
  });

  it('keeps a depth-infinity lock whole, however long its owner', async () => {
    await dav('MKCOL', `/dav/spaces/${projectId}/tree`, 'ann');
    await dav('MKCOL', `/dav/spaces/${projectId}/tree/sub`, 'ann');
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/tree`, 'ann', {
      headers: { depth: 'infinity' },
      body: lockBody('exclusive', `<d:href>${'x'.repeat(400)}</d:href>`),
    });
    expect(lock.status).toBe(200);
    expect(await lock.text()).toContain('<d:depth>infinity</d:depth>');
    const below = await dav('PUT', `/dav/spaces/${projectId}/tree/sub/a.txt`, 'bob', { body: 'x' });
    expect(below.status).toBe(423);
  });

  it('moves onto a locked destination when both tokens are given', async () => {
    await dav('PUT', `/dav/spaces/${projectId}/m-src.txt`, 'ann', { body: 'src' });
    await dav('PUT', `/dav/spaces/${projectId}/m-dst.txt`, 'ann', { body: 'dst' });
    const a = (
      await dav('LOCK', `/dav/spaces/${projectId}/m-src.txt`, 'ann', { body: lockBody('exclusive') })
    ).headers.get('lock-token')!;
    const b = (
      await dav('LOCK', `/dav/spaces/${projectId}/m-dst.txt`, 'ann', { body: lockBody('exclusive') })
    ).headers.get('lock-token')!;
    const move = await dav('MOVE', `/dav/spaces/${projectId}/m-src.txt`, 'ann', {
      headers: { destination: `/dav/spaces/${projectId}/m-dst.txt`, if: `(${a}) (${b})` },
    });
    expect(move.status).toBe(204);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/m-dst.txt`, 'ann')).text()).toBe('src');
  });

  it('refuses a TUS upload to someone who may not write, without a length, or beyond the quota', async () => {
    const ann = await env.provider.as('ann');
    const ro = await ann.createSpace({ type: 'project', name: 'Read only for Eve' });
    await env.provider.updateSpace(ro.id, { quota: 1000 }); // quotas are the admin's (here: the system)
    await ann.setGrant(
      { space: ro.id, path: '' },
      {
        grantee: { type: 'user', id: 'u-eve' },
        permissions: fromLetters(ROLES.viewer),
      },
    );
    const post = (user: string, headers: Record<string, string>) =>
      dav('POST', `/dav/spaces/${ro.id}/`, user, {
        headers: { 'tus-resumable': '1.0.0', 'upload-metadata': `filename ${b64('f.bin')}`, ...headers },
      });
    const viewer = await post('eve', { 'upload-length': '10' });
    expect(viewer.status).toBe(403);
    expect(viewer.headers.get('location')).toBeNull();
    expect((await post('ann', { 'upload-defer-length': '1' })).status).toBe(400);
    for (const bad of ['-1', 'ten', '1e3']) {
      const r = await post('ann', { 'upload-length': bad });
      expect(r.status, bad).toBe(400);
      expect(await r.text()).toMatch(/Upload-Length must be a byte count/);
    }
    expect((await post('ann', { 'upload-length': '5000' })).status).toBe(507);
    expect((await post('ann', { 'upload-length': '10' })).status).toBe(201);
  });

  it('bounds chunked uploads by the personal quota whatever total is declared, and refuses hidden chunk names', async () => {
    const eveSpace = await (await env.provider.as('eve')).personalSpace();
    await env.provider.updateSpace(eveSpace.id, { quota: 1000 });
    const base = '/remote.php/dav/uploads/eve/lying';
    // A declared total the quota has no room for is refused before any chunk (507, as ownCloud
    // and Nextcloud answer what is over quota: their clients tell the user so); an undeclared one
    // is bounded as its chunks arrive.
    expect((await dav('MKCOL', base, 'eve', { headers: { 'oc-total-length': '999999999999' } })).status).toBe(
      507,
    );
    expect((await dav('MKCOL', base, 'eve')).status).toBe(201);
    expect((await dav('PUT', `${base}/0`, 'eve', { body: 'x'.repeat(2000) })).status).toBe(507);
    expect((await dav('PUT', `${base}/.total`, 'eve', { body: '99999999999' })).status).toBe(400);
    expect((await dav('PUT', `${base}/0`, 'eve', { body: 'x'.repeat(500) })).status).toBe(201);
    // All transfers together: a second one cannot stage another quota's worth.
    const other = '/remote.php/dav/uploads/eve/another';
    expect((await dav('MKCOL', other, 'eve')).status).toBe(201);
    expect((await dav('PUT', `${other}/0`, 'eve', { body: 'y'.repeat(400) })).status).toBe(201);
    expect((await dav('PUT', `${other}/400`, 'eve', { body: 'y'.repeat(200) })).status).toBe(507);
    // (a chunk sent again replaces itself: it is not counted twice)
    expect((await dav('PUT', `${other}/0`, 'eve', { body: 'y'.repeat(450) })).status).toBe(201);
    expect((await dav('DELETE', other, 'eve')).status).toBe(204);
    expect((await dav('DELETE', base, 'eve')).status).toBe(204);
    // What they held is free again; chunks being written count for each other from their first byte.
    const third = '/remote.php/dav/uploads/eve/third';
    expect((await dav('MKCOL', third, 'eve')).status).toBe(201);
    const both = await Promise.all(
      ['0', '600'].map((n) => dav('PUT', `${third}/${n}`, 'eve', { body: 'z'.repeat(600) })),
    );
    expect(both.map((r) => r.status).sort()).toEqual([201, 507]);
    expect((await dav('PUT', `${third}/600`, 'eve', { body: 'z'.repeat(300) })).status).toBe(201);
    expect((await dav('DELETE', third, 'eve')).status).toBe(204);
    // A chunk sent again while its first try stalls (the connection not yet timed out) counts once.
    const retry = '/remote.php/dav/uploads/eve/retry';
    expect((await dav('MKCOL', retry, 'eve')).status).toBe(201);
    const u = new URL(env.url);
    const stalled = net.connect(Number(u.port), u.hostname);
    stalled.on('error', () => {});
    stalled.write(
      `PUT ${retry}/0 HTTP/1.1\r\nHost: x\r\nAuthorization: ${env.basic('eve')}\r\nContent-Length: 600\r\n\r\n${'s'.repeat(500)}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect((await dav('PUT', `${retry}/0`, 'eve', { body: 'r'.repeat(600) })).status).toBe(201);
    stalled.destroy();
    expect((await dav('DELETE', retry, 'eve')).status).toBe(204);
  });

  it('bounds chunked uploads, cleans a cut-off chunk, and assembles numbered chunks in numeric order', async () => {
    const base = '/remote.php/dav/uploads/ann/bounded';
    await dav('MKCOL', base, 'ann', { headers: { 'oc-total-length': '10' } });
    const over = await dav('PUT', `${base}/0000000000000000`, 'ann', { body: 'x'.repeat(11) });
    expect(over.status).toBe(413);
    const session = await env.provider.as('ann');
    void session;
    const leftovers = (await fsp.readdir(env.root, { recursive: true })).filter((n) =>
      String(n).includes('.0000000000000000.'),
    );
    expect(leftovers).toEqual([]);
    const nc = '/remote.php/dav/uploads/ann/indexes';
    await dav('MKCOL', nc, 'ann');
    // (10 after 9, not after 1)
    for (let i = 1; i <= 10; i++)
      expect((await dav('PUT', `${nc}/${i}`, 'ann', { body: 'abcdefghij'[i - 1]! })).status).toBe(201);
    const done = await dav('MOVE', `${nc}/.file`, 'ann', {
      headers: { destination: '/remote.php/dav/files/ann/ordered.txt' },
    });
    expect(done.status).toBe(201);
    expect(await (await dav('GET', '/remote.php/dav/files/ann/ordered.txt', 'ann')).text()).toBe(
      'abcdefghij',
    );
  });

  it('answers 423 to a MOVE, chunk or DELETE of a transfer being assembled, and 404 once it is done (as rclone expects)', async () => {
    const t = '/remote.php/dav/uploads/ann/held';
    expect((await dav('MKCOL', t, 'ann')).status).toBe(201);
    expect((await dav('PUT', `${t}/0000000000000000`, 'ann', { body: 'ab' })).status).toBe(201);
    expect((await dav('PUT', `${t}/0000000000000002`, 'ann', { body: 'cd' })).status).toBe(201);
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const off = env.provider.events.before(async (c) => {
      if (c.op === 'write' && c.path === '/held.txt') {
        entered();
        await gate;
      }
    });
    try {
      const move = () =>
        dav('MOVE', `${t}/.file`, 'ann', { headers: { destination: '/remote.php/dav/files/ann/held.txt' } });
      const first = move();
      await inside;
      expect((await move()).status).toBe(423);
      expect((await dav('PUT', `${t}/0000000000000004`, 'ann', { body: 'ef' })).status).toBe(423);
      expect((await dav('DELETE', t, 'ann')).status).toBe(423);
      release();
      expect((await first).status).toBe(201);
      expect((await move()).status).toBe(404);
    } finally {
      release();
      off();
    }
    expect(await (await dav('GET', '/remote.php/dav/files/ann/held.txt', 'ann')).text()).toBe('abcd');
  });

  it('removes transfers nobody finished after a day, and what a finished one left, without their user coming back', async () => {
    const chunks = path.join(env.root, 'chunks');
    expect((await dav('MKCOL', '/remote.php/dav/uploads/ann/stale', 'ann')).status).toBe(201);
    expect((await dav('PUT', '/remote.php/dav/uploads/ann/stale/0', 'ann', { body: 'old' })).status).toBe(
      201,
    );
    expect((await dav('MKCOL', '/remote.php/dav/uploads/ann/fresh', 'ann')).status).toBe(201);
    const dirOf = async (name: string) => {
      for (const u of await fsp.readdir(chunks))
        if ((await fsp.readdir(path.join(chunks, u))).includes(name)) return path.join(chunks, u);
      throw new Error(`no ${name}`);
    };
    const annDir = await dirOf('stale');
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    await fsp.utimes(path.join(annDir, 'stale'), twoDaysAgo, twoDaysAgo);
    // (the folder a finished transfer is renamed to, as a process killed before removing it leaves it)
    await fsp.mkdir(path.join(annDir, '.gone-done-1'));
    await fsp.writeFile(path.join(annDir, '.gone-done-1', '0'), 'chunk');
    // biome-ignore lint/suspicious/noExplicitAny: the hourly sweep, run now
    await (env.server.webdav as any).sweepUploads();
    const left = await fsp.readdir(annDir);
    expect(left).toContain('fresh');
    expect(left).not.toContain('stale');
    expect(left.filter((n) => n.startsWith('.'))).toEqual([]);
    expect((await dav('PROPFIND', '/remote.php/dav/uploads/ann/stale', 'ann')).status).toBe(404);
    expect((await dav('DELETE', '/remote.php/dav/uploads/ann/fresh', 'ann')).status).toBe(204);
  });

  it('refuses to assemble chunks whose names tell of one missing or overlapping, without a declared total too', async () => {
    const assemble = async (transfer: string, chunks: [string, string][]) => {
      const t = `/remote.php/dav/uploads/ann/${transfer}`;
      expect((await dav('MKCOL', t, 'ann')).status).toBe(201);
      for (const [name, body] of chunks)
        expect((await dav('PUT', `${t}/${name}`, 'ann', { body })).status).toBe(201);
      const r = await dav('MOVE', `${t}/.file`, 'ann', {
        headers: { destination: `/remote.php/dav/files/ann/${transfer}.txt` },
      });
      return { status: r.status, text: await r.text() };
    };
    // Nextcloud's indexes with one missing; ownCloud's offsets with a gap and with an overlap;
    // rclone's ranges with a chunk shorter than its name says.
    const bad: [string, [string, string][]][] = [
      [
        'idx-gap',
        [
          ['00001', 'aa'],
          ['00002', 'bb'],
          ['00004', 'dd'],
        ],
      ],
      [
        'off-gap',
        [
          ['0000000000000000', 'aaa'],
          ['0000000000000005', 'fff'],
        ],
      ],
      [
        'off-overlap',
        [
          ['0000000000000000', 'aaa'],
          ['0000000000000002', 'ccc'],
        ],
      ],
      [
        'range-short',
        [
          ['000000000000000-000000000000002', 'aaa'],
          ['000000000000003-000000000000005', 'dd'],
        ],
      ],
    ];
    for (const [transfer, chunks] of bad) {
      const r = await assemble(transfer, chunks);
      expect(r.status, transfer).toBe(400);
      expect(r.text).toMatch(/missing|overlaps|does not follow/);
      expect((await dav('GET', `/remote.php/dav/files/ann/${transfer}.txt`, 'ann')).status).toBe(404);
    }
    // Whole ones of each kind.
    const good: [string, [string, string][], string][] = [
      [
        'off-whole',
        [
          ['0000000000000000', 'aaa'],
          ['0000000000000003', 'bb'],
        ],
        'aaabb',
      ],
      [
        'range-whole',
        [
          ['000000000000000-000000000000002', 'aaa'],
          ['000000000000003-000000000000004', 'bb'],
        ],
        'aaabb',
      ],
      [
        'idx-zero',
        [
          ['0', 'x'],
          ['1', 'y'],
        ],
        'xy',
      ],
    ];
    for (const [transfer, chunks, content] of good) {
      expect((await assemble(transfer, chunks)).status, transfer).toBe(201);
      expect(await (await dav('GET', `/remote.php/dav/files/ann/${transfer}.txt`, 'ann')).text()).toBe(
        content,
      );
    }
  });

  it('lets the holder of a folder share reach it by node id, and nothing else', async () => {
    const ann = await env.provider.as('ann');
    const sp = await ann.createSpace({ type: 'project', name: 'Folder share' });
    const shared = await ann.mkdir({ space: sp.id, path: 'shared' });
    await ann.write({ space: sp.id, path: 'shared/in.txt' }, 'inside');
    await ann.write({ space: sp.id, path: 'private.txt' }, 'private');
    await ann.setGrant(
      { space: sp.id, path: 'shared' },
      {
        grantee: { type: 'user', id: 'u-bob' },
        permissions: fromLetters(ROLES.viewer),
      },
    );
    const node = `${shared.id.storageId}$${sp.id}!${shared.id.opaqueId}`;
    const r = await dav('PROPFIND', `/dav/spaces/${encodeURIComponent(node)}/`, 'bob', {
      headers: { depth: '1' },
    });
    expect(r.status).toBe(207);
    expect(await r.text()).toContain('in.txt');
    expect(await (await dav('GET', `/dav/spaces/${encodeURIComponent(node)}/in.txt`, 'bob')).text()).toBe(
      'inside',
    );
    expect((await dav('GET', `/dav/spaces/${sp.id}/private.txt`, 'bob')).status).toBe(404);
    expect((await dav('GET', `/dav/spaces/${encodeURIComponent(node)}/in.txt`, 'eve')).status).toBe(404);
  });

  it('sends a dead property that is not its own element as text, never as markup', async () => {
    await dav('PUT', '/remote.php/webdav/dead.txt', 'ann', { body: 'x' });
    const ann = await env.provider.as('ann');
    const space = await ann.personalSpace();
    await ann.setMetadata(
      { space: space.id, path: 'dead.txt' },
      { '{urn:x}evil': '</d:prop><d:href>/pwn</d:href>' },
    );
    const xml = await (
      await dav('PROPFIND', '/remote.php/webdav/dead.txt', 'ann', { headers: { depth: '0' } })
    ).text();
    expect(xml).toContain('&lt;/d:prop&gt;');
    expect(xml).not.toContain('<d:href>/pwn');
  });

  it('sends a lock owner set through another door as text unless it is well-formed content (no forged responses)', async () => {
    expect((await dav('PUT', `/dav/spaces/${projectId}/owned.txt`, 'bob', { body: 'o' })).status).toBe(201);
    const bob = await env.provider.as('bob');
    // The appName WebDAV keeps its lock facts in, as the CS3 door's SetLock can write it.
    const forged =
      '</d:owner></d:activelock></d:lockdiscovery></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/FORGED</d:href><d:propstat><d:prop><d:lockdiscovery><d:activelock><d:owner>';
    await bob.setLock(
      { space: projectId, path: 'owned.txt' },
      {
        lockId: 'opaquelocktoken:forged-owner',
        type: 'exclusive',
        expires: Date.now() + 60_000,
        appName: `webdav 0 ${JSON.stringify({ o: forged })}`,
      },
    );
    const lockdiscovery = '<d:propfind xmlns:d="DAV:"><d:prop><d:lockdiscovery/></d:prop></d:propfind>';
    for (const body of [lockdiscovery, undefined]) {
      const r = await dav('PROPFIND', `/dav/spaces/${projectId}/`, 'ann', { headers: { depth: '1' }, body });
      const xml = await r.text();
      wellFormed(xml);
      expect(xml).not.toContain('<d:href>/FORGED');
      expect(xml).toContain('&lt;d:href&gt;/FORGED');
    }
    await bob.unlock({ space: projectId, path: 'owned.txt' }, 'opaquelocktoken:forged-owner');
    // An owner given to LOCK comes back as the markup it was.
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/owned.txt`, 'bob', {
      headers: { timeout: 'Second-60' },
      body: '<d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>Bob, <d:href>mailto:bob@example.org</d:href></d:owner></d:lockinfo>',
    });
    expect(lock.status).toBe(200);
    expect(await lock.text()).toMatch(
      /<d:owner>Bob, <x0:href xmlns:x0="DAV:">mailto:bob@example.org<\/x0:href><\/d:owner>/,
    );
    await bob.unlock({ space: projectId, path: 'owned.txt' }, lock.headers.get('lock-token')!.slice(1, -1));
  });
});

describe('webdav: locks above a node, hidden members, drop boxes and events (review findings)', () => {
  const exclusive =
    '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';
  /** A project of Ann's where Bob edits `rw`, and may not see `rw/hidden`. */
  async function lab(name: string) {
    const ann = await env.provider.as('ann');
    const sp = await ann.createSpace({ type: 'project', name });
    const rw = await ann.mkdir({ space: sp.id, path: 'rw' });
    const sub = await ann.mkdir({ space: sp.id, path: 'rw/sub' });
    const doc = await ann.write({ space: sp.id, path: 'rw/sub/doc.txt' }, 'version one');
    await ann.write({ space: sp.id, path: 'rw/sub/doc.txt' }, 'version two');
    await ann.mkdir({ space: sp.id, path: 'rw/hidden' });
    const secret = await ann.write({ space: sp.id, path: 'rw/hidden/secret.txt' }, 'secret');
    await ann.setGrant(
      { space: sp.id, path: 'rw' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.editor) },
    );
    await ann.setGrant(
      { space: sp.id, path: 'rw/hidden' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(''), deny: true },
    );
    const byId = (id: { storageId: string; opaqueId: string }) =>
      `/dav/spaces/${encodeURIComponent(`${id.storageId}$${sp.id}!${id.opaqueId}`)}`;
    return { ann, sp, rw, sub, doc, secret, byId };
  }

  it('guards what a depth-infinity lock covers also when it is reached by node id or restored from a version', async () => {
    const { ann, sp, rw, sub, doc, byId } = await lab('Locked by id');
    const [version] = await ann.listVersions({ resourceId: doc.id });
    const lock = await dav('LOCK', `/dav/spaces/${sp.id}/rw`, 'ann', {
      headers: { depth: 'infinity' },
      body: exclusive,
    });
    expect(lock.status).toBe(200);
    const token = lock.headers.get('lock-token')!;
    // Below the share's own node it was always refused; by the node id of what is inside it too now.
    expect((await dav('PUT', `${byId(rw.id)}/sub/new.txt`, 'bob', { body: 'x' })).status).toBe(423);
    expect((await dav('PUT', `${byId(sub.id)}/new.txt`, 'bob', { body: 'x' })).status).toBe(423);
    expect((await dav('PUT', byId(doc.id), 'bob', { body: 'x' })).status).toBe(423);
    expect((await dav('DELETE', byId(doc.id), 'bob')).status).toBe(423);
    expect((await dav('MKCOL', `${byId(sub.id)}/made`, 'bob')).status).toBe(423);
    expect(
      (
        await dav('PROPPATCH', byId(doc.id), 'bob', {
          body: '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:a>1</x:a></d:prop></d:set></d:propertyupdate>',
        })
      ).status,
    ).toBe(423);
    expect(
      (
        await dav('MOVE', byId(doc.id), 'bob', {
          headers: { destination: `${byId(rw.id)}/moved.txt` },
        })
      ).status,
    ).toBe(423);
    await dav('PUT', '/remote.php/webdav/mine.txt', 'bob', { body: 'mine' });
    expect(
      (
        await dav('COPY', '/remote.php/webdav/mine.txt', 'bob', {
          headers: { destination: `${byId(sub.id)}/copied.txt` },
        })
      ).status,
    ).toBe(423);
    const tus = await dav('POST', byId(sub.id), 'bob', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '1',
        'upload-metadata': `filename ${Buffer.from('tus.txt').toString('base64')}`,
      },
    });
    expect(tus.status).toBe(423);
    const meta = `/remote.php/dav/meta/${encodeURIComponent(`${doc.id.storageId}$${sp.id}!${doc.id.opaqueId}`)}`;
    expect((await dav('COPY', `${meta}/v/${encodeURIComponent(version!.key)}`, 'bob')).status).toBe(423);
    expect(await (await dav('GET', byId(doc.id), 'ann')).text()).toBe('version two');
    expect((await dav('PROPFIND', `${byId(sub.id)}/`, 'ann', { headers: { depth: '1' } })).status).toBe(207);
    const names = [];
    for await (const c of ann.list({ resourceId: sub.id })) names.push(c.name);
    expect(names).toEqual(['doc.txt']);
    // The holder writes by id with the token.
    const mine = await dav('PUT', `${byId(sub.id)}/new.txt`, 'ann', {
      body: 'x',
      headers: { if: `(${token})` },
    });
    expect(mine.status).toBe(201);
  });

  it('refuses a depth-infinity lock over a member locked by someone else, hidden or not', async () => {
    const { ann, rw, secret, byId } = await lab('Hidden lock');
    await ann.setLock({ resourceId: secret.id }, { type: 'exclusive', lockId: 'ann-secret' });
    const r = await dav('LOCK', `${byId(rw.id)}/`, 'bob', {
      headers: { depth: 'infinity' },
      body: exclusive,
    });
    expect(r.status).toBe(423);
    const body = await r.text();
    expect(body).toContain('no-conflicting-lock');
    expect(body).not.toContain('hidden'); // (the folder is named, not the member Bob cannot see)
    expect((await ann.stat({ resourceId: secret.id }, { fields: ['lock'] })).lock?.lockId).toBe('ann-secret');
  });

  it('answers a PROPFIND of a folder the user may see but not list with the folder alone', async () => {
    const { ann, sp } = await lab('Drop box');
    await ann.mkdir({ space: sp.id, path: 'drop' });
    await ann.write({ space: sp.id, path: 'drop/someone-else.txt' }, 'theirs');
    await ann.setGrant(
      { space: sp.id, path: 'drop' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters(ROLES.uploader) },
    );
    const drop = await ann.stat({ space: sp.id, path: 'drop' });
    const url = `/dav/spaces/${encodeURIComponent(`${drop.id.storageId}$${sp.id}!${drop.id.opaqueId}`)}/`;
    const r = await dav('PROPFIND', url, 'eve', { headers: { depth: '1' } });
    expect(r.status).toBe(207);
    const xml = await r.text();
    wellFormed(xml);
    expect(xml).toContain('</d:multistatus>');
    expect(xml).not.toContain('someone-else');
    expect(xml.match(/<d:response>/g)).toHaveLength(1);
    expect((await dav('PUT', `${url}eve.txt`, 'eve', { body: 'dropped' })).status).toBe(201);
  });

  it('tells a user of changes only as far as the user may see: paths, where a move came from, a drop box', async () => {
    const { ann, sp } = await lab('Events seen');
    await ann.mkdir({ space: sp.id, path: 'ro' });
    await ann.setGrant(
      { space: sp.id, path: 'ro' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters(ROLES.viewer) },
    );
    await ann.mkdir({ space: sp.id, path: 'drop' });
    await ann.setGrant(
      { space: sp.id, path: 'drop' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.uploader) },
    );
    const listen = (user: string) => listenEvents(env, user);
    const eve = listen('eve');
    const bob = listen('bob');
    await new Promise((r) => setTimeout(r, 150)); // subscribed
    await ann.write({ space: sp.id, path: 'rw/hidden/plan.txt' }, 'plan');
    await ann.move({ space: sp.id, path: 'rw/hidden/plan.txt' }, { space: sp.id, path: 'ro/plan.txt' });
    await ann.write({ space: sp.id, path: 'drop/anns-report.txt' }, 'report');
    await ann.write({ space: sp.id, path: 'ro/last.txt' }, 'last');
    await eve.until('/ro/last.txt');
    await eve.stop();
    await bob.stop();
    // Eve sees the file arrive in the folder shared with her, not where it came from.
    expect(eve.got.map((e) => `${e.type} ${e.path}`)).toEqual(['moved /ro/plan.txt', 'created /ro/last.txt']);
    expect(eve.got[0]!.from).toBeUndefined();
    // Bob may drop files into `drop`, not list it: others' files there are not his to learn of.
    expect(JSON.stringify(bob.got)).not.toContain('anns-report');
    // He may see `rw` but not `rw/hidden`: the move out of it is not his to learn of either.
    expect(JSON.stringify(bob.got)).not.toContain('plan');
  });

  it('does not let a collaborator remove the shared folder itself, or a folder holding what is hidden from them', async () => {
    const { ann, sp, rw, byId } = await lab('Removals');
    await ann.mkdir({ space: sp.id, path: 'rw/box' });
    await ann.write({ space: sp.id, path: 'rw/box/seen.txt' }, 'seen');
    await ann.write({ space: sp.id, path: 'rw/box/inner.txt' }, 'inner');
    await ann.setGrant(
      { space: sp.id, path: 'rw/box/inner.txt' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(''), deny: true },
    );
    await ann.write({ space: sp.id, path: 'rw/other.txt' }, 'other');
    const root = byId(rw.id);
    // The folder the share starts at: its owner's (and the others') to remove, not Bob's.
    const del = await dav('DELETE', `${root}/`, 'bob');
    expect(del.status).toBe(403);
    expect(await del.text()).toContain('shared folder');
    expect((await dav('MOVE', `${root}/`, 'bob', { headers: { destination: `${root}/x/` } })).status).toBe(
      403,
    );
    // A folder with something denied to him in it: not deleted, moved or replaced.
    const inBox = await dav('DELETE', `${root}/box/`, 'bob');
    expect(inBox.status).toBe(403);
    expect(await inBox.text()).toContain('hidden from you');
    expect(
      (await dav('MOVE', `${root}/box/`, 'bob', { headers: { destination: `${root}/box2/` } })).status,
    ).toBe(403);
    for (const method of ['COPY', 'MOVE'])
      expect(
        (
          await dav(method, `${root}/other.txt`, 'bob', {
            headers: { destination: `${root}/box`, overwrite: 'T' },
          })
        ).status,
        method,
      ).toBe(403);
    expect(await (await dav('GET', `/dav/spaces/${sp.id}/rw/box/inner.txt`, 'ann')).text()).toBe('inner');
    expect((await ann.stat({ space: sp.id, path: 'rw' })).type).toBe('folder');
    // What he may see all of stays his to remove; the owner may remove anything.
    expect((await dav('DELETE', `${root}/sub/`, 'bob')).status).toBe(204);
    expect((await dav('DELETE', `/dav/spaces/${sp.id}/rw/box/`, 'ann')).status).toBe(204);
  });

  it('shows no change to a file denied to the user in a folder they may list', async () => {
    const { ann, sp } = await lab('Events denied');
    await ann.write({ space: sp.id, path: 'rw/denied.txt' }, 'one');
    await ann.setGrant(
      { space: sp.id, path: 'rw/denied.txt' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(''), deny: true },
    );
    const bob = listenEvents(env, 'bob');
    await new Promise((r) => setTimeout(r, 150)); // subscribed
    const ref = { space: sp.id, path: 'rw/denied.txt' };
    await ann.write(ref, 'two');
    await ann.setMetadata(ref, { 'x-note': 'n' });
    await ann.setLock(ref, { lockId: 'l-denied', type: 'exclusive', expires: Date.now() + 60_000 });
    await ann.write({ space: sp.id, path: 'rw/seen.txt' }, 'seen');
    await bob.until('/rw/seen.txt');
    await bob.stop();
    expect(bob.got.map((e) => `${e.type} ${e.path}`)).toEqual(['created /rw/seen.txt']);
    expect(JSON.stringify(bob.got)).not.toContain('denied');
  });

  it('judges an event where it happened, not where its resource went since (a stream that fell behind)', async () => {
    const { ann, sp } = await lab('Events late');
    await ann.mkdir({ space: sp.id, path: 'ro' });
    await ann.setGrant(
      { space: sp.id, path: 'ro' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters(ROLES.viewer) },
    );
    const made = await ann.write({ space: sp.id, path: 'rw/hidden/late.txt' }, 'late');
    await ann.move({ space: sp.id, path: 'rw/hidden/late.txt' }, { space: sp.id, path: 'ro/late.txt' });
    // The creation's event, as Eve's stream meets it only now: the file is in `ro`, which she
    // may see, but it was made in `rw/hidden`, which she may not.
    const created: StorageEvent = {
      id: 'late-1',
      type: 'created',
      at: Date.now(),
      origin: 'api',
      user: 'u-ann',
      spaceId: sp.id,
      resourceId: made.id,
      parentId: made.parentId!,
      path: '/rw/hidden/late.txt',
    } as StorageEvent;
    const user = await env.provider.identity!.getUser('u-eve');
    const who = { user, session: await env.provider.as('u-eve', { origin: 'webdav' }) };
    // biome-ignore lint/suspicious/noExplicitAny: the filter the event stream applies, called at a chosen moment
    const seen = await (env.server.webdav as any).asSeenBy(who, created);
    expect(seen).toBeUndefined();
    // Where it is now, the same file's change is hers to see
    const here = await ann.stat({ space: sp.id, path: 'ro/late.txt' });
    const now = { ...created, parentId: here.parentId!, path: '/ro/late.txt' };
    // biome-ignore lint/suspicious/noExplicitAny: as above
    expect(await (env.server.webdav as any).asSeenBy(who, now)).toMatchObject({ path: '/ro/late.txt' });
  });
});

describe('webdav: dead properties as sent', () => {
  const propfindOf = async (url: string, prop: string) => {
    const r = await dav('PROPFIND', url, 'ann', {
      headers: { depth: '0' },
      body: `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop>${prop}</d:prop></d:propfind>`,
    });
    expect(r.status).toBe(207);
    const xml = await r.text();
    wellFormed(xml);
    return xml;
  };
  const proppatch = (url: string, body: Buffer | string, contentType = 'application/xml') =>
    dav('PROPPATCH', url, 'ann', { body, headers: { 'content-type': contentType } });

  it('keeps a property as Reva does (`<namespace>/<name>`, its text), so every door reads the same value', async () => {
    const url = '/remote.php/webdav/reva-keys.txt';
    await dav('PUT', url, 'ann', { body: 'x' });
    const ann = await env.provider.as('ann');
    const ref = { space: (await ann.personalSpace()).id, path: 'reva-keys.txt' };
    const r = await proppatch(
      url,
      `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop>
<z:colour>blue &amp; &lt;green&gt;</z:colour><z:empty/><z:rich>a <z:b>bold</z:b> move</z:rich><oc:tags>lab,raw</oc:tags>
<z:looks>&lt;z:looks xmlns:z="urn:z"&gt;hi&lt;/z:looks&gt;</z:looks></d:prop></d:set></d:propertyupdate>`,
    );
    expect(r.status).toBe(207);
    expect(await r.text()).not.toMatch(/HTTP\/1.1 (?!200)/);
    // What another door sees: text as text, under Reva's keys; markup kept as the element.
    const md = (await ann.stat(ref, { metadataKeys: '*' })).metadata!;
    expect(md['urn:z/colour']).toBe('blue & <green>');
    expect(md['urn:z/empty']).toBe('');
    expect(md.tags).toBe('lab,raw');
    expect(md['urn:z/rich']).toBe('<x0:rich xmlns:x0="urn:z">a <x0:b>bold</x0:b> move</x0:rich>');
    expect(md['urn:z/looks']).toMatch(/^<x0:looks xmlns:x0="urn:z">&lt;z:looks/);
    expect(Object.keys(md).some((k) => k.startsWith('{'))).toBe(false);
    const props = '<z:colour/><z:empty/><z:rich/><z:looks/><oc:tags/>';
    const xml = await propfindOf(
      url,
      props.replaceAll('/>', ' xmlns:z="urn:z" xmlns:oc="http://owncloud.org/ns"/>'),
    );
    expect(xml).toContain('<x:colour xmlns:x="urn:z">blue &amp; &lt;green&gt;</x:colour>');
    expect(xml).toMatch(/<x:empty xmlns:x="urn:z"(\/>|><\/x:empty>)/);
    expect(xml).toContain('<x0:rich xmlns:x0="urn:z">a <x0:b>bold</x0:b> move</x0:rich>');
    expect(xml).toContain('>&lt;z:looks xmlns:z=&quot;urn:z&quot;&gt;hi&lt;/z:looks&gt;</x0:looks>');
    expect(xml).toContain('<oc:tags>lab,raw</oc:tags>');
    // Set through another door, as Reva's ocdav would: seen here, escaped.
    await ann.setMetadata(ref, {
      'urn:z/colour': 'red <&>',
      tags: 'one',
      'no-slash': 'hidden',
      'urn:z/bad name': 'x',
    });
    const all = await dav('PROPFIND', url, 'ann', { headers: { depth: '0' } });
    const allXml = await all.text();
    wellFormed(allXml);
    expect(allXml).toContain('<x:colour xmlns:x="urn:z">red &lt;&amp;&gt;</x:colour>');
    expect(allXml).toContain('<oc:tags>one</oc:tags>');
    expect(allXml).not.toContain('hidden');
    expect(allXml).not.toContain('bad name');
    // Removed: gone for every door.
    const rm = await proppatch(
      url,
      '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z" xmlns:oc="http://owncloud.org/ns"><d:remove><d:prop><z:colour/><oc:tags/></d:prop></d:remove></d:propertyupdate>',
    );
    expect(rm.status).toBe(207);
    const after = (await ann.stat(ref, { metadataKeys: '*' })).metadata!;
    expect(after['urn:z/colour']).toBeUndefined();
    expect(after.tags).toBeUndefined();
  });

  it('still reads properties an older Stowage kept under `{ns}name`, and replaces them when they are set', async () => {
    const url = '/remote.php/webdav/old-keys.txt';
    await dav('PUT', url, 'ann', { body: 'x' });
    const ann = await env.provider.as('ann');
    const ref = { space: (await ann.personalSpace()).id, path: 'old-keys.txt' };
    await ann.setMetadata(ref, {
      '{urn:z}old': '<x0:old xmlns:x0="urn:z">kept <x0:i>then</x0:i></x0:old>',
      '{urn:z}both': '<x0:both xmlns:x0="urn:z">stale</x0:both>',
      'urn:z/both': 'current',
      '{urn:z}gone': '<x0:gone xmlns:x0="urn:z">bye</x0:gone>',
    });
    const xml = await propfindOf(url, '<z:old xmlns:z="urn:z"/><z:both xmlns:z="urn:z"/>');
    expect(xml).toContain('<x0:old xmlns:x0="urn:z">kept <x0:i>then</x0:i></x0:old>');
    expect(xml).toContain('>current</x:both>');
    expect(xml).not.toContain('stale');
    const all = await (await dav('PROPFIND', url, 'ann', { headers: { depth: '0' } })).text();
    expect(all.match(/:both /g)).toHaveLength(1);
    expect(all).not.toContain('stale');
    const names = await (
      await dav('PROPFIND', url, 'ann', {
        headers: { depth: '0' },
        body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
      })
    ).text();
    expect(names.match(/:both /g)).toHaveLength(1);
    expect(names).toMatch(/:old xmlns/);
    const r = await proppatch(
      url,
      '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z"><d:set><d:prop><z:old>new</z:old></d:prop></d:set><d:remove><d:prop><z:gone/></d:prop></d:remove></d:propertyupdate>',
    );
    expect(r.status).toBe(207);
    const md = (await ann.stat(ref, { metadataKeys: '*' })).metadata!;
    expect(md['urn:z/old']).toBe('new');
    expect(md['{urn:z}old']).toBeUndefined();
    expect(md['{urn:z}gone']).toBeUndefined();
    expect(await propfindOf(url, '<z:old xmlns:z="urn:z"/><z:gone xmlns:z="urn:z"/>')).toMatch(
      /<x:old xmlns:x="urn:z">new<\/x:old>[\s\S]*404/,
    );
  });

  it('keeps mixed content in order and the xml:lang in scope, declared on the property or above it', async () => {
    const url = '/remote.php/webdav/mixed.txt';
    await dav('PUT', url, 'ann', { body: 'x' });
    const r = await proppatch(
      url,
      `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z"><d:set><d:prop xml:lang="de">
<z:note>Hallo <z:b>Welt</z:b>, wie <![CDATA[<geht>]]> es?</z:note><z:title xml:lang="en-GB">Colour</z:title>
</d:prop></d:set></d:propertyupdate>`,
    );
    expect(r.status).toBe(207);
    expect(await r.text()).toContain('200 OK');
    const xml = await propfindOf(url, '<z:note xmlns:z="urn:z"/><z:title xmlns:z="urn:z"/>');
    expect(xml).toMatch(
      /<x0:note xmlns:x0="urn:z" xml:lang="de">Hallo <x0:b>Welt<\/x0:b>, wie &lt;geht&gt; es\?<\/x0:note>/,
    );
    expect(xml).toMatch(/<x0:title xmlns:x0="urn:z" xml:lang="en-GB">Colour<\/x0:title>/);
    // A lock owner keeps its text and markup too.
    const lock = await dav('LOCK', url, 'ann', {
      body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>Ann, <d:href>mailto:ann@example.org</d:href></d:owner></d:lockinfo>',
    });
    expect(lock.status).toBe(200);
    expect(await lock.text()).toMatch(
      /<d:owner>Ann, <x0:href xmlns:x0="DAV:">mailto:ann@example.org<\/x0:href><\/d:owner>/,
    );
    await dav('UNLOCK', url, 'ann', { headers: { 'lock-token': lock.headers.get('lock-token')! } });
  });

  it('reads a body in the encoding it declares (BOM, charset, XML declaration), and refuses bytes that are not', async () => {
    const url = '/remote.php/webdav/encodings.txt';
    await dav('PUT', url, 'ann', { body: 'x' });
    const doc = (value: string, decl = '<?xml version="1.0"?>') =>
      `${decl}<d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z"><d:set><d:prop><z:v>${value}</z:v></d:prop></d:set></d:propertyupdate>`;
    const cases: [Buffer, string | undefined, string][] = [
      [
        Buffer.from(doc('Müller latin1', '<?xml version="1.0" encoding="ISO-8859-1"?>'), 'latin1'),
        undefined,
        'Müller latin1',
      ],
      [Buffer.from(doc('Müller charset'), 'latin1'), 'application/xml; charset=iso-8859-1', 'Müller charset'],
      [
        Buffer.concat([
          Buffer.from([0xff, 0xfe]),
          Buffer.from(doc('Grüße utf16', '<?xml version="1.0" encoding="UTF-16"?>'), 'utf16le'),
        ]),
        undefined,
        'Grüße utf16',
      ],
      [
        Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(doc('Grüße bom'))]),
        undefined,
        'Grüße bom',
      ],
    ];
    for (const [body, type, want] of cases) {
      const r = await proppatch(url, body, type);
      expect(r.status, want).toBe(207);
      expect(await propfindOf(url, '<z:v xmlns:z="urn:z"/>')).toContain(`>${want}</x:v>`);
    }
    // Not UTF-8 though nothing says otherwise, or an encoding not known: refused, nothing changes.
    for (const [body, type] of [
      [Buffer.from(doc('Müller bad'), 'latin1'), undefined],
      [Buffer.from(doc('x', '<?xml version="1.0" encoding="x-no-such"?>')), undefined],
    ] as const) {
      const r = await proppatch(url, body, type);
      expect(r.status).toBe(400);
      expect(await r.text()).toMatch(/not valid utf-8|in x-no-such, an encoding this server does not read/);
    }
    expect(await propfindOf(url, '<z:v xmlns:z="urn:z"/>')).toContain('>Grüße bom</x:v>');
  });
});

describe('live updates: GET /events', () => {
  it('streams the changes a user may see, as Server-Sent Events, and no others', async () => {
    const bob = listenEvents(env, 'bob');
    const res = await bob.response;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const got = bob.got;
    await new Promise((r) => setTimeout(r, 100)); // subscribed
    // Bob (an editor) sees what Ann does in the shared space; not what Eve does in her own.
    await dav('PUT', `/dav/spaces/${projectId}/live.txt`, 'ann', { body: 'live' });
    await dav('PUT', '/remote.php/webdav/private.txt', 'eve', { body: 'secret' });
    await dav('DELETE', `/dav/spaces/${projectId}/live.txt`, 'ann');
    for (let i = 0; i < 50 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    await bob.stop();
    expect(got.map((e) => `${e.type} ${e.path}`)).toEqual(['created /live.txt', 'trashed /live.txt']);
    expect(got[0]).toMatchObject({ origin: 'webdav', user: 'u-ann' });
    expect((await fetch(`${env.url}/events`)).status).toBe(401);
  });
});
