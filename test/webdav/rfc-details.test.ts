/**
 * RFC 4918 and RFC 9110 details that litmus does not check, found by a differential review
 * against Apache mod_dav_fs: locks inherited from folders above (lockdiscovery, conflicts), locks
 * left behind by a MOVE, the If header on LOCK, preconditions against 404 and 409, a folder's
 * GET validators, propname and allprop's include.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type DavEnv, type DavInit, davFetch, sharedProject, startDav } from './server.js';

let env: DavEnv;
let base: string;

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
  ]);
  base = `/dav/spaces/${await sharedProject(env, 'ann', 'RFC lab', 'u-bob', 'editor')}`;
});
afterAll(() => env?.close());

const dav = (method: string, p: string, user: string | null, init?: DavInit) =>
  davFetch(env, method, `${base}/${p}`, user, init);

const lockBody = (scope: 'exclusive' | 'shared') =>
  `<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:${scope}/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>t</d:owner></d:lockinfo>`;

async function lock(
  p: string,
  scope: 'exclusive' | 'shared' = 'exclusive',
  headers: Record<string, string> = {},
) {
  const r = await dav('LOCK', p, 'ann', { body: lockBody(scope), headers });
  expect(r.status, await r.clone().text()).toBeLessThan(300);
  return r.headers.get('lock-token')!.replace(/^<|>$/g, '');
}

const LOCKS =
  '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:lockdiscovery/><d:getetag/></d:prop></d:propfind>';

/** The lock tokens and lock roots each href of a PROPFIND shows. */
async function locksShown(
  p: string,
  depth: '0' | '1',
): Promise<Map<string, { tokens: string[]; roots: string[] }>> {
  const r = await dav('PROPFIND', p, 'ann', { body: LOCKS, headers: { depth } });
  expect(r.status).toBe(207);
  const out = new Map<string, { tokens: string[]; roots: string[] }>();
  for (const m of (await r.text()).matchAll(/<d:response><d:href>([^<]*)<\/d:href>(.*?)<\/d:response>/g)) {
    const body = m[2]!;
    out.set(m[1]!, {
      tokens: [...body.matchAll(/<d:locktoken><d:href>([^<]*)</g)].map((x) => x[1]!),
      roots: [...body.matchAll(/<d:lockroot><d:href>([^<]*)</g)].map((x) => x[1]!),
    });
  }
  return out;
}

const etagOf = async (p: string) => (await dav('HEAD', p, 'ann')).headers.get('etag')!;

describe('webdav: locks from the folders above (RFC 4918 §6.1)', () => {
  it('shows a depth-infinity lock in the lockdiscovery of every member, with its lock root, and no more once it is gone', async () => {
    expect((await dav('MKCOL', 'inh', 'ann')).status).toBe(201);
    expect((await dav('MKCOL', 'inh/sub', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'inh/sub/f.txt', 'ann', { body: 'f' })).status).toBe(201);
    // Listed before the lock (and kept): the lock must still show after it is taken.
    expect((await locksShown('inh/sub/', '1')).get(`${base}/inh/sub/f.txt`)?.tokens).toEqual([]);
    const tok = await lock('inh/');
    const member = (await locksShown('inh/sub/f.txt', '0')).get(`${base}/inh/sub/f.txt`)!;
    expect(member).toEqual({ tokens: [tok], roots: [`${base}/inh/`] });
    for (let round = 0; round < 2; round++) {
      const listed = await locksShown('inh/sub/', '1');
      expect(listed.get(`${base}/inh/sub/`)?.tokens).toEqual([tok]);
      expect(listed.get(`${base}/inh/sub/f.txt`)).toEqual({ tokens: [tok], roots: [`${base}/inh/`] });
    }
    // The locked folder's own listing: its members show its lock too.
    expect((await locksShown('inh/', '1')).get(`${base}/inh/sub/`)?.tokens).toEqual([tok]);
    // Unlocked: no member shows it any more (a member's own lock next to the tree's: see below).
    expect((await dav('UNLOCK', 'inh/', 'ann', { headers: { 'lock-token': `<${tok}>` } })).status).toBe(204);
    expect((await locksShown('inh/sub/', '1')).get(`${base}/inh/sub/f.txt`)?.tokens).toEqual([]);
    expect((await locksShown('inh/sub/f.txt', '0')).get(`${base}/inh/sub/f.txt`)?.tokens).toEqual([]);
  });

  it('refuses a second lock on a member of a locked tree, unless both are shared (RFC 4918 §6.1: no conflicting locks)', async () => {
    expect((await dav('MKCOL', 'conf', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'conf/m.txt', 'ann', { body: 'm' })).status).toBe(201);
    const ex = await lock('conf/');
    const conflict = await dav('LOCK', 'conf/m.txt', 'ann', {
      body: lockBody('exclusive'),
      headers: { if: `(<${ex}>)` },
    });
    expect(conflict.status).toBe(423);
    const text = await conflict.text();
    expect(text).toContain('<d:no-conflicting-lock>');
    expect(text).toContain(`${base}/conf/`);
    // Without the folder's token it is the missing token that is named.
    const noToken = await dav('LOCK', 'conf/m.txt', 'ann', { body: lockBody('shared') });
    expect(noToken.status).toBe(423);
    expect(await noToken.text()).toContain('lock-token-submitted');
    expect((await dav('UNLOCK', 'conf/', 'ann', { headers: { 'lock-token': `<${ex}>` } })).status).toBe(204);

    const sh = await lock('conf/', 'shared');
    expect(
      (await dav('LOCK', 'conf/m.txt', 'ann', { body: lockBody('exclusive'), headers: { if: `(<${sh}>)` } }))
        .status,
    ).toBe(423);
    const second = await lock('conf/m.txt', 'shared', { if: `(<${sh}>)` });
    expect(second).not.toBe(sh);
    // The member shows both: the tree's and its own.
    expect((await locksShown('conf/m.txt', '0')).get(`${base}/conf/m.txt`)?.tokens).toEqual([sh, second]);
  });
});

describe('webdav: a lock token is its creator’s (RFC 4918 §6.4), on members too', () => {
  it('does not let another user delete or move a folder with a member’s shared lock by its token', async () => {
    expect((await dav('MKCOL', 'shm', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'shm/doc.txt', 'ann', { body: 'ann’s' })).status).toBe(201);
    const tok = await lock('shm/doc.txt', 'shared');
    // bob reads the token from the lock discovery, as any editor may
    expect((await locksShown('shm/doc.txt', '0')).get(`${base}/shm/doc.txt`)?.tokens).toEqual([tok]);
    // (tagged with the member, as RFC 4918 §10.4.2 has a client name a locked member's token)
    const withToken = { headers: { if: `<${base}/shm/doc.txt> (<${tok}>)` } };
    expect([412, 423]).toContain(
      (await dav('PUT', 'shm/doc.txt', 'bob', { body: 'b', ...withToken })).status,
    );
    const del = await dav('DELETE', 'shm/', 'bob', withToken);
    expect(del.status).toBe(423);
    expect(await del.text()).toContain(`${base}/shm/doc.txt`);
    const mv = await dav('MOVE', 'shm/', 'bob', {
      headers: { ...withToken.headers, destination: `${base}/shm-moved/` },
    });
    expect(mv.status).toBe(423);
    const over = await dav('COPY', 'ifl-src.txt', 'bob', {
      headers: { ...withToken.headers, destination: `${base}/shm` },
    });
    expect([404, 423]).toContain(over.status);
    expect(await (await dav('GET', 'shm/doc.txt', 'ann')).text()).toBe('ann’s');
    // Its holder may, with the token.
    expect(
      (await dav('MOVE', 'shm/', 'ann', { headers: { ...withToken.headers, destination: `${base}/shm2/` } }))
        .status,
    ).toBe(201);
    expect(await (await dav('GET', 'shm2/doc.txt', 'ann')).text()).toBe('ann’s');
  });
});

describe('webdav: MOVE drops the mover’s WebDAV locks (RFC 4918 §7.7)', () => {
  it('releases the moved file’s lock and a moved folder’s, but keeps an app’s lock taken through CS3', async () => {
    expect((await dav('PUT', 'mv.txt', 'ann', { body: 'a' })).status).toBe(201);
    const tok = await lock('mv.txt');
    expect(
      (await dav('MOVE', 'mv.txt', 'ann', { headers: { destination: `${base}/mv2.txt`, if: `(<${tok}>)` } }))
        .status,
    ).toBe(201);
    expect((await locksShown('mv2.txt', '0')).get(`${base}/mv2.txt`)?.tokens).toEqual([]);
    expect((await dav('PUT', 'mv2.txt', 'bob', { body: 'b' })).status).toBe(204);
    expect((await dav('UNLOCK', 'mv2.txt', 'ann', { headers: { 'lock-token': `<${tok}>` } })).status).toBe(
      409,
    );

    expect((await dav('MKCOL', 'mvd', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'mvd/in.txt', 'ann', { body: 'i' })).status).toBe(201);
    const dirTok = await lock('mvd/');
    expect(
      (await dav('MOVE', 'mvd/', 'ann', { headers: { destination: `${base}/mvd2/`, if: `(<${dirTok}>)` } }))
        .status,
    ).toBe(201);
    expect((await locksShown('mvd2/', '1')).get(`${base}/mvd2/in.txt`)?.tokens).toEqual([]);
    expect((await dav('PUT', 'mvd2/in.txt', 'bob', { body: 'b' })).status).toBe(204);

    // Another user's lock is theirs (RFC 4918 §6.4: the server checks the principal is the lock's
    // creator): a MOVE that names its token (it is public in lockdiscovery) does not take the
    // member along. Its holder's own MOVE does.
    expect((await dav('MKCOL', 'other', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'other/m.txt', 'ann', { body: 'm' })).status).toBe(201);
    const bobs = await dav('LOCK', 'other/m.txt', 'bob', { body: lockBody('shared') });
    expect(bobs.status).toBe(200);
    const bobTok = bobs.headers.get('lock-token')!.replace(/^<|>$/g, '');
    for (const ifHeader of [`(Not <${bobTok}>)`, `<${base}/other/m.txt> (<${bobTok}>)`]) {
      const refused = await dav('MOVE', 'other/', 'ann', {
        headers: { destination: `${base}/other2/`, if: ifHeader },
      });
      expect(refused.status).toBe(423);
      expect(await refused.text()).toContain(`${base}/other/m.txt`);
    }
    expect(
      (
        await dav('MOVE', 'other/', 'bob', {
          headers: { destination: `${base}/other2/`, if: `<${base}/other/m.txt> (<${bobTok}>)` },
        })
      ).status,
    ).toBe(201);
    // (and, as the mover's own, the member's lock is dropped where it landed)
    expect((await locksShown('other2/m.txt', '0')).get(`${base}/other2/m.txt`)?.tokens).toEqual([]);

    // An office app's lock (CS3, as a WOPI server takes it) goes with the file it is editing.
    expect((await dav('PUT', 'doc.odt', 'ann', { body: 'd' })).status).toBe(201);
    const ann = await env.provider.as('ann');
    const spaceId = base.split('/').pop()!;
    await ann.setLock(
      { space: spaceId, path: 'doc.odt' },
      { lockId: 'wopi-lock-1', type: 'exclusive', appName: 'office', expires: Date.now() + 60_000 },
    );
    expect(
      (await dav('MOVE', 'doc.odt', 'ann', { headers: { destination: `${base}/doc2.odt` } })).status,
    ).toBe(423);
    expect(
      (
        await dav('MOVE', 'doc.odt', 'ann', {
          headers: { destination: `${base}/doc2.odt`, if: '(<wopi-lock-1>)' },
        })
      ).status,
    ).toBe(201);
    expect((await ann.getLock({ space: spaceId, path: 'doc2.odt' }))?.lockId).toBe('wopi-lock-1');
  });
});

describe('webdav: MOVE out of a locked tree', () => {
  it('does not walk the moved folder for member locks when the only token sent is the tree’s', async () => {
    expect((await dav('MKCOL', 'tree', 'ann')).status).toBe(201);
    expect((await dav('MKCOL', 'tree/sub', 'ann')).status).toBe(201);
    for (const n of ['a', 'b', 'c'])
      expect((await dav('PUT', `tree/sub/${n}.txt`, 'ann', { body: n })).status).toBe(201);
    const treeTok = await lock('tree/', 'exclusive', { depth: 'infinity' });
    const list = vi.spyOn(env.driver, 'list');
    try {
      const r = await dav('MOVE', 'tree/sub/', 'ann', {
        headers: { destination: `${base}/sub-out/`, if: `<${base}/tree/> (<${treeTok}>)` },
      });
      expect(r.status, await r.text()).toBe(201);
      // (no listing of the moved folder, which a walk for member locks makes)
      expect(list).not.toHaveBeenCalled();
    } finally {
      list.mockRestore();
    }
    // The tree's lock stays where it was; the moved folder is free.
    expect((await locksShown('tree/', '0')).get(`${base}/tree/`)?.tokens).toEqual([treeTok]);
    expect((await dav('PUT', 'sub-out/a.txt', 'bob', { body: 'b' })).status).toBe(204);
  });
});

describe('webdav: the If header on LOCK, and negated tokens (RFC 4918 §10.4)', () => {
  it('evaluates an If header on a new lock and on a refresh against the resource’s etag', async () => {
    expect((await dav('PUT', 'ifl.txt', 'ann', { body: 'x' })).status).toBe(201);
    const etag = await etagOf('ifl.txt');
    expect(
      (await dav('LOCK', 'ifl.txt', 'ann', { body: lockBody('exclusive'), headers: { if: '(["nope"])' } }))
        .status,
    ).toBe(412);
    const tok = await lock('ifl.txt', 'exclusive', { if: `([${etag}])` });
    const refresh = (h: string) =>
      dav('LOCK', 'ifl.txt', 'ann', { headers: { if: h, timeout: 'Second-100' } });
    expect((await refresh(`(<${tok}> ["nope"])`)).status).toBe(412);
    expect((await refresh(`(Not <${tok}>)`)).status).toBe(412);
    expect((await refresh(`(<${tok}> [${etag}])`)).status).toBe(200);
    expect((await refresh(`(<${tok}>)`)).status).toBe(200);
  });

  it('counts a token as submitted under Not too, for its holder only', async () => {
    expect((await dav('PUT', 'neg.txt', 'ann', { body: 'x' })).status).toBe(201);
    const tok = await lock('neg.txt');
    const etag = await etagOf('neg.txt');
    const header = `(Not <${tok}>) ([${etag}])`;
    expect((await dav('PUT', 'neg.txt', 'bob', { body: 'b', headers: { if: header } })).status).toBe(423);
    expect((await dav('PUT', 'neg.txt', 'ann', { body: 'y', headers: { if: header } })).status).toBe(204);
    // The header must still hold: the negated list alone is false while the lock is there.
    expect(
      (await dav('PUT', 'neg.txt', 'ann', { body: 'z', headers: { if: `(Not <${tok}>)` } })).status,
    ).toBe(412);
    expect(await (await dav('GET', 'neg.txt', 'ann')).text()).toBe('y');
  });
});

describe('webdav: preconditions and validators (RFC 9110 §13)', () => {
  it('answers 404 and 409 before any precondition: they would fail without it (§13.2.1)', async () => {
    const im = { 'if-match': '"x"' };
    expect((await dav('DELETE', 'missing.txt', 'ann', { headers: im })).status).toBe(404);
    expect(
      (
        await dav('PROPPATCH', 'missing.txt', 'ann', {
          headers: im,
          body: '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><x:a xmlns:x="urn:x">1</x:a></d:prop></d:set></d:propertyupdate>',
        })
      ).status,
    ).toBe(404);
    expect(
      (await dav('MOVE', 'missing.txt', 'ann', { headers: { ...im, destination: `${base}/else.txt` } }))
        .status,
    ).toBe(404);
    expect((await dav('MKCOL', 'nowhere/new', 'ann', { headers: im })).status).toBe(409);
    expect(
      (await dav('LOCK', 'nowhere/new.txt', 'ann', { headers: im, body: lockBody('exclusive') })).status,
    ).toBe(409);
    expect((await dav('MKCOL', 'pre', 'ann')).status).toBe(201);
    expect((await dav('MKCOL', 'pre', 'ann', { headers: { 'if-none-match': '*' } })).status).toBe(405);
    // Where the request could succeed, the precondition still decides.
    expect((await dav('MKCOL', 'pre/new', 'ann', { headers: im })).status).toBe(412);
    expect((await dav('PUT', 'pre/f.txt', 'ann', { body: 'f' })).status).toBe(201);
    expect((await dav('DELETE', 'pre/f.txt', 'ann', { headers: im })).status).toBe(412);
    expect((await dav('GET', 'pre/f.txt', 'ann')).status).toBe(200);
  });

  it('gives a folder’s GET the folder’s validators and evaluates conditions on it', async () => {
    expect((await dav('MKCOL', 'idx', 'ann')).status).toBe(201);
    const first = await dav('GET', 'idx/', 'ann');
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^W\/"/); // (the page differs by user and URL: a weak validator)
    expect(first.headers.get('last-modified')).toBeTruthy();
    const not = await dav('GET', 'idx/', 'ann', { headers: { 'if-none-match': etag } });
    expect(not.status).toBe(304);
    expect(not.headers.get('etag')).toBe(etag);
    expect((await dav('HEAD', 'idx/', 'ann', { headers: { 'if-none-match': '*' } })).status).toBe(304);
    expect((await dav('GET', 'idx/', 'ann', { headers: { 'if-match': '"nope"' } })).status).toBe(412);
    expect(
      (
        await dav('GET', 'idx/', 'ann', {
          headers: { 'if-unmodified-since': 'Sat, 01 Jan 2000 00:00:00 GMT' },
        })
      ).status,
    ).toBe(412);
    // A new member changes the folder's etag: the index is sent again.
    expect((await dav('PUT', 'idx/n.txt', 'ann', { body: 'n' })).status).toBe(201);
    const again = await dav('GET', 'idx/', 'ann', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('n.txt');
  });
});

describe('webdav: a folder’s HTML index', () => {
  it('lists folders first, then files, by name as people read them, with sizes, times and a way up', async () => {
    expect((await dav('MKCOL', 'sorted', 'ann')).status).toBe(201);
    for (const f of ['a1', 'B']) expect((await dav('MKCOL', `sorted/${f}`, 'ann')).status).toBe(201);
    for (const f of ['c.txt', 'a10.txt', 'a2.txt', 'A2.txt', 'é & <b>.txt'])
      expect((await dav('PUT', `sorted/${f}`, 'ann', { body: f })).status).toBe(201);
    const page = await (await dav('GET', 'sorted/', 'ann')).text();
    const names = [...page.matchAll(/<a href="([^"]*)">([^<]*)<\/a><\/td><td>(\d*)<\/td><td>([^<]*)</g)];
    expect(names.map((m) => m[2])).toEqual([
      'a1/',
      'B/',
      'A2.txt',
      'a2.txt',
      'a10.txt',
      'c.txt',
      'é &amp; &lt;b&gt;.txt',
    ]);
    expect(names.map((m) => m[3])).toEqual(['', '', '6', '6', '7', '5', '12']);
    expect(names[0]![1]).toBe(`${base}/sorted/a1/`);
    expect(names[6]![1]).toBe(`${base}/sorted/%C3%A9%20%26%20%3Cb%3E.txt`);
    expect(names[2]![4]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d$/);
    // Up one level, from a folder; none from the space's root.
    expect(page).toContain(`<a href="${base}/">../</a>`);
    expect(await (await dav('GET', '', 'ann')).text()).not.toContain('../');
  });
});

describe('webdav: a folder named without its trailing slash', () => {
  it('sends GET and HEAD to the name with the slash (301), as Apache does, and serves files as named', async () => {
    expect((await dav('MKCOL', 'noslash', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'noslash/f.txt', 'ann', { body: 'f' })).status).toBe(201);
    for (const method of ['GET', 'HEAD']) {
      const r = await dav(method, 'noslash', 'ann', { redirect: 'manual' });
      expect(r.status, method).toBe(301);
      expect(r.headers.get('location')).toBe(`${base}/noslash/`);
      expect(r.headers.get('cache-control')).toBe('no-cache');
    }
    // The query goes along.
    const q = await dav('GET', 'noslash?x=1', 'ann', { redirect: 'manual' });
    expect(q.headers.get('location')).toBe(`${base}/noslash/?x=1`);
    // Followed, the index; the folder's members and files are served as named.
    const page = await dav('GET', 'noslash', 'ann');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('f.txt');
    expect(await (await dav('GET', 'noslash/f.txt', 'ann')).text()).toBe('f');
    // PROPFIND, PUT and the rest take the name as the folder, slash or not (RFC 4918 §5.2).
    expect((await dav('PROPFIND', 'noslash', 'ann', { headers: { depth: '0' } })).status).toBe(207);
  });
});

describe('webdav: DELETE of a collection (RFC 4918 §9.6.1)', () => {
  it('takes a collection whole: a Depth other than infinity is refused and changes nothing', async () => {
    expect((await dav('MKCOL', 'del-depth', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'del-depth/f.txt', 'ann', { body: 'f' })).status).toBe(201);
    for (const depth of ['0', '1', 'abc']) {
      const r = await dav('DELETE', 'del-depth', 'ann', { headers: { depth } });
      expect(r.status, depth).toBe(400);
      expect(await r.text()).toContain('Depth: infinity');
    }
    expect((await dav('GET', 'del-depth/f.txt', 'ann')).status).toBe(200);
    // A file's DELETE takes no notice of it (the rule is about collections).
    expect((await dav('DELETE', 'del-depth/f.txt', 'ann', { headers: { depth: '0' } })).status).toBe(204);
    expect((await dav('DELETE', 'del-depth', 'ann', { headers: { depth: 'Infinity' } })).status).toBe(204);
    expect((await dav('PROPFIND', 'del-depth', 'ann', { headers: { depth: '0' } })).status).toBe(404);
  });
});

describe('webdav: propname and allprop (RFC 4918 §9.1)', () => {
  const names = async (p: string) => {
    const r = await dav('PROPFIND', p, 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
    });
    expect(r.status).toBe(207);
    return [...(await r.text()).matchAll(/<(\w+):([\w-]+)\/>/g)].map((m) => `${m[1]}:${m[2]}`);
  };

  it('names only the properties the resource has', async () => {
    expect((await dav('MKCOL', 'pn', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'pn/f.txt', 'ann', { body: 'f' })).status).toBe(201);
    const folder = await names('pn/');
    // (RFC 4331 §2: a folder's quota properties are named, RFC 3253 §3.1.5: so are its reports)
    for (const present of [
      'd:getetag',
      'd:quota-used-bytes',
      'd:quota-available-bytes',
      'd:supported-report-set',
    ])
      expect(folder).toContain(present);
    for (const absent of ['d:getcontentlength', 'oc:checksums', 'oc:downloadURL', 'oc:dDC'])
      expect(folder).not.toContain(absent);
    const file = await names('pn/f.txt');
    expect(file).toContain('d:getcontentlength');
    expect(file).toContain('oc:checksums');
    for (const absent of ['oc:dDC', 'd:quota-used-bytes', 'd:quota-available-bytes'])
      expect(file).not.toContain(absent);
  });

  it('keeps the quota out of allprop (RFC 4331 §2), and answers it when asked by name', async () => {
    const all = await dav('PROPFIND', 'pn/', 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>',
    });
    expect(await all.text()).not.toContain('quota-');
    const asked = await dav('PROPFIND', 'pn/', 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:quota-used-bytes/><d:quota-available-bytes/></d:prop></d:propfind>',
    });
    expect(await asked.text()).toMatch(
      /<d:quota-used-bytes>1<\/d:quota-used-bytes><d:quota-available-bytes>\d+</,
    );
  });

  it('answers each property once when allprop’s include names one it shows anyway', async () => {
    const r = await dav('PROPFIND', 'pn/f.txt', 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/><d:include><d:lockdiscovery/><d:getetag/><d:getetag/></d:include></d:propfind>',
    });
    const text = await r.text();
    expect(text.match(/<d:getetag>/g)).toHaveLength(1);
    expect(text.match(/<d:lockdiscovery/g)).toHaveLength(1);
  });

  it('answers a property named twice in a prop list once, found or not', async () => {
    const r = await dav('PROPFIND', 'pn/f.txt', 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><d:getetag/><x:nope/><d:getetag/><x:nope/></d:prop></d:propfind>',
    });
    expect(r.status).toBe(207);
    const text = await r.text();
    expect(text.match(/<d:getetag>/g)).toHaveLength(1);
    expect(text.match(/nope/g)).toHaveLength(1);
  });
});

describe('webdav: DAV:creationdate (RFC 4918 §15.1)', () => {
  const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
  const created = async (p: string, body: string) => {
    const r = await dav('PROPFIND', p, 'ann', { headers: { depth: '0' }, body });
    expect(r.status).toBe(207);
    return (await r.text()).match(/<d:creationdate>([^<]*)<\/d:creationdate>/)?.[1];
  };
  const asked =
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:creationdate/></d:prop></d:propfind>';
  const all = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>';

  it('tells when a file or folder came to be, in UTC to the second (what gvfs and macOS parse), in allprop too', async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    expect((await dav('MKCOL', 'born', 'ann')).status).toBe(201);
    expect((await dav('PUT', 'born/f.txt', 'ann', { body: 'one' })).status).toBe(201);
    const t1 = Date.now();
    for (const p of ['born/', 'born/f.txt']) {
      const v = await created(p, asked);
      expect(v, p).toMatch(ISO);
      expect(Date.parse(v!)).toBeGreaterThanOrEqual(t0);
      expect(Date.parse(v!)).toBeLessThanOrEqual(t1);
      expect(await created(p, all), p).toBe(v);
    }
    // The same instant as the API's, and not the modification time: a rewrite and a new mtime keep it.
    const s = await env.provider.as('ann');
    const ref = { space: base.slice('/dav/spaces/'.length), path: 'born/f.txt' };
    const info = await s.stat(ref);
    expect(Date.parse((await created('born/f.txt', asked))!)).toBe(Math.floor(info.created! / 1000) * 1000);
    await s.setMtime(ref, Date.UTC(2001, 0, 1));
    expect((await dav('PUT', 'born/f.txt', 'ann', { body: 'two' })).status).toBe(204);
    expect((await s.stat(ref)).created).toBe(info.created);
  });

  it('shows the live value once where an older Stowage kept a dead copy of the name', async () => {
    expect((await dav('PUT', 'born-old.txt', 'ann', { body: 'x' })).status).toBe(201);
    const s = await env.provider.as('ann');
    const ref = { space: base.slice('/dav/spaces/'.length), path: 'born-old.txt' };
    await s.setMetadata(ref, { '{DAV:}creationdate': '1999-01-01T00:00:00Z' });
    const live = await created('born-old.txt', asked);
    expect(live).not.toBe('1999-01-01T00:00:00Z');
    const text = await (
      await dav('PROPFIND', 'born-old.txt', 'ann', { headers: { depth: '0' }, body: all })
    ).text();
    expect(text.match(/<d:creationdate>/g)).toHaveLength(1);
    expect(text).not.toContain('1999');
    const names = await (
      await dav('PROPFIND', 'born-old.txt', 'ann', {
        headers: { depth: '0' },
        body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
      })
    ).text();
    expect(names.match(/creationdate/g)).toHaveLength(1);
  });

  it('is protected: a PROPPATCH of it is refused with 403 and changes nothing', async () => {
    expect((await dav('PUT', 'born-p.txt', 'ann', { body: 'x' })).status).toBe(201);
    const before = await created('born-p.txt', asked);
    const r = await dav('PROPPATCH', 'born-p.txt', 'ann', {
      body: '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><d:creationdate>1999-01-01T00:00:00Z</d:creationdate><x:note>n</x:note></d:prop></d:set></d:propertyupdate>',
    });
    expect(r.status).toBe(207);
    const text = await r.text();
    expect(text).toMatch(
      /<d:creationdate\/><\/d:prop><d:status>HTTP\/1.1 403 Forbidden<\/d:status><d:error><d:cannot-modify-protected-property\/>/,
    );
    expect(text).toContain('424 Failed Dependency');
    expect(await created('born-p.txt', asked)).toBe(before);
    const note = await dav('PROPFIND', 'born-p.txt', 'ann', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:note/></d:prop></d:propfind>',
    });
    expect(await note.text()).toContain('404 Not Found');
  });
});
