/**
 * OpenCloud's search over WebDAV: REPORT `oc:search-files` with a query (`name:"*x*"`, media
 * types, times, sizes, a scope, favorites), as its web UI's search bar and filter chips send it to
 * `.../dav/spaces/`, and ownCloud's plain pattern sent to a folder. No index: the tree the user
 * may see is walked, and nothing they may not see is found.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, davFetch, sharedProject, startDav } from './server.js';

let env: DavEnv;
let space: string;
let personal: string;
let s: string;

/** Made by ann in a project bob may view; `private/` is denied to bob. */
const PROJECT = [
  'Reports/',
  'Reports/annual report 2025.pdf',
  'Reports/Q1.xlsx',
  'Reports/deep/',
  'Reports/deep/Summary.docx',
  'report-archive/',
  'photos/',
  'photos/Café.jpg',
  'photos/Cafe\u0301 2.png',
  'notes.md',
  'a%#&report.txt',
  'private/',
  'private/report-secret.txt',
];

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
    { id: 'u-eve', username: 'eve' },
  ]);
  space = await sharedProject(env, 'ann', 'Search lab', 'u-bob', 'viewer');
  s = env.driver.storageId;
  for (const p of PROJECT) {
    const url = `/dav/spaces/${space}/${p.split('/').map(encodeURIComponent).join('/')}`;
    const r = p.endsWith('/')
      ? await davFetch(env, 'MKCOL', url.slice(0, -1), 'ann')
      : await davFetch(env, 'PUT', url, 'ann', { body: `content of ${p}` });
    expect(r.status, p).toBe(201);
  }
  const ann = await env.provider.as('u-ann');
  await ann.denyGrant({ space, path: 'private' }, { type: 'user', id: 'u-bob' });
  for (const [user, name] of [
    ['bob', 'my-report.txt'],
    ['eve', 'report-eve.txt'],
  ] as const)
    expect((await davFetch(env, 'PUT', `/remote.php/webdav/${name}`, user, { body: 'x' })).status).toBe(201);
  personal = (await (await env.provider.as('u-bob')).personalSpace()).id;
});
afterAll(() => env?.close());

/** As OpenCloud's web UI sends it (its properties, its search element, a limit). */
const body = (pattern: string, limit = '') =>
  `<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:getetag/><oc:fileid/><oc:favorite/><d:getcontenttype/><oc:permissions/></d:prop><oc:search><oc:pattern>${pattern.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</oc:pattern>${limit}</oc:search></oc:search-files>`;

/** The hrefs a REPORT answers (decoded, relative to the project or bob's personal space). */
async function search(pattern: string, user = 'bob', url = '/dav/spaces/', limit = '') {
  const r = await davFetch(env, 'REPORT', url, user, { body: body(pattern, limit) });
  const text = await r.text();
  const hrefs = [...text.matchAll(/<d:href>([^<]*)<\/d:href>/g)]
    .map((m) =>
      decodeURIComponent(m[1]!)
        .replace(`/dav/spaces/${s}$${space}/`, 'P:')
        .replace(`/dav/spaces/${s}$${personal}/`, 'B:')
        .replace(/^\/remote\.php(?=[PB]:)/, ''),
    )
    .sort();
  return { status: r.status, text, hrefs, range: r.headers.get('content-range') };
}

const fileid = async (p: string) => {
  const r = await davFetch(env, 'PROPFIND', `/dav/spaces/${space}/${p}`, 'ann', {
    headers: { depth: '0' },
    body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><oc:fileid/></d:prop></d:propfind>',
  });
  return /<oc:fileid>([^<]+)<\/oc:fileid>/.exec(await r.text())![1]!;
};

describe('REPORT oc:search-files', () => {
  it('finds names in every space the user may see, and nothing they may not', async () => {
    const r = await search('name:"*report*"');
    expect(r.status).toBe(207);
    expect(r.hrefs).toEqual(
      [
        'B:my-report.txt',
        'P:Reports/',
        'P:Reports/annual report 2025.pdf',
        'P:a%#&report.txt',
        'P:report-archive/',
      ].sort(),
    );
    // Each as a PROPFIND of it answers.
    expect(r.text).toContain('<d:getcontenttype>application/pdf</d:getcontenttype>');
    expect(r.text).toContain(`<oc:fileid>${s}$${space}!`);
    expect(r.text).not.toContain('secret');
    // ann sees her private folder; eve only her own space.
    expect((await search('name:"*secret*"', 'ann')).hrefs).toEqual(['P:private/report-secret.txt']);
    expect((await search('name:"*secret*"')).hrefs).toEqual([]);
    expect((await search('name:"*report*"', 'eve')).hrefs.map((h) => h.replace(/^.*\//, ''))).toEqual([
      'report-eve.txt',
    ]);
  });

  it('matches names without regard to case or Unicode form, and stops at the limit', async () => {
    expect((await search('name:"*CAFÉ*"')).hrefs).toEqual(['P:photos/Cafe\u0301 2.png', 'P:photos/Café.jpg']);
    const two = await search('name:"*report*"', 'bob', '/dav/spaces/', '<oc:limit>2</oc:limit>');
    expect(two.hrefs).toHaveLength(2);
  });

  it('says how many it found in all when given a limit (Content-Range: rows, as the web UI reads it)', async () => {
    const limit = (n: number) => `<oc:limit>${n}</oc:limit>`;
    // Five matches for bob: the search list asks for 200, the search bar's preview for 8, and
    // fewer than there are.
    for (const [n, range, count] of [
      [200, 'rows 0-4/5', 5],
      [8, 'rows 0-4/5', 5],
      [2, 'rows 0-1/5', 2],
      [5, 'rows 0-4/5', 5],
    ] as const) {
      const r = await search('name:"*report*"', 'bob', '/dav/spaces/', limit(n));
      expect([r.status, r.range, r.hrefs.length], `limit ${n}`).toEqual([207, range, count]);
    }
    // Nothing found: none of none.
    const none = await search('name:"*nothing-like-this*"', 'bob', '/dav/spaces/', limit(200));
    expect([none.status, none.range, none.hrefs]).toEqual([207, 'rows */0', []]);
    // Below a folder, with the query's own filters (the favorites are counted below, once marked).
    const docs = await search(
      'mediatype:("document" OR "spreadsheet")',
      'bob',
      `/dav/spaces/${space}/Reports/`,
      limit(1),
    );
    expect([docs.range, docs.hrefs.length]).toEqual(['rows 0-0/2', 1]);
    // Results that would hold more than 1 MiB are streamed instead, without a total: here each
    // answers 2,000 properties it does not have (~480 KB a result).
    const ns = `urn:x-${'n'.repeat(200)}`;
    const props = Array.from({ length: 2000 }, (_, i) => `<x:p${i} xmlns:x="${ns}"/>`).join('');
    const big = await davFetch(env, 'REPORT', '/dav/spaces/', 'bob', {
      body: `<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>${props}</d:prop><oc:search><oc:pattern>name:"*report*"</oc:pattern>${limit(200)}</oc:search></oc:search-files>`,
    });
    const bigText = await big.text();
    expect(bigText.length).toBeGreaterThan(2 << 20);
    expect([big.status, big.headers.get('content-range'), bigText.match(/<d:href>/g)?.length]).toEqual([
      207,
      null,
      5,
    ]);
    // Without a limit every match is there to count, and results stream as they are found.
    const all = await search('name:"*report*"');
    expect([all.hrefs.length, all.range]).toEqual([5, null]);
  });

  it('filters by media type, time and size, as the filter chips send them', async () => {
    // (plain text is a document, as OpenCloud counts it)
    expect((await search('mediatype:("document" OR "spreadsheet")')).hrefs).toEqual(
      [
        'B:my-report.txt',
        'P:Reports/Q1.xlsx',
        'P:Reports/deep/Summary.docx',
        'P:a%#&report.txt',
        'P:notes.md',
      ].sort(),
    );
    expect((await search('name:"*r*" AND mediatype:folder')).hrefs).toEqual([
      'P:Reports/',
      'P:report-archive/',
    ]);
    // An old file (its time set as rclone sets it), found by time and left out of today's.
    const pp = await davFetch(env, 'PROPPATCH', `/dav/spaces/${space}/notes.md`, 'ann', {
      body: '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:lastmodified>1262304000</d:lastmodified></d:prop></d:set></d:propertyupdate>',
    });
    expect(pp.status).toBe(207);
    expect((await search('mtime<2011-01-01')).hrefs).toEqual(['P:notes.md']);
    expect((await search('mediatype:document AND mtime:today AND NOT name:"*.txt"')).hrefs).toEqual([
      'P:Reports/deep/Summary.docx',
    ]);
    const small = `content of Reports/Q1.xlsx`.length;
    expect((await search(`size<=${small} AND mediatype:spreadsheet`)).hrefs).toEqual(['P:Reports/Q1.xlsx']);
    expect((await search(`size<${small} AND mediatype:spreadsheet`)).hrefs).toEqual([]);
  });

  it('searches below a scope (a folder id), or below the folder it is sent to', async () => {
    const reports = await fileid('Reports');
    expect((await search(`name:"*" AND scope:${reports}`)).hrefs).toEqual(
      [
        'P:Reports/Q1.xlsx',
        'P:Reports/annual report 2025.pdf',
        'P:Reports/deep/',
        'P:Reports/deep/Summary.docx',
      ].sort(),
    );
    // A scope bob may not see: nothing of it is said.
    const hidden = await search(`name:"*" AND scope:${await fileid('private')}`);
    expect(hidden.status).toBe(404);
    expect(hidden.text).not.toContain('secret');
    // ownCloud's plain pattern, sent to a folder: its hrefs are that folder's.
    const r = await search('summary', 'bob', `/remote.php/dav/spaces/${space}/Reports/`);
    expect(r.hrefs).toEqual([`/remote.php/dav/spaces/${space}/Reports/deep/Summary.docx`]);
    // At a personal endpoint's root: everywhere, the personal space under that endpoint.
    const own = await search('name:"*report*"', 'bob', '/remote.php/dav/files/bob/');
    expect(own.hrefs).toContain('/remote.php/dav/files/bob/my-report.txt');
    expect(own.hrefs).toContain('P:a%#&report.txt');
    expect(own.hrefs.filter((h) => h.startsWith('B:'))).toEqual([]);
  });

  it('narrows the favorites view by the filter chips', async () => {
    for (const p of ['Reports/Q1.xlsx', 'notes.md', 'photos/Caf%C3%A9.jpg'])
      expect(
        (
          await davFetch(env, 'PROPPATCH', `/dav/spaces/${space}/${p}`, 'bob', {
            body: '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop><oc:favorite>1</oc:favorite></d:prop></d:set></d:propertyupdate>',
          })
        ).status,
      ).toBe(207);
    expect((await search('is:favorite')).hrefs).toEqual([
      'P:Reports/Q1.xlsx',
      'P:notes.md',
      'P:photos/Café.jpg',
    ]);
    expect(
      (await search('mtime:last 7 days AND mediatype:("spreadsheet" OR "image") AND is:favorite')).hrefs,
    ).toEqual(['P:Reports/Q1.xlsx', 'P:photos/Café.jpg']);
    expect((await search('NOT is:favorite AND mediatype:spreadsheet')).hrefs).toEqual([]);
    // Counted as the other searches are.
    const two = await search('is:favorite', 'bob', '/dav/spaces/', '<oc:limit>2</oc:limit>');
    expect([two.range, two.hrefs.length]).toEqual(['rows 0-1/3', 2]);
    expect((await search('is:favorite AND name:"*.md"', 'ann')).hrefs).toEqual([]);
  });

  it("finds OpenCloud's tags (`oc:tags`), set through WebDAV or any other door, and shows them", async () => {
    const tag = (p: string, tags: string) =>
      davFetch(env, 'PROPPATCH', `/dav/spaces/${space}/${p}`, 'ann', {
        body: `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop><oc:tags>${tags}</oc:tags></d:prop></d:set></d:propertyupdate>`,
      });
    expect((await tag('Reports/Q1.xlsx', 'Finance,Lab')).status).toBe(207);
    expect((await tag('photos/', 'lab')).status).toBe(207);
    expect((await tag('private/report-secret.txt', 'lab')).status).toBe(207);
    const ann = await env.provider.as('u-ann');
    await ann.setMetadata({ space, path: 'notes.md' }, { tags: 'finance, archive' });
    expect((await search('tag:lab')).hrefs).toEqual(['P:Reports/Q1.xlsx', 'P:photos/']);
    expect((await search('tag:lab', 'ann')).hrefs).toEqual([
      'P:Reports/Q1.xlsx',
      'P:photos/',
      'P:private/report-secret.txt',
    ]);
    expect((await search('tags:("archive" OR "nothing")')).hrefs).toEqual(['P:notes.md']);
    expect((await search('tag:finance AND NOT name:"*.md"')).hrefs).toEqual(['P:Reports/Q1.xlsx']);
    expect((await search('tag:fin')).hrefs).toEqual([]);
    // The web UI asks for oc:tags with its results.
    const shown = await davFetch(env, 'REPORT', '/dav/spaces/', 'bob', {
      body: '<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><oc:tags/></d:prop><oc:search><oc:pattern>tag:archive</oc:pattern></oc:search></oc:search-files>',
    });
    expect(await shown.text()).toContain('<oc:tags>finance, archive</oc:tags>');
  });

  it('refuses what it cannot search, and what does not parse, saying why', async () => {
    const content = await search('(name:"*x*" OR content:"x")');
    expect(content.status).toBe(501);
    expect(content.text).toMatch(/content/);
    for (const q of [
      'name:"*x*" AND',
      '(name:x',
      'mediatype:gizmo',
      'mtime:"next week"',
      `scope:a OR name:x`,
    ]) {
      const r = await search(q);
      expect(r.status, q).toBe(400);
      expect(r.text, q).toMatch(/<s:message>[^<]+<\/s:message>/);
    }
    const nested = await search(`${'('.repeat(5000)}x${')'.repeat(5000)}`);
    expect(nested.status).toBe(400);
    // And the server is still there.
    expect((await search('name:"*report*"')).status).toBe(207);
  });

  it('stops a walk after searchMaxVisits resources and says so (RFC 5323 §2.4); 0 turns walks off', async () => {
    const small = await startDav([{ id: 'u-zed', username: 'zed' }], { watch: false, searchMaxVisits: 25 });
    try {
      for (let d = 0; d < 3; d++) {
        expect((await davFetch(small, 'MKCOL', `/remote.php/webdav/d${d}`, 'zed')).status).toBe(201);
        for (let f = 0; f < 10; f++)
          await davFetch(small, 'PUT', `/remote.php/webdav/d${d}/f${f}.txt`, 'zed', { body: 'x' });
      }
      const r = await davFetch(small, 'REPORT', '/dav/spaces/', 'zed', { body: body('name:"f*"') });
      expect(r.status).toBe(207);
      const text = await r.text();
      const found = [...text.matchAll(/<d:href>([^<]*\.txt)<\/d:href>/g)];
      expect(found.length).toBeGreaterThan(10);
      expect(found.length).toBeLessThan(30);
      expect(text).toMatch(
        /<d:response><d:href>\/dav\/spaces\/<\/d:href><d:status>HTTP\/1\.1 507 Insufficient Storage<\/d:status><d:error><d:number-of-matches-within-limits\/><\/d:error>/,
      );
      // Asked for fewer than it found before it stopped: every result asked for is there (no
      // 507), but the total is not known, so none is given.
      const five = await davFetch(small, 'REPORT', '/dav/spaces/', 'zed', {
        body: body('name:"f*"', '<oc:limit>5</oc:limit>'),
      });
      const fiveText = await five.text();
      expect([...fiveText.matchAll(/\.txt<\/d:href>/g)]).toHaveLength(5);
      expect(fiveText).not.toContain('Insufficient Storage');
      expect(five.headers.get('content-range')).toBeNull();
      // Asked for more than it found before it stopped: the 507, and no total either.
      const many = await davFetch(small, 'REPORT', '/dav/spaces/', 'zed', {
        body: body('name:"f*"', '<oc:limit>200</oc:limit>'),
      });
      expect(await many.text()).toContain('Insufficient Storage');
      expect(many.headers.get('content-range')).toBeNull();
      // A search that stays within it says nothing of the kind.
      const scoped = await davFetch(small, 'REPORT', '/remote.php/webdav/d1/', 'zed', {
        body: body('name:"f*"'),
      });
      const all = await scoped.text();
      expect([...all.matchAll(/\.txt<\/d:href>/g)]).toHaveLength(10);
      expect(all).not.toContain('Insufficient Storage');
      const counted = await davFetch(small, 'REPORT', '/remote.php/webdav/d1/', 'zed', {
        body: body('name:"f*"', '<oc:limit>3</oc:limit>'),
      });
      expect([counted.status, counted.headers.get('content-range')]).toEqual([207, 'rows 0-2/10']);
    } finally {
      await small.close();
    }
    const off = await startDav([{ id: 'u-zed', username: 'zed' }], { watch: false, searchMaxVisits: 0 });
    try {
      const r = await davFetch(off, 'REPORT', '/dav/spaces/', 'zed', { body: body('name:"*x*"') });
      expect(r.status).toBe(501);
      expect(await r.text()).toContain('searchMaxVisits');
      expect(
        (await davFetch(off, 'REPORT', '/dav/spaces/', 'zed', { body: body('is:favorite') })).status,
      ).toBe(207);
    } finally {
      await off.close();
    }
  });

  it('is announced in the capabilities the web UI reads', async () => {
    const r = await davFetch(env, 'GET', '/ocs/v2.php/cloud/capabilities?format=json', 'bob');
    type Caps = {
      dav: { reports: string[] };
      search: { property: Record<string, { enabled: boolean; keywords?: string[] }> };
    };
    const caps = ((await r.json()) as { ocs: { data: { capabilities: Caps } } }).ocs.data.capabilities;
    expect(caps.dav.reports).toEqual(['search-files']);
    expect(caps.search.property.mediatype?.keywords).toContain('document');
    expect(caps.search.property.mtime?.keywords).toContain('last 7 days');
    expect(caps.search.property.content?.enabled).toBe(false);
  });
});

/** Count the driver's folder listings open at once while `fn` runs. */
async function mostListingsOpen(driver: DavEnv['driver'], fn: () => Promise<void>): Promise<number> {
  const list = driver.list;
  let open = 0;
  let most = 0;
  driver.list = async function* (this: typeof driver, ...args: Parameters<typeof list>) {
    most = Math.max(most, ++open);
    try {
      yield* list.apply(this, args);
    } finally {
      open--;
    }
  };
  try {
    await fn();
  } finally {
    driver.list = list;
  }
  return most;
}

describe('webdav: walks of deep trees', () => {
  it('keeps one folder listing open at a time, however deep the search goes', async () => {
    let p = `/dav/spaces/${space}/deep-walk`;
    for (let d = 0; d < 12; d++) {
      expect((await davFetch(env, 'MKCOL', p, 'ann')).status).toBe(201);
      for (const f of ['a.txt', 'b.txt']) await davFetch(env, 'PUT', `${p}/${d}-${f}`, 'ann', { body: 'x' });
      p += '/sub';
    }
    let found: string[] = [];
    const most = await mostListingsOpen(env.driver, async () => {
      found = (await search('*-b.txt', 'ann', `/dav/spaces/${space}/deep-walk/`)).hrefs;
    });
    expect(found).toHaveLength(12);
    expect(found.at(-1)).toMatch(/(sub\/){11}11-b\.txt$/);
    expect(most).toBe(1);
  });
});

describe('webdav: PROPFIND Depth: infinity, where it is allowed', () => {
  it('lists the whole tree once, with the locks from above on every member, one folder listing open at a time', async () => {
    const open = await startDav([{ id: 'u-q', username: 'q', createSpaces: true }], {
      watch: false,
      allowDepthInfinity: true,
    });
    try {
      const want: string[] = [];
      let p = '/remote.php/webdav/tree';
      for (let d = 0; d < 5; d++) {
        expect((await davFetch(open, 'MKCOL', p, 'q')).status).toBe(201);
        want.push(`${p}/`);
        for (const f of ['a.txt', 'b.txt']) {
          expect((await davFetch(open, 'PUT', `${p}/${f}`, 'q', { body: 'x' })).status).toBe(201);
          want.push(`${p}/${f}`);
        }
        p += '/sub';
      }
      const lock = await davFetch(open, 'LOCK', '/remote.php/webdav/tree/sub', 'q', {
        headers: { depth: 'infinity' },
        body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>',
      });
      expect(lock.status).toBe(200);
      let xml = '';
      const most = await mostListingsOpen(open.driver, async () => {
        const r = await davFetch(open, 'PROPFIND', '/remote.php/webdav/tree/', 'q', {
          headers: { depth: 'infinity' },
          body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:lockdiscovery/></d:prop></d:propfind>',
        });
        expect(r.status).toBe(207);
        xml = await r.text();
      });
      const responses = [...xml.matchAll(/<d:response>(.*?)<\/d:response>/gs)].map((m) => m[1]!);
      const hrefOf = (r: string) => /<d:href>([^<]*)<\/d:href>/.exec(r)![1]!;
      expect(responses.map(hrefOf).sort()).toEqual(want.sort());
      // What the lock covers shows it (its root named), and nothing above it does.
      for (const r of responses) {
        const covered = hrefOf(r).startsWith('/remote.php/webdav/tree/sub/');
        expect(r.includes('<d:lockroot><d:href>/remote.php/webdav/tree/sub/</d:href>'), hrefOf(r)).toBe(
          covered,
        );
      }
      expect(most).toBe(1);
    } finally {
      await open.close();
    }
  });
});
