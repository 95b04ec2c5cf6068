/**
 * ownCloud's favorites over WebDAV: `oc:favorite` in PROPFIND (the user's own mark, 0 or 1),
 * set and removed by PROPPATCH (a viewer may, a lock does not stand in the way, the resource does
 * not change), and listed by the REPORTs the web UIs send for their "Favorites" view: ownCloud's and
 * Nextcloud's `oc:filter-files`, OpenCloud's `oc:search-files` with `is:favorite` on `.../dav/spaces/`.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromLetters, ROLES } from '../../src/index.js';
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

/** A PROPPATCH body setting `props` (prefixes d:, oc: and x: = urn:x declared). */
const setProps = (props: string): string =>
  `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x"><d:set><d:prop>${props}</d:prop></d:set></d:propertyupdate>`;

const patch = (value: string | null) =>
  value === null
    ? '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:remove><d:prop><oc:favorite/></d:prop></d:remove></d:propertyupdate>'
    : setProps(`<oc:favorite>${value}</oc:favorite>`);

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
    const both = setProps('<oc:favorite>1</oc:favorite><x:color>red</x:color>');
    const r = await dav('PROPPATCH', 'docs/a.txt', 'bob', { body: both });
    expect(r.status).toBe(403);
    expect(await favorites('docs/a.txt', 'bob', '0')).toEqual({ 'docs/a.txt': '0' });
    // With a protected one: 403 for it, 424 for the favorite, nothing applied.
    const prot = setProps('<oc:favorite>1</oc:favorite><d:getetag>"x"</d:getetag>');
    const text = await proppatch('docs/a.txt', 'ann', prot);
    expect(text).toContain('403 Forbidden');
    expect(text).toContain('424 Failed Dependency');
    expect(await favorites('docs/a.txt', 'ann', '0')).toEqual({ 'docs/a.txt': '0' });
    // Nobody marks what they cannot see.
    expect((await dav('PROPPATCH', 'docs/a.txt', 'eve', { body: patch('1') })).status).toBe(404);
  });

  it('makes no mark when the rest of the PROPPATCH is refused', async () => {
    // A time Node cannot set (1960): the storage refuses it, 409 for it, 424 for the favorite,
    // which is not made.
    const body = setProps('<oc:favorite>1</oc:favorite><d:lastmodified>-315619200</d:lastmodified>');
    const text = await proppatch('docs/a.txt', 'ann', body);
    expect(text).toContain('409 Conflict');
    expect(text).toContain('424 Failed Dependency');
    expect(await favorites('docs/a.txt', 'ann', '0')).toEqual({ 'docs/a.txt': '0' });
    // A dead property beyond what the storage keeps for a resource: 507, and again no mark.
    const big = setProps(`<oc:favorite>1</oc:favorite><x:big>${'b'.repeat(600_000)}</x:big>`);
    const full = await proppatch('docs/b.txt', 'ann', big);
    expect(full).toContain('507 Insufficient Storage');
    expect(full).not.toContain('200 OK');
    expect(await favorites('docs/b.txt', 'ann', '0')).toEqual({ 'docs/b.txt': '0' });
  });

  it('announces nothing for a refused PROPPATCH, and never takes back a mark another request made', async () => {
    const ev = listenEvents(env, 'bob');
    await new Promise((r) => setTimeout(r, 150)); // subscribed
    const mixed = setProps('<oc:favorite>1</oc:favorite><x:c>red</x:c>');
    for (let i = 0; i < 10; i++) {
      // a viewer's mark with a dead property (refused) and a plain mark, at once
      const [refused, plain] = await Promise.all([
        dav('PROPPATCH', 'docs/b.txt', 'bob', { body: mixed }),
        dav('PROPPATCH', 'docs/b.txt', 'bob', { body: patch('1') }),
      ]);
      expect(refused.status).toBe(403);
      expect(await plain.text()).toContain('200 OK');
      expect(await favorites('docs/b.txt', 'bob', '0')).toEqual({ 'docs/b.txt': '1' });
      await proppatch('docs/b.txt', 'bob', patch('0'));
    }
    expect((await dav('PROPPATCH', 'docs/b.txt', 'bob', { body: mixed })).status).toBe(403);
    await new Promise((r) => setTimeout(r, 150));
    await ev.stop();
    const told = ev.got.filter((e) => e.type === 'favorite.changed').map((e) => e.favorite);
    expect(told).toEqual(Array.from({ length: 10 }, () => [true, false]).flat());
  });

  it('puts back what the PROPPATCH changed when the mark itself fails', async () => {
    const lab = await sharedProject(env, 'ann', 'Fav undo', 'u-eve', 'editor');
    const at = `/dav/spaces/${lab}/u.txt`;
    expect((await davFetch(env, 'PUT', at, 'ann', { body: 'u' })).status).toBe(201);
    const first = await davFetch(env, 'PROPPATCH', at, 'eve', { body: setProps('<x:color>blue</x:color>') });
    expect(await first.text()).toContain('200 OK');
    // eve's marks cannot be written: something else sits where her folder of marks goes
    const dir = path.join(env.root, 'data', '.stowage', 'favorites', 'u-eve');
    await fs.rename(dir, `${dir}.aside`).catch(() => {});
    await fs.mkdir(path.dirname(dir), { recursive: true });
    await fs.writeFile(dir, 'in the way');
    try {
      const r = await davFetch(env, 'PROPPATCH', at, 'eve', {
        body: setProps('<oc:favorite>1</oc:favorite><x:color>red</x:color><x:size>9</x:size>'),
      });
      expect(r.status).toBe(500);
      expect(await r.text()).toContain('cannot be kept');
      const now = await davFetch(env, 'PROPFIND', at, 'eve', {
        headers: { depth: '0' },
        body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:color/><x:size/></d:prop></d:propfind>',
      });
      const text = await now.text();
      expect(text).toMatch(/:color[^>]*>blue<\//);
      expect(text).toMatch(/:size[^>]*\/>\s*<\/d:prop>\s*<d:status>HTTP\/1.1 404/);
    } finally {
      await fs.rm(dir);
      await fs.rename(`${dir}.aside`, dir).catch(() => {});
    }
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
      const dead = setProps('<x:k>v</x:k>');
      expect((await dav('PROPPATCH', 'docs/b.txt', 'ann', { body: dead })).status).toBe(423);
    } finally {
      await dav('UNLOCK', 'docs/b.txt', 'ann', { headers: { 'lock-token': token } });
      await proppatch('docs/b.txt', 'bob', patch('0'));
    }
  });

  it('shows in kept listings as the user marks now, and a mark keeps other listings', async () => {
    const stats = () => env.server.webdav!.listingCacheStats()!;
    // (The observer looks at the writes of beforeAll in the background; under load, what it
    // reports late can drop the folder's kept listing between two PROPFINDs: let it settle first.)
    await env.observer?.idle();
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
    // At a personal endpoint's root (what ownCloud's web UI asks): every favorite of the user,
    // those in other spaces under .../dav/spaces/ (ownCloud's server lists the whole tree).
    await proppatch('docs/b.txt', 'ann', patch('1'));
    const project = `${env.driver.storageId}$${space}`;
    expect((await reported('/remote.php/dav/files/ann/', 'ann')).hrefs).toEqual(
      ['/remote.php/dav/files/ann/mine.txt', `/remote.php/dav/spaces/${project}/docs/b.txt`].sort(),
    );
    expect((await reported('/remote.php/webdav/', 'ann')).hrefs).toEqual(
      ['/remote.php/webdav/mine.txt', `/remote.php/dav/spaces/${project}/docs/b.txt`].sort(),
    );
    expect((await reported('/dav/files/ann/', 'ann')).hrefs).toEqual(
      ['/dav/files/ann/mine.txt', `/dav/spaces/${project}/docs/b.txt`].sort(),
    );
    // Below a folder of it, only what is below.
    expect((await davFetch(env, 'MKCOL', '/remote.php/webdav/sub', 'ann')).status).toBe(201);
    expect((await reported('/remote.php/webdav/sub/', 'ann')).hrefs).toEqual([]);
    await proppatch('docs/b.txt', 'ann', patch('0'));
  });

  it("answers OpenCloud's search for favorites on .../dav/spaces/, with hrefs it can place", async () => {
    for (const p of ['docs/', 'docs/deep/']) await proppatch(p, 'bob', patch('0')); // (marked above)
    const other = await sharedProject(env, 'ann', 'Fav other', 'u-bob', 'editor');
    expect((await davFetch(env, 'PUT', `/dav/spaces/${other}/x.txt`, 'ann', { body: 'x' })).status).toBe(201);
    await davFetch(env, 'PROPPATCH', `/dav/spaces/${other}/x.txt`, 'bob', { body: patch('1') });
    await proppatch('docs/a.txt', 'bob', patch('1'));
    expect((await davFetch(env, 'PUT', '/remote.php/webdav/own.txt', 'bob', { body: 'o' })).status).toBe(201);
    await davFetch(env, 'PROPPATCH', '/remote.php/webdav/own.txt', 'bob', { body: patch('1') });
    const personal = (await (await env.provider.as('u-bob')).personalSpace()).id;
    const s = env.driver.storageId;
    // As OpenCloud's web UI sends it (its props, its search element, a limit).
    const search = (pattern: string, limit = '') =>
      `<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:getetag/><oc:fileid/><oc:favorite/><d:lockdiscovery/></d:prop><oc:search><oc:pattern>${pattern}</oc:pattern>${limit}</oc:search></oc:search-files>`;
    const all = await reported('/remote.php/dav/spaces/', 'bob', search('is:favorite'));
    expect(all.status).toBe(207);
    expect(all.hrefs).toEqual(
      [
        `/remote.php/dav/spaces/${s}$${space}/docs/a.txt`,
        `/remote.php/dav/spaces/${s}$${other}/x.txt`,
        `/remote.php/dav/spaces/${s}$${personal}/own.txt`,
      ].sort(),
    );
    expect(all.text.match(/<oc:favorite>1<\/oc:favorite>/g)).toHaveLength(3);
    expect(all.text).toContain(`<oc:fileid>${s}$${other}!`);
    // The same as filter-files, and on /dav/spaces/ with its own hrefs; a limit is kept.
    expect((await reported('/dav/spaces/', 'bob')).hrefs).toEqual(
      all.hrefs.map((h) => h.replace('/remote.php/dav/', '/dav/')),
    );
    const two = await reported(
      '/remote.php/dav/spaces/',
      'bob',
      search('is:favorite', '<oc:limit>2</oc:limit>'),
    );
    expect(two.hrefs).toHaveLength(2);
    // A search it cannot do (no index of contents): 501, said so; no pattern at all: 400.
    const content = await reported('/remote.php/dav/spaces/', 'bob', search('content:report'));
    expect(content.status).toBe(501);
    expect(content.text).toContain('content');
    expect((await reported('/remote.php/dav/spaces/', 'bob', search(''))).status).toBe(400);
    // Only REPORT is answered there; strangers get nothing of it.
    expect((await davFetch(env, 'PROPFIND', '/remote.php/dav/spaces/', 'bob')).status).toBe(404);
    expect((await reported('/remote.php/dav/spaces/', 'eve', search('is:favorite'))).hrefs).toEqual([]);
    expect(
      (await davFetch(env, 'REPORT', '/dav/spaces/', null, { body: search('is:favorite') })).status,
    ).toBe(401);
    for (const u of [`/dav/spaces/${other}/x.txt`, '/remote.php/webdav/own.txt', `${base}/docs/a.txt`])
      await davFetch(env, 'PROPPATCH', u, 'bob', { body: patch('0') });
  });

  it('answers for each favorite what a PROPFIND of it answers: locks from above, quota', async () => {
    expect((await dav('MKCOL', 'locked', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'locked/in.txt', 'ann', { body: 'in' })).status).toBe(201);
    const lock = await dav('LOCK', 'locked', 'ann', {
      headers: { depth: 'infinity', timeout: 'Second-3600' },
      body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>ann</d:owner></d:lockinfo>',
    });
    expect(lock.status).toBe(200);
    await proppatch('locked/in.txt', 'bob', patch('1'));
    await proppatch('locked/', 'bob', patch('1'));
    const props =
      '<d:getetag/><oc:favorite/><oc:fileid/><oc:permissions/><d:lockdiscovery/><d:quota-available-bytes/><d:quota-used-bytes/><d:resourcetype/><d:getlastmodified/>';
    // (the bytes available follow the disk's free space, which other tests running alongside move)
    const answers = (text: string) =>
      new Map(
        [...text.matchAll(/<d:response><d:href>([^<]*)<\/d:href>.*?<\/d:response>/g)].map((m) => [
          m[1]!,
          m[0].replace(/(<d:quota-available-bytes>)\d+</, '$1N<'),
        ]),
      );
    const got = answers((await reported(`${base}/locked/`, 'bob', report(props))).text);
    const everywhere = answers((await reported('/dav/spaces/', 'bob', report(props))).text);
    const s = env.driver.storageId;
    for (const p of ['locked/', 'locked/in.txt']) {
      const one = await dav('PROPFIND', p, 'bob', {
        headers: { depth: '0' },
        body: `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>${props}</d:prop></d:propfind>`,
      });
      const own = [...answers(await one.text()).values()][0]!;
      if (p === 'locked/in.txt') {
        expect(got.get(`${base}/${p}`)).toBe(own);
        expect(own).toContain('<d:activelock>');
      }
      // the same, but for the hrefs of the other mount
      const there = everywhere.get(`/dav/spaces/${s}$${space}/${p}`)!;
      expect(there.replaceAll(`/dav/spaces/${s}$${space}/`, `${base}/`)).toBe(own);
    }
    expect(got.get(`${base}/locked/in.txt`)).toMatch(/<d:lockroot><d:href>[^<]*\/locked\/<\/d:href>/);
    expect(everywhere.get(`/dav/spaces/${s}$${space}/locked/`)).toMatch(
      /<d:quota-available-bytes>N<\/d:quota-available-bytes>/,
    );
    const token = lock.headers.get('lock-token')!;
    expect((await dav('UNLOCK', 'locked', 'ann', { headers: { 'lock-token': token } })).status).toBe(204);
    await proppatch('locked/in.txt', 'bob', patch('0'));
    await proppatch('locked/', 'bob', patch('0'));
  });

  it('shows a favorite reached through a share of a folder by its own node', async () => {
    const session = await env.provider.as('u-ann');
    const lab = (await session.createSpace({ type: 'project', name: 'Fav shared folder' })).id;
    await session.mkdir({ space: lab, path: 'in' });
    const inner = await session.write({ space: lab, path: 'in/f.txt' }, 'f');
    await session.setGrant(
      { space: lab, path: 'in' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters(ROLES.viewer) },
    );
    const node = `/dav/spaces/${env.driver.storageId}$${lab}!${inner.id.opaqueId}`;
    expect((await davFetch(env, 'PROPPATCH', node, 'eve', { body: patch('1') })).status).toBe(207);
    const found = await reported('/dav/spaces/', 'eve');
    expect(found.hrefs).toEqual([node]);
    expect(found.text).toContain('<oc:favorite>1</oc:favorite>');
    // (and the node's href answers)
    expect((await davFetch(env, 'GET', node, 'eve')).status).toBe(200);
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
    const set = await reports.text();
    expect(set).toContain('<d:report><oc:filter-files/></d:report>');
    expect(set).toContain('<d:report><oc:search-files/></d:report>');
    // And OPTIONS says REPORT is a method here.
    expect((await dav('OPTIONS', '', 'bob')).headers.get('allow')).toContain('REPORT');
  });
});
