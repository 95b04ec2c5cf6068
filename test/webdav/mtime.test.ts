/**
 * Setting a file's modification time over WebDAV, with the requests the clients that do it send:
 * rclone's owncloud, nextcloud and infinitescale vendors (since v1.63 a PROPPATCH of
 * `DAV:lastmodified` in Unix seconds; since v1.67 with the file's `oc:checksums` alongside, so a
 * server that recomputes nothing keeps them) and Windows' WebClient (`Win32LastModifiedTime`, an
 * HTTP date, after every upload). Before, both were kept as dead properties: the PROPPATCH said 200
 * and the file kept its time, so rclone set it again on every sync.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromLetters, ROLES } from '../../src/index.js';
import { type DavEnv, type DavInit, davFetch, sharedProject, startDav } from './server.js';

let env: DavEnv;
let space: string;
let base: string;

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
    { id: 'u-cat', username: 'cat' },
  ]);
  space = await sharedProject(env, 'ann', 'Times', 'u-bob', 'editor');
  await (await env.provider.as('ann')).setGrant(
    { space, path: '' },
    { grantee: { type: 'user', id: 'u-cat' }, permissions: fromLetters(ROLES.viewer) },
  );
  base = `/dav/spaces/${space}`;
});
afterAll(() => env?.close());

const dav = (method: string, p: string, user: string | null, init?: DavInit) =>
  davFetch(env, method, `${base}/${p}`, user, init);

/** rclone's PROPPATCH (backend/webdav: owncloudPropset and owncloudPropsetWithChecksum). */
const rclonePropset = (seconds: number, checksum?: string) =>
  checksum === undefined
    ? `<?xml version="1.0" encoding="utf-8" ?>
<D:propertyupdate xmlns:D="DAV:">
 <D:set>
  <D:prop>
   <lastmodified xmlns="DAV:">${seconds}</lastmodified>
  </D:prop>
 </D:set>
</D:propertyupdate>
`
    : `<?xml version="1.0" encoding="utf-8" ?>
<D:propertyupdate xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns">
 <D:set>
  <D:prop>
   <lastmodified xmlns="DAV:">${seconds}</lastmodified>
   <oc:checksums>
	<oc:checksum>${checksum}</oc:checksum>
   </oc:checksums>
  </D:prop>
 </D:set>
</D:propertyupdate>
`;

/** What Windows' WebClient sends after a PUT (its four Win32 properties). */
const windowsPropset = (date: string) => `<?xml version="1.0" encoding="utf-8" ?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>
<Z:Win32CreationTime>${date}</Z:Win32CreationTime>
<Z:Win32LastAccessTime>${date}</Z:Win32LastAccessTime>
<Z:Win32LastModifiedTime>${date}</Z:Win32LastModifiedTime>
<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>
</D:prop></D:set></D:propertyupdate>`;

const PROPS = `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:st="urn:stowage" xmlns:Z="urn:schemas-microsoft-com:"><d:prop>
<d:getlastmodified/><d:getetag/><oc:checksums/><st:mtime/><d:lastmodified/><Z:Win32LastModifiedTime/></d:prop></d:propfind>`;

interface Shown {
  getlastmodified?: string;
  etag?: string;
  checksums?: string;
  mtime?: number;
  /** Dead properties, when kept. */
  lastmodified?: string;
  win32?: string;
}

/** The properties of each href a PROPFIND shows (200 propstats only). */
async function shown(p: string, depth: '0' | '1' = '0', user = 'ann'): Promise<Map<string, Shown>> {
  const r = await dav('PROPFIND', p, user, { body: PROPS, headers: { depth } });
  expect(r.status).toBe(207);
  const out = new Map<string, Shown>();
  for (const m of (await r.text()).matchAll(/<d:response><d:href>([^<]*)<\/d:href>(.*?)<\/d:response>/gs)) {
    const ok = [...m[2]!.matchAll(/<d:propstat><d:prop>(.*?)<\/d:prop><d:status>HTTP\/1\.1 200 OK/gs)]
      .map((x) => x[1]!)
      .join('');
    const v = (re: RegExp) => re.exec(ok)?.[1];
    const mtime = v(/<st:mtime>([^<]*)</);
    out.set(m[1]!, {
      getlastmodified: v(/<d:getlastmodified>([^<]*)</),
      etag: v(/<d:getetag>([^<]*)</),
      checksums: v(/<oc:checksum>([^<]*)</),
      ...(mtime !== undefined && { mtime: Number(mtime) }),
      lastmodified: v(/<d:lastmodified[^>]*>([^<]*)</) ?? v(/<lastmodified[^>]*>([^<]*)</),
      win32: v(/Win32LastModifiedTime[^>]*>([^<]*)</),
    });
  }
  return out;
}

const one = async (p: string, user = 'ann') => [...(await shown(p, '0', user)).values()][0]!;

/** Each property's status in a PROPPATCH answer, by local name. */
function statuses(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of body.matchAll(/<d:propstat><d:prop>(.*?)<\/d:prop><d:status>HTTP\/1\.1 (\d{3})/gs)) {
    for (const n of m[1]!.matchAll(/<(?:[\w-]+:)?([\w-]+)[\s/>]/g)) out[n[1]!] = m[2]!;
  }
  return out;
}

async function put(p: string, body: string) {
  const r = await dav('PUT', p, 'ann', { body });
  expect(r.status).toBeLessThan(300);
}

describe('webdav: setting a file’s modification time', () => {
  it('takes rclone’s PROPPATCH of DAV:lastmodified as the file’s mtime, in place', async () => {
    await dav('MKCOL', 'r', 'ann');
    await put('r/a.txt', 'hello');
    // An older Stowage kept the property as a dead one: applied now, that copy goes.
    await (await env.provider.as('ann')).setMetadata(
      { space, path: 'r/a.txt' },
      { '{DAV:}lastmodified': '<d:lastmodified xmlns:d="DAV:">1</d:lastmodified>' },
    );
    const before = await one('r/a.txt');
    expect(before.lastmodified).toBe('1');
    const folder = await one('r/');
    await shown('r/', '1'); // the folder's listing is kept from here
    const r = await dav('PROPPATCH', 'r/a.txt', 'bob', { body: rclonePropset(1_000_000_000) });
    expect(r.status).toBe(207);
    expect(statuses(await r.text())).toEqual({ lastmodified: '200' });
    const after = await one('r/a.txt');
    expect(after.getlastmodified).toBe('Sun, 09 Sep 2001 01:46:40 GMT');
    expect(after.mtime).toBe(1_000_000_000_000);
    expect(after.etag).not.toBe(before.etag);
    expect(after.checksums).toBe(before.checksums);
    expect(after.lastmodified).toBeUndefined(); // applied, not kept as a dead property
    expect((await one('r/')).etag).not.toBe(folder.etag);
    // The file on disk has that time; the content is untouched.
    const disk = path.join(await env.driver.spacePath(space), 'r', 'a.txt');
    expect((await fsp.stat(disk)).mtimeMs).toBe(1_000_000_000_000);
    expect(await (await dav('GET', 'r/a.txt', 'ann')).text()).toBe('hello');
    // The kept listing of the folder (the observer runs) shows it too.
    const listed = await shown('r/', '1');
    expect([...listed.values()].find((e) => e.mtime === 1_000_000_000_000)?.etag).toBe(after.etag);
    // Fractional seconds, as X-OC-Mtime allows.
    const f = await dav('PROPPATCH', 'r/a.txt', 'ann', { body: rclonePropset(1_234_567_890.5) });
    expect(statuses(await f.text())).toEqual({ lastmodified: '200' });
    expect((await one('r/a.txt')).mtime).toBe(1_234_567_890_500);
  });

  it('accepts the file’s own checksums alongside (rclone ≥ 1.67) and refuses others, changing nothing', async () => {
    await put('c.txt', 'hello');
    const sha1 = (await one('c.txt')).checksums!.split(' ').find((s) => s.startsWith('SHA1:'))!;
    expect(sha1).toBe('SHA1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d');
    const ok = await dav('PROPPATCH', 'c.txt', 'ann', { body: rclonePropset(1_100_000_000, sha1) });
    expect(statuses(await ok.text())).toEqual({ lastmodified: '200', checksums: '200' });
    expect((await one('c.txt')).mtime).toBe(1_100_000_000_000);
    const md5 = await dav('PROPPATCH', 'c.txt', 'ann', {
      body: rclonePropset(1_100_000_001, 'md5:5D41402ABC4B2A76B9719D911017C592'),
    });
    expect(statuses(await md5.text())).toEqual({ lastmodified: '200', checksums: '200' });
    const before = await one('c.txt');
    const wrong = await dav('PROPPATCH', 'c.txt', 'ann', {
      body: rclonePropset(1_200_000_000, `SHA1:${'0'.repeat(40)}`),
    });
    expect(statuses(await wrong.text())).toEqual({ lastmodified: '424', checksums: '409' });
    expect(await one('c.txt')).toEqual(before);
  });

  it('takes Windows’ Win32LastModifiedTime on a file; on a folder it stays a dead property', async () => {
    await put('w.txt', 'win');
    const r = await dav('PROPPATCH', 'w.txt', 'ann', {
      body: windowsPropset('Tue, 14 Nov 2023 22:13:20 GMT'),
    });
    expect(statuses(await r.text())).toEqual({
      Win32CreationTime: '200',
      Win32LastAccessTime: '200',
      Win32LastModifiedTime: '200',
      Win32FileAttributes: '200',
    });
    expect(await one('w.txt')).toMatchObject({
      getlastmodified: 'Tue, 14 Nov 2023 22:13:20 GMT',
      mtime: 1_700_000_000_000,
    });
    await dav('MKCOL', 'wd', 'ann');
    const folder = await one('wd/');
    const d = await dav('PROPPATCH', 'wd', 'ann', { body: windowsPropset('Tue, 14 Nov 2023 22:13:20 GMT') });
    expect(statuses(await d.text())).toMatchObject({ Win32LastModifiedTime: '200' });
    expect(await one('wd/')).toMatchObject({
      getlastmodified: folder.getlastmodified,
      etag: folder.etag,
      win32: 'Tue, 14 Nov 2023 22:13:20 GMT',
    });
  });

  it('refuses DAV:lastmodified on a folder, and values that are no time, with 409, changing nothing', async () => {
    await dav('MKCOL', 'f', 'ann');
    await put('f/x.txt', 'x');
    const folder = await one('f/');
    const withDead = `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:e="urn:example"><d:set><d:prop><d:lastmodified>1000000000</d:lastmodified><e:color>red</e:color></d:prop></d:set></d:propertyupdate>`;
    const r = await dav('PROPPATCH', 'f', 'ann', { body: withDead });
    expect(statuses(await r.text())).toEqual({ lastmodified: '409', color: '424' });
    expect(await one('f/')).toEqual(folder);
    const file = await one('f/x.txt');
    for (const bad of ['yesterday', '-5', '1e9', '', '12345678901234567']) {
      const b = await dav('PROPPATCH', 'f/x.txt', 'ann', {
        body: `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:lastmodified>${bad}</d:lastmodified></d:prop></d:set></d:propertyupdate>`,
      });
      expect(statuses(await b.text()), bad).toEqual({ lastmodified: '409' });
    }
    const w = await dav('PROPPATCH', 'f/x.txt', 'ann', { body: windowsPropset('not a date') });
    expect(statuses(await w.text())).toMatchObject({
      Win32LastModifiedTime: '409',
      Win32FileAttributes: '424',
    });
    expect(await one('f/x.txt')).toEqual(file);
  });

  it('refuses a time the filesystem cannot hold (ext4 stops in 2446), and then sets nothing else', async () => {
    await put('far.txt', 'far');
    const before = await one('far.txt');
    const r = await dav('PROPPATCH', 'far.txt', 'ann', {
      body: windowsPropset('Mon, 01 Jan 9999 00:00:00 GMT'),
    });
    // (a filesystem with 64-bit times takes it: then it is set)
    const probe = path.join(env.root, 'probe');
    await fsp.writeFile(probe, '');
    const far = Date.UTC(9999, 0, 1);
    await fsp.utimes(probe, far / 1000, far / 1000);
    const holds = (await fsp.stat(probe)).mtimeMs === far;
    const got = statuses(await r.text());
    if (holds) {
      expect(got).toMatchObject({ Win32LastModifiedTime: '200', Win32FileAttributes: '200' });
      expect((await one('far.txt')).mtime).toBe(far);
      return;
    }
    expect(got).toEqual({
      Win32CreationTime: '424',
      Win32LastAccessTime: '424',
      Win32LastModifiedTime: '409',
      Win32FileAttributes: '424',
    });
    expect(await one('far.txt')).toEqual(before);
    const md = (await (await env.provider.as('ann')).stat({ space, path: 'far.txt' }, { metadataKeys: '*' }))
      .metadata;
    expect(md).toEqual({}); // all or nothing (RFC 4918 §9.2)
  });

  it('needs the right to write the file, and its lock token when it is locked', async () => {
    await put('g.txt', 'guarded');
    const before = await one('g.txt');
    expect((await dav('PROPPATCH', 'g.txt', 'cat', { body: rclonePropset(1_000_000_000) })).status).toBe(403);
    const lock = await dav('LOCK', 'g.txt', 'ann', {
      body: `<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>`,
    });
    expect(lock.status).toBe(200);
    const token = lock.headers.get('lock-token')!;
    expect((await dav('PROPPATCH', 'g.txt', 'ann', { body: rclonePropset(1_000_000_000) })).status).toBe(423);
    expect(await one('g.txt')).toEqual(before);
    const ok = await dav('PROPPATCH', 'g.txt', 'ann', {
      body: rclonePropset(1_000_000_000),
      headers: { if: `(${token})` },
    });
    expect(statuses(await ok.text())).toEqual({ lastmodified: '200' });
    expect((await one('g.txt')).mtime).toBe(1_000_000_000_000);
  });

  it('takes X-OC-Mtime on a COPY or MOVE as rclone sends it, and says so', async () => {
    await dav('MKCOL', 'cm', 'ann');
    await put('cm/src.txt', 'copied');
    const src = await one('cm/src.txt');
    const to = (p: string) => `${env.url}${base}/${p}`;
    // rclone: the source's time in whole seconds, Overwrite: T; then a PROPPATCH unless "accepted".
    const copy = await dav('COPY', 'cm/src.txt', 'bob', {
      headers: { destination: to('cm/copy.txt'), overwrite: 'T', 'x-oc-mtime': '1000000000' },
    });
    expect(copy.status).toBe(201);
    expect(copy.headers.get('x-oc-mtime')).toBe('accepted');
    const copied = await one('cm/copy.txt');
    expect(copied.mtime).toBe(1_000_000_000_000);
    expect(copy.headers.get('etag')).toBe(copied.etag);
    expect(await one('cm/src.txt')).toEqual(src);
    const move = await dav('MOVE', 'cm/copy.txt', 'bob', {
      headers: { destination: to('cm/moved.txt'), 'x-oc-mtime': '1100000000.25' },
    });
    expect(move.status).toBe(201);
    expect(move.headers.get('x-oc-mtime')).toBe('accepted');
    expect((await one('cm/moved.txt')).mtime).toBe(1_100_000_000_250);
    // The time it already has, to the second: accepted, nothing rewritten.
    const same = Math.floor(src.mtime! / 1000);
    const again = await dav('COPY', 'cm/src.txt', 'bob', {
      headers: { destination: to('cm/same.txt'), 'x-oc-mtime': String(same) },
    });
    expect(again.headers.get('x-oc-mtime')).toBe('accepted');
    // (kept as the copy keeps it, below the millisecond too; not cut to the second)
    expect((await one('cm/same.txt')).mtime).toBeCloseTo(src.mtime!, 1);
    expect((await one('cm/same.txt')).mtime! % 1000).not.toBe(0);
    // A folder's time follows what is in it: not taken, not said to be.
    const folder = await dav('COPY', 'cm/', 'bob', {
      headers: { destination: to('cm2/'), 'x-oc-mtime': '1000000000' },
    });
    expect(folder.status).toBe(201);
    expect(folder.headers.get('x-oc-mtime')).toBeNull();
    // One that is no time: 400 before anything is copied.
    const bad = await dav('COPY', 'cm/src.txt', 'bob', {
      headers: { destination: to('cm/bad.txt'), 'x-oc-mtime': 'yesterday' },
    });
    expect(bad.status).toBe(400);
    expect((await dav('HEAD', 'cm/bad.txt', 'ann')).status).toBe(404);
  });
});
