/**
 * ownCloud's favorites over WebDAV: `oc:favorite` in PROPFIND (the user's own mark, 0 or 1),
 * set and removed by PROPPATCH (a viewer may, a lock does not stand in the way, the resource does
 * not change), and listed by the `oc:filter-files` REPORT the ownCloud, OpenCloud and Nextcloud web
 * UIs send for their "Favorites" view.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, type DavInit, davFetch, listenEvents, sharedProject, startDav } from './server.js';

let env: DavEnv;
let space: string;
let base: string;

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
    { id: 'u-eve', username: 'eve' },
  ]);
  space = await sharedProject(env, 'ann', 'Fav lab', 'u-bob', 'viewer');
  base = `/dav/spaces/${space}`;
  for (const p of ['docs/', 'docs/a.txt', 'docs/b.txt', 'docs/deep/', 'docs/deep/c.txt', 'other/']) {
    const r = p.endsWith('/')
      ? await dav('MKCOL', p.slice(0, -1), 'ann')
      : await dav('PUT', p, 'ann', { body: `content of ${p}` });
    expect(r.status, p).toBe(201);
  }
});
afterAll(() => env?.close());

const dav = (method: string, p: string, user: string | null, init?: DavInit) =>
  davFetch(env, method, `${base}/${p}`, user, init);

/** What the ownCloud web UI asks for (its own namespace as the default one, as the desktop client does too). */
const PROPFIND =
  '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><favorite xmlns="http://owncloud.org/ns"/><fileid xmlns="http://owncloud.org/ns"/></d:prop></d:propfind>';

/** href -> oc:favorite as shown to `user` by a PROPFIND of `p`. */
async function favorites(p: string, user: string, depth = '1'): Promise<Record<string, string>> {
  const r = await dav('PROPFIND', p, user, { body: PROPFIND, headers: { depth } });
  expect(r.status).toBe(207);
  const out: Record<string, string> = {};
  for (const m of (await r.text()).matchAll(/<d:response><d:href>([^<]*)<\/d:href>(.*?)<\/d:response>/g))
    out[m[1]!.slice(base.length + 1)] = /<oc:favorite>(\d)<\/oc:favorite>/.exec(m[2]!)?.[1] ?? 'absent';
  return out;
}

const patch = (value: string | null) =>
  value === null
    ? '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:remove><d:prop><oc:favorite/></d:prop></d:remove></d:propertyupdate>'
    : `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop><oc:favorite>${value}</oc:favorite></d:prop></d:set></d:propertyupdate>`;

async function proppatch(p: string, user: string, body: string): Promise<string> {
  const r = await dav('PROPPATCH', p, user, { body });
  expect(r.status).toBe(207);
  return r.text();
}

const report = (props: string, rules = '<oc:favorite>1</oc:favorite>') =>
  `<?xml version="1.0"?><oc:filter-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>${props}</d:prop><oc:filter-rules>${rules}</oc:filter-rules></oc:filter-files>`;

/** The hrefs of a REPORT's answer, and its whole text. */
async function reported(url: string, user: string, body = report('<d:getetag/><oc:favorite/>')) {
  const r = await davFetch(env, 'REPORT', url, user, { body });
  const text = await r.text();
  return {
    status: r.status,
    type: r.headers.get('content-type'),
    text,
    hrefs: [...text.matchAll(/<d:href>([^<]*)<\/d:href>/g)].map((m) => m[1]!).sort(),
  };
}

describe('oc:favorite', () => {
  it("is each user's own, set by a viewer too, and changes nothing of the resource", async () => {
    expect(await favorites('docs/', 'bob')).toEqual({
      'docs/': '0',
      'docs/a.txt': '0',
      'docs/b.txt': '0',
      'docs/deep/': '0',
    });
    const etag = (await dav('HEAD', 'docs/a.txt', 'ann')).headers.get('etag');
    const folder = () => dav('PROPFIND', 'docs/', 'ann', { headers: { depth: '0' } }).then((r) => r.text());
    const folderBefore = await folder();
    const ok = await proppatch('docs/a.txt', 'bob', patch('1'));
    expect(ok).toContain('HTTP/1.1 200 OK');
    expect(ok).toContain('<oc:favorite');
    expect(await favorites('docs/', 'bob')).toMatchObject({ 'docs/a.txt': '1', 'docs/b.txt': '0' });
    expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/a.txt': '0' });
    expect((await dav('HEAD', 'docs/a.txt', 'ann')).headers.get('etag')).toBe(etag);
    expect(await folder()).toBe(folderBefore);
    // "true"/"false" too, as Reva takes them; remove is unmarking.
    await proppatch('docs/b.txt', 'bob', patch('true'));
    await proppatch('docs/a.txt', 'bob', patch(null));
    expect(await favorites('docs/', 'bob')).toMatchObject({ 'docs/a.txt': '0', 'docs/b.txt': '1' });
    await proppatch('docs/b.txt', 'bob', patch('false'));
    expect(await favorites('docs/', 'bob')).toMatchObject({ 'docs/b.txt': '0' });
  });

  it('refuses a value that is not one, and the whole PROPPATCH when anything else in it is refused', async () => {
    const bad = await proppatch('docs/a.txt', 'bob', patch('yes'));
    expect(bad).toContain('409 Conflict');
    expect(await favorites('docs/a.txt', 'bob', '0')).toEqual({ 'docs/a.txt': '0' });
    // A viewer's favorite with a dead property it may not set: neither is applied.
    const both =
      '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x"><d:set><d:prop><oc:favorite>1</oc:favorite><x:color>red</x:color></d:prop></d:set></d:propertyupdate>';
    const r = await dav('PROPPATCH', 'docs/a.txt', 'bob', { body: both });
    expect(r.status).toBe(403);
    expect(await favorites('docs/a.txt', 'bob', '0')).toEqual({ 'docs/a.txt': '0' });
    // With a protected one: 403 for it, 424 for the favorite, nothing applied.
    const prot =
      '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop><oc:favorite>1</oc:favorite><d:getetag>"x"</d:getetag></d:prop></d:set></d:propertyupdate>';
    const text = await proppatch('docs/a.txt', 'ann', prot);
    expect(text).toContain('403 Forbidden');
    expect(text).toContain('424 Failed Dependency');
    expect(await favorites('docs/a.txt', 'ann', '0')).toEqual({ 'docs/a.txt': '0' });
    // Nobody marks what they cannot see.
    expect((await dav('PROPPATCH', 'docs/a.txt', 'eve', { body: patch('1') })).status).toBe(404);
  });

  it('takes the mark back when the rest of the PROPPATCH is refused', async () => {
    // A time Node cannot set (1960): the storage refuses it once the mark is made, 409 for it,
    // 424 for the favorite, which is taken back.
    const body =
      '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop><oc:favorite>1</oc:favorite><d:lastmodified>-315619200</d:lastmodified></d:prop></d:set></d:propertyupdate>';
    const text = await proppatch('docs/a.txt', 'ann', body);
    expect(text).toContain('409 Conflict');
    expect(text).toContain('424 Failed Dependency');
    expect(await favorites('docs/a.txt', 'ann', '0')).toEqual({ 'docs/a.txt': '0' });
    // A dead property beyond what the storage keeps for a resource: 507, and again no mark.
    const big = `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x"><d:set><d:prop><oc:favorite>1</oc:favorite><x:big>${'b'.repeat(600_000)}</x:big></d:prop></d:set></d:propertyupdate>`;
    const full = await proppatch('docs/b.txt', 'ann', big);
    expect(full).toContain('507 Insufficient Storage');
    expect(full).not.toContain('200 OK');
    expect(await favorites('docs/b.txt', 'ann', '0')).toEqual({ 'docs/b.txt': '0' });
  });

  it('is announced to its user alone', async () => {
    const listen = (user: string) => listenEvents(env, user);
    const ann = listen('ann');
    const bob = listen('bob');
    await new Promise((r) => setTimeout(r, 150)); // subscribed
    await proppatch('docs/b.txt', 'bob', patch('1'));
    await proppatch('docs/b.txt', 'bob', patch('0'));
    expect((await dav('PUT', 'docs/last.txt', 'ann', { body: 'last' })).status).toBe(201);
    for (let i = 0; i < 100 && !ann.got.some((e) => e.path === '/docs/last.txt'); i++)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    await ann.stop();
    await bob.stop();
    expect(ann.got.map((e) => e.type)).toEqual(['created']);
    expect(
      bob.got.filter((e) => e.type === 'favorite.changed').map((e) => [e.path, e.user, e.favorite]),
    ).toEqual([
      ['/docs/b.txt', 'u-bob', true],
      ['/docs/b.txt', 'u-bob', false],
    ]);
  });

  it("is not held up by another user's lock, which still holds for everything else", async () => {
    const lock = await dav('LOCK', 'docs/b.txt', 'ann', {
      body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>',
    });
    expect(lock.status).toBe(200);
    const token = lock.headers.get('lock-token')!;
    try {
      await proppatch('docs/b.txt', 'bob', patch('1'));
      expect(await favorites('docs/b.txt', 'bob', '0')).toEqual({ 'docs/b.txt': '1' });
      // ann's own dead property without her token: still 423.
      const dead =
        '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:k>v</x:k></d:prop></d:set></d:propertyupdate>';
      expect((await dav('PROPPATCH', 'docs/b.txt', 'ann', { body: dead })).status).toBe(423);
    } finally {
      await dav('UNLOCK', 'docs/b.txt', 'ann', { headers: { 'lock-token': token } });
      await proppatch('docs/b.txt', 'bob', patch('0'));
    }
  });

  it('shows in kept listings as the user marks now, and a mark keeps other listings', async () => {
    const stats = () => env.server.webdav!.listingCacheStats()!;
    expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/b.txt': '0' });
    let hits = stats().hits;
    expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/b.txt': '0' });
    expect(stats().hits).toBe(hits + 1); // (a web UI's listing is kept too)
    await proppatch('docs/b.txt', 'ann', patch('1'));
    expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/b.txt': '1' });
    hits = stats().hits;
    expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/b.txt': '1' });
    expect(stats().hits).toBe(hits + 1);
    // Marked in another process (its own driver on the same root): no event here, seen all the same.
    const { createPosixDriver } = await import('../../src/drivers/posix/index.js');
    const other = await createPosixDriver({ root: env.driver.root });
    try {
      const b = await env.provider.as('u-ann').then((s) => s.stat({ space, path: 'docs/b.txt' }));
      await other.features.favorites!.set('u-ann', b.id, false);
      expect(await favorites('docs/', 'ann')).toMatchObject({ 'docs/b.txt': '0' });
    } finally {
      await other.close();
    }
    // bob's listing (other marks) is his own.
    expect(await favorites('docs/', 'bob')).toMatchObject({ 'docs/b.txt': '0' });
    // A sync client's listing (no oc:favorite) is kept as before, and a mark drops none of it.
    const plain =
      '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>';
    const list = () =>
      dav('PROPFIND', 'docs/', 'ann', { body: plain, headers: { depth: '1' } }).then((r) => r.text());
    const first = await list();
    hits = stats().hits;
    await proppatch('docs/a.txt', 'ann', patch('1'));
    expect(await list()).toBe(first);
    expect(stats().hits).toBe(hits + 1);
    await proppatch('docs/a.txt', 'ann', patch('0'));
  });
});

describe('REPORT oc:filter-files', () => {
  it("lists the user's favorites below the folder asked, at any depth, with the properties asked", async () => {
    await proppatch('docs/a.txt', 'bob', patch('1'));
    await proppatch('docs/deep/c.txt', 'bob', patch('1'));
    await proppatch('docs/deep/', 'bob', patch('1'));
    await proppatch('docs/', 'bob', patch('1'));
    const all = await reported(
      `${base}/`,
      'bob',
      report('<d:getetag/><oc:favorite/><oc:fileid/><d:getcontentlength/>'),
    );
    expect(all.status).toBe(207);
    expect(all.type).toBe('application/xml; charset=utf-8');
    expect(all.hrefs).toEqual(
      [`${base}/docs/`, `${base}/docs/a.txt`, `${base}/docs/deep/`, `${base}/docs/deep/c.txt`].sort(),
    );
    expect(all.text.match(/<oc:favorite>1<\/oc:favorite>/g)).toHaveLength(4);
    expect(all.text).toContain('<d:getcontentlength>21</d:getcontentlength>'); // "content of docs/a.txt"
    expect(all.text).toMatch(/<oc:fileid>[^<]+<\/oc:fileid>/);
    // Below a folder: not the folder itself, nor what is beside it.
    expect((await reported(`${base}/docs/deep/`, 'bob')).hrefs).toEqual([`${base}/docs/deep/c.txt`]);
    expect((await reported(`${base}/other/`, 'bob')).hrefs).toEqual([]);
    // ann marked none of these: hers are hers.
    expect((await reported(`${base}/`, 'ann')).hrefs).toEqual([]);
    // Moved: found where it is now; deleted: gone.
    expect(
      (await dav('MOVE', 'docs/deep/c.txt', 'ann', { headers: { destination: `${base}/other/c.txt` } }))
        .status,
    ).toBe(201);
    expect((await reported(`${base}/other/`, 'bob')).hrefs).toEqual([`${base}/other/c.txt`]);
    expect((await dav('DELETE', 'other/c.txt', 'ann')).status).toBe(204);
    expect((await reported(`${base}/other/`, 'bob')).hrefs).toEqual([]);
    // Without a filter rule: refused (never the whole tree); one that selects nothing: nothing.
    expect((await reported(`${base}/`, 'bob', report('<d:getetag/>', ''))).status).toBe(400);
    expect(
      (await reported(`${base}/`, 'bob', report('<d:getetag/>', '<oc:favorite>0</oc:favorite>'))).hrefs,
    ).toEqual([]);
  });

  it('answers on the personal endpoints with their own hrefs', async () => {
    expect((await davFetch(env, 'PUT', '/remote.php/webdav/mine.txt', 'ann', { body: 'm' })).status).toBe(
      201,
    );
    await davFetch(env, 'PROPPATCH', '/remote.php/dav/files/ann/mine.txt', 'ann', { body: patch('1') });
    expect((await reported('/remote.php/dav/files/ann/', 'ann')).hrefs).toEqual([
      '/remote.php/dav/files/ann/mine.txt',
    ]);
    expect((await reported('/remote.php/webdav/', 'ann')).hrefs).toEqual(['/remote.php/webdav/mine.txt']);
    // (the project's favorites are not below the personal space)
    expect((await reported('/remote.php/dav/files/bob/', 'bob')).hrefs).toEqual([]);
  });

  it('refuses other reports, rules it cannot apply, bad bodies and strangers, clearly', async () => {
    const other = await reported(
      `${base}/`,
      'bob',
      '<?xml version="1.0"?><d:version-tree xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:version-tree>',
    );
    expect(other.status).toBe(403);
    expect(other.text).toContain('supported-report');
    const tag = await reported(`${base}/`, 'bob', report('<d:getetag/>', '<oc:systemtag>7</oc:systemtag>'));
    expect(tag.status).toBe(400);
    expect(tag.text).toContain('systemtag');
    expect((await reported(`${base}/`, 'bob', '')).status).toBe(400);
    expect(
      (await reported(`${base}/`, 'bob', '<oc:filter-files xmlns:oc="http://owncloud.org/ns">')).status,
    ).toBe(400);
    const xxe = await reported(
      `${base}/`,
      'bob',
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><oc:filter-files xmlns:oc="http://owncloud.org/ns"><oc:filter-rules><oc:favorite>&e;</oc:favorite></oc:filter-rules></oc:filter-files>',
    );
    expect(xxe.status).toBe(400);
    expect(xxe.text).not.toContain('root:');
    expect((await reported(`${base}/`, 'eve')).status).toBe(404);
    expect((await davFetch(env, 'REPORT', `${base}/`, null, { body: report('') })).status).toBe(401);
    // The capabilities say favorites are kept (web UIs show their view only then).
    const caps = await davFetch(env, 'GET', '/ocs/v2.php/cloud/capabilities?format=json', 'bob', {
      headers: { 'ocs-apirequest': 'true' },
    });
    expect(
      ((await caps.json()) as { ocs: { data: { capabilities: { files: { favorites: boolean } } } } }).ocs.data
        .capabilities.files.favorites,
    ).toBe(true);
    // allprop with it included, and propname, show it too; supported-report-set names the report.
    const allprop = await dav('PROPFIND', 'docs/a.txt', 'bob', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:allprop/><d:include><oc:favorite/></d:include></d:propfind>',
    });
    expect(await allprop.text()).toMatch(/<oc:favorite>[01]<\/oc:favorite>/);
    const names = await dav('PROPFIND', 'docs/a.txt', 'bob', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
    });
    expect(await names.text()).toContain('<oc:favorite/>');
    const reports = await dav('PROPFIND', 'docs/', 'bob', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:supported-report-set/></d:prop></d:propfind>',
    });
    expect(await reports.text()).toContain('<d:report><oc:filter-files/></d:report>');
    // And OPTIONS says REPORT is a method here.
    expect((await dav('OPTIONS', '', 'bob')).headers.get('allow')).toContain('REPORT');
  });
});
