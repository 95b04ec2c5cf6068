/**
 * Rendered listings kept by the WebDAV door (as `stowage serve` runs it: observer on): every way a
 * listing can change must show in the next PROPFIND, whatever made the change.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { EventBus, fromLetters, ROLES, StorageProvider } from '../../src/index.js';
import { ListingCache } from '../../src/webdav/listing-cache.js';
import { type DavEnv, sharedProject, startDav } from './server.js';

let env: DavEnv;
let projectId: string;

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
  ]);
  projectId = await sharedProject(env, 'ann', 'Cached lab', 'u-bob', 'viewer');
});
afterAll(() => env?.close());

const PROPS =
  '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>' +
  '<d:getetag/><oc:fileid/><oc:permissions/><d:getcontentlength/><oc:size/><oc:checksums/></d:prop></d:propfind>';

async function propfind(url: string, user: string, body = PROPS): Promise<string> {
  const r = await fetch(env.url + url, {
    method: 'PROPFIND',
    headers: { authorization: env.basic(user), depth: '1' },
    body,
  });
  expect(r.status).toBe(207);
  return r.text();
}

async function put(url: string, user: string, body: string): Promise<void> {
  // Its folder first (405 when it is there already).
  const folder = url.slice(0, url.lastIndexOf('/') + 1);
  const mk = await fetch(env.url + folder, { method: 'MKCOL', headers: { authorization: env.basic(user) } });
  expect([201, 405]).toContain(mk.status);
  const r = await fetch(env.url + url, { method: 'PUT', headers: { authorization: env.basic(user) }, body });
  expect(r.status).toBeLessThan(300);
}

const stats = () => env.server.webdav!.listingCacheStats()!;
/** A kept listing's parts as text. */
const text = (parts: readonly Buffer[] | undefined) => (parts ? Buffer.concat(parts).toString() : undefined);
/** Names listed in a multistatus: the folder itself (''), then its children in order of name. */
const names = (xml: string) => {
  const [self, ...rest] = [...xml.matchAll(/<d:href>([^<]*)<\/d:href>/g)].map((m) =>
    decodeURIComponent(m[1]!).split('/').at(-1),
  );
  return [self, ...rest.sort()];
};

/** Files written since Stowage looked have settled and were assimilated, or found unchanged. */
const settled = async () => {
  await new Promise((r) => setTimeout(r, 250));
  await env.observer!.idle();
};

describe('webdav: kept listings', () => {
  it('answers a settled folder again from the kept listing, byte for byte', async () => {
    for (const n of ['a.txt', 'b.txt', 'c.txt']) await put(`/remote.php/webdav/keep/${n}`, 'ann', n);
    await settled();
    const first = await propfind('/remote.php/webdav/keep/', 'ann');
    const before = stats();
    const second = await propfind('/remote.php/webdav/keep/', 'ann');
    expect(stats().hits).toBe(before.hits + 1);
    expect(second).toBe(first);
    expect(names(second)).toEqual(['', 'a.txt', 'b.txt', 'c.txt']);
  });

  it('keeps a folder listing while other folders of its space take writes, through WebDAV and around Stowage', async () => {
    await put('/remote.php/webdav/quiet/q.txt', 'ann', 'q');
    await put('/remote.php/webdav/busy/b0.txt', 'ann', 'b0');
    await settled();
    const quiet = await propfind('/remote.php/webdav/quiet/', 'ann');
    const ann = await env.provider.as('ann');
    const dir = await env.driver.spacePath((await ann.personalSpace()).id);
    for (let i = 1; i <= 3; i++) {
      await put(`/remote.php/webdav/busy/b${i}.txt`, 'ann', `b${i}`);
      fs.writeFileSync(path.join(dir, 'busy', `around-${i}.txt`), 'written around');
      await settled(); // the observer has seen both (its own write and the one around it)
      const before = stats();
      expect(await propfind('/remote.php/webdav/quiet/', 'ann')).toBe(quiet);
      expect(stats().hits).toBe(before.hits + 1);
      // The busy folder shows each change, and so does the root (its size moved).
      expect(names(await propfind('/remote.php/webdav/busy/', 'ann'))).toContain(`around-${i}.txt`);
    }
    // A change in the quiet folder is seen at once.
    await put('/remote.php/webdav/quiet/q2.txt', 'ann', 'q2');
    expect(names(await propfind('/remote.php/webdav/quiet/', 'ann'))).toEqual(['', 'q.txt', 'q2.txt']);
  });

  it('keeps a folder listing while other folders of its space are moved and removed through Stowage', async () => {
    await put('/remote.php/webdav/still/s.txt', 'ann', 's');
    await put('/remote.php/webdav/mover/m.txt', 'ann', 'm');
    await settled();
    const still = await propfind('/remote.php/webdav/still/', 'ann');
    const dav = (method: string, url: string, headers: Record<string, string> = {}) =>
      fetch(env.url + url, { method, headers: { authorization: env.basic('ann'), ...headers } });
    // (each bumps the space's grants version, which the observer sees; the events say where)
    expect(
      (await dav('MOVE', '/remote.php/webdav/mover/', { destination: `${env.url}/remote.php/webdav/moved/` }))
        .status,
    ).toBe(201);
    expect((await dav('DELETE', '/remote.php/webdav/moved/')).status).toBe(204);
    await settled();
    const before = stats();
    expect(await propfind('/remote.php/webdav/still/', 'ann')).toBe(still);
    expect(stats().hits).toBe(before.hits + 1);
  });

  it('patches the listing of a folder a client just wrote to, and those above it, one child each', async () => {
    await put('/remote.php/webdav/sync/top.txt', 'ann', 'top');
    for (const n of ['a.txt', 'b.txt', 'c.txt']) await put(`/remote.php/webdav/sync/in/${n}`, 'ann', n);
    await settled();
    const warm = async (url: string) => {
      await propfind(url, 'ann');
      return propfind(url, 'ann');
    };
    const inner = await warm('/remote.php/webdav/sync/in/');
    const outer = await warm('/remote.php/webdav/sync/');
    // Written, replaced and removed: through WebDAV, then around Stowage.
    await put('/remote.php/webdav/sync/in/d.txt', 'ann', 'new one');
    await put('/remote.php/webdav/sync/in/a.txt', 'ann', 'a, longer now');
    const del = await fetch(`${env.url}/remote.php/webdav/sync/in/b.txt`, {
      method: 'DELETE',
      headers: { authorization: env.basic('ann') },
    });
    expect(del.status).toBe(204);
    const ann = await env.provider.as('ann');
    const dir = await env.driver.spacePath((await ann.personalSpace()).id);
    fs.writeFileSync(path.join(dir, 'sync/in/e.txt'), 'written around');
    await settled();
    const before = stats();
    const now = await propfind('/remote.php/webdav/sync/in/', 'ann');
    const above = await propfind('/remote.php/webdav/sync/', 'ann');
    expect(stats()).toMatchObject({ hits: before.hits + 2, patched: before.patched + 2 });
    expect(names(now)).toEqual(['', 'a.txt', 'c.txt', 'd.txt', 'e.txt']);
    expect(now).toContain('<d:getcontentlength>13</d:getcontentlength>'); // a.txt
    expect(now).toContain('<d:getcontentlength>14</d:getcontentlength>'); // e.txt, with an id
    expect(now).not.toBe(inner);
    expect(above).not.toBe(outer); // the size and etag of in/
    // Once patched, kept as it is.
    expect(await propfind('/remote.php/webdav/sync/in/', 'ann')).toBe(now);
    expect(stats().patched).toBe(before.patched + 2);
  });

  it('shows a WebDAV upload, an API change and a deletion at once', async () => {
    await put('/remote.php/webdav/doors/one.txt', 'ann', 'one');
    await settled();
    await propfind('/remote.php/webdav/doors/', 'ann');
    await put('/remote.php/webdav/doors/two.txt', 'ann', 'two');
    expect(names(await propfind('/remote.php/webdav/doors/', 'ann'))).toEqual(['', 'one.txt', 'two.txt']);

    const ann = await env.provider.as('ann');
    const home = await ann.personalSpace();
    await ann.write({ space: home.id, path: 'doors/one.txt' }, Buffer.from('longer now'));
    expect(await propfind('/remote.php/webdav/doors/', 'ann')).toContain(
      '<d:getcontentlength>10</d:getcontentlength>',
    );
    // A dead property set through the API shows in allprop.
    await ann.setMetadata({ space: home.id, path: 'doors/two.txt' }, { '{urn:x}colour': 'red' });
    const all = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>';
    expect(await propfind('/remote.php/webdav/doors/', 'ann', all)).toContain('red');
    await ann.delete({ space: home.id, path: 'doors/one.txt' });
    expect(names(await propfind('/remote.php/webdav/doors/', 'ann'))).toEqual(['', 'two.txt']);
  });

  it('shows files written around Stowage once the observer has them', async () => {
    await put('/remote.php/webdav/around/kept.txt', 'ann', 'kept');
    await settled();
    await propfind('/remote.php/webdav/around/', 'ann');
    const home = await (await env.provider.as('ann')).personalSpace();
    const dir = path.join(await env.driver.spacePath(home.id), 'around');
    fs.writeFileSync(path.join(dir, 'scanned.dat'), 'from the microscope');
    fs.appendFileSync(path.join(dir, 'kept.txt'), ' and more');
    await settled();
    const xml = await propfind('/remote.php/webdav/around/', 'ann');
    expect(names(xml)).toEqual(['', 'kept.txt', 'scanned.dat']);
    expect(xml).toContain('<d:getcontentlength>13</d:getcontentlength>'); // "kept and more"
    expect(xml).toContain('<d:getcontentlength>19</d:getcontentlength>');
  });

  it('shows changes another Stowage process made whole (no event reaches this one)', async () => {
    await put('/remote.php/webdav/other/x.txt', 'ann', 'x');
    const home = (await (await env.provider.as('ann')).personalSpace()).id;
    const at = { space: home, path: 'other/x.txt' };
    const all = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>';
    // Another provider on the same tree, with its own events: as another process would be.
    const other = new StorageProvider({ drivers: await createPosixDriver({ root: env.driver.root }) });
    try {
      const listed = async () => {
        await settled();
        await propfind('/remote.php/webdav/other/', 'ann', all); // kept from here
        expect(await propfind('/remote.php/webdav/other/', 'ann', all)).toBeDefined();
      };
      await listed();
      await other.setMetadata(at, { '{urn:x}seen-by': 'the other one' });
      await settled();
      expect(await propfind('/remote.php/webdav/other/', 'ann', all)).toContain('the other one');
      // A value too big for the inode lives in a sidecar; changing it must still show.
      await other.setMetadata(at, { '{urn:x}long': 'a'.repeat(4000) });
      await listed();
      await other.setMetadata(at, { '{urn:x}long': 'b'.repeat(4000) });
      await settled();
      expect(await propfind('/remote.php/webdav/other/', 'ann', all)).toContain('b'.repeat(4000));
    } finally {
      await other.close();
    }
  });

  it('shows grants another process changed on a space root', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space: projectId, path: 'r' });
    await ann.write({ space: projectId, path: 'r/f.txt' }, Buffer.from('f'));
    await settled();
    const url = `/dav/spaces/${projectId}/r/`;
    const perms = (xml: string) => [...xml.matchAll(/<oc:permissions>([^<]*)</g)].map((m) => m[1]);
    const before = perms(await propfind(url, 'bob'));
    expect(before[1]).not.toContain('W'); // a viewer
    expect(perms(await propfind(url, 'bob'))).toEqual(before); // kept
    const other = new StorageProvider({ drivers: await createPosixDriver({ root: env.driver.root }) });
    try {
      await other.setGrant(
        { space: projectId, path: '' },
        { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.editor) },
      );
    } finally {
      await other.close();
    }
    await settled();
    expect(perms(await propfind(url, 'bob'))[1]).toContain('W');
  });

  it('keeps one listing per user, and follows grant changes and expiries', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space: projectId, path: 'g' });
    for (const n of ['open.txt', 'secret.txt'])
      await ann.write({ space: projectId, path: `g/${n}` }, Buffer.from(n));
    await settled();
    const url = `/dav/spaces/${projectId}/g/`;
    const annXml = await propfind(url, 'ann');
    const bobXml = await propfind(url, 'bob');
    expect(annXml).not.toBe(bobXml); // permissions differ
    expect(await propfind(url, 'bob')).toBe(bobXml);

    const expires = Date.now() + 4000; // time enough for the steps below on a slow machine
    await ann.setGrant(
      { space: projectId, path: 'g/secret.txt' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.viewer), deny: true, expires },
    );
    expect(names(await propfind(url, 'bob'))).toEqual(['', 'open.txt']);
    await settled(); // the observer saw the grant's xattr change too
    expect(names(await propfind(url, 'bob'))).toEqual(['', 'open.txt']);
    const before = stats();
    expect(names(await propfind(url, 'bob'))).toEqual(['', 'open.txt']); // kept, until the deny expires
    expect(stats().hits).toBe(before.hits + 1);
    await new Promise((r) => setTimeout(r, expires - Date.now() + 50));
    expect(names(await propfind(url, 'bob'))).toEqual(['', 'open.txt', 'secret.txt']);
  });

  it('does not keep a listing that shows a lock (its timeout counts down)', async () => {
    await put('/remote.php/webdav/locked/l.txt', 'ann', 'l');
    const lock = await fetch(`${env.url}/remote.php/webdav/locked/l.txt`, {
      method: 'LOCK',
      headers: { authorization: env.basic('ann'), timeout: 'Second-600' },
      body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>',
    });
    expect(lock.status).toBe(200);
    await settled();
    const all = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>';
    await propfind('/remote.php/webdav/locked/', 'ann', all);
    const before = stats();
    expect(await propfind('/remote.php/webdav/locked/', 'ann', all)).toContain('<d:timeout>Second-');
    expect(stats().hits).toBe(before.hits);
  });
});

describe('ListingCache', () => {
  const event = (spaceId: string) => ({ type: 'updated', origin: 'api', storageId: 's', spaceId }) as const;
  const fill = (c: ListingCache, key: string, space = 'p', text = 'x') => {
    const f = c.begin(key, 's', space, 'etag-1');
    c.add(f, Buffer.from(text));
    return f;
  };

  it('does not keep a listing whose space changed while it was made, nor one older than a change', () => {
    const bus = new EventBus();
    const c = new ListingCache(bus);
    const f = fill(c, 'k');
    bus.emit(event('p'));
    c.done(f, Number.POSITIVE_INFINITY);
    expect(c.get('k', 'etag-1')).toBeUndefined();

    const g = fill(c, 'k');
    bus.emit(event('other space'));
    c.done(g, Number.POSITIVE_INFINITY);
    expect(text(c.get('k', 'etag-1')?.body)).toBe('x');
    expect(c.get('k', 'etag-2')).toBeUndefined(); // the folder's etag moved
    c.close();
  });

  it('drops a space on staleness, everything when events were lost, and the oldest when full', () => {
    const bus = new EventBus();
    const c = new ListingCache(bus, { maxBytes: 4 * 1000, maxEntries: 3 });
    c.done(fill(c, 'a', 'p'), Number.POSITIVE_INFINITY);
    c.done(fill(c, 'b', 'q'), Number.POSITIVE_INFINITY);
    bus.stale('s', 'p');
    expect(c.get('a', 'etag-1')).toBeUndefined();
    expect(c.get('b', 'etag-1')).toBeDefined();
    bus.stale('s');
    expect(c.get('b', 'etag-1')).toBeUndefined();

    // Each entry is charged its bytes, its key and an overhead: 900 + 2 + 512.
    for (const k of ['1', '2', '3', '4', '5'])
      c.done(fill(c, k, 'p', 'y'.repeat(900)), Number.POSITIVE_INFINITY);
    expect(c.stats()).toMatchObject({ entries: 2, bytes: 2 * 1414 });
    expect(c.get('3', 'etag-1')).toBeUndefined();
    expect(c.get('5', 'etag-1')).toBeDefined();
    // Empty listings cost their overhead too, and no more than maxEntries are kept.
    for (const k of ['e1', 'e2', 'e3', 'e4'])
      c.done(c.begin(k, 's', 'p', 'etag-1'), Number.POSITIVE_INFINITY);
    expect(c.stats().entries).toBe(3);
    // Too big a listing (over a quarter of the budget) is not kept at all.
    c.done(fill(c, 'big', 'p', 'z'.repeat(1001)), Number.POSITIVE_INFINITY);
    expect(c.get('big', 'etag-1')).toBeUndefined();
    c.close();
  });

  it('bounds the listings being made, and keeps exact copies of pooled buffers', () => {
    const c = new ListingCache(new EventBus(), { maxBytes: 4 * 1000 });
    const many = ['1', '2', '3', '4', '5'].map((k) => fill(c, k, 'p', 'w'.repeat(900)));
    expect(many.map((f) => f.chunks !== undefined)).toEqual([true, true, true, true, false]);
    for (const f of many) c.done(f); // failed requests: their bytes are released
    const f = c.begin('pooled', 's', 'p', 'etag-1');
    const pooled = Buffer.from('small'); // a slice of Node's shared pool
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length);
    c.add(f, pooled);
    expect(f.chunks![0]!.buffer.byteLength).toBe(5);
    c.done(f, Number.POSITIVE_INFINITY);
    expect(text(c.get('pooled', 'etag-1')?.body)).toBe('small');
    c.close();
  });

  it('drops the listings at, above and below a change (when it cannot patch them), and keeps those elsewhere in the space', () => {
    const bus = new EventBus();
    const c = new ListingCache(bus);
    const keep = (key: string, path: string | undefined, space = 'p') => {
      const f = c.begin(key, 's', space, 'etag-1', path);
      c.add(f, Buffer.from(key));
      c.done(f, Number.POSITIVE_INFINITY);
    };
    const all = () => {
      keep('root', '/');
      keep('a', '/a');
      keep('ab', '/a/b');
      keep('abc', '/a/b/c');
      keep('ax', '/a-x'); // a sibling whose name starts like "a"
      keep('d', '/d');
      keep('share', undefined); // reached without a path
      keep('other', '/a', 'q'); // the same path in another space
    };
    const kept = () =>
      ['root', 'a', 'ab', 'abc', 'ax', 'd', 'share', 'other'].filter((k) => c.get(k, 'etag-1') !== undefined);
    const at = (path: string, extra: Partial<Parameters<EventBus['emit']>[0]> = {}) =>
      bus.emit({ ...event('p'), path, kind: 'file', ...extra });

    all();
    at('/a/b/new.txt'); // a file: the folders above it
    expect(kept()).toEqual(['abc', 'ax', 'd', 'other']);

    all();
    at('/a/b', { type: 'trashed', kind: 'folder' }); // a folder: and what was below it
    expect(kept()).toEqual(['ax', 'd', 'other']);

    all();
    at('/d/moved.txt', { type: 'moved', from: { path: '/a/b/c/moved.txt' } }); // both ends
    expect(kept()).toEqual(['ax', 'other']);

    all();
    bus.emit({ ...event('p'), type: 'grant.changed', path: '/d', kind: 'folder' }); // inherited: everything
    expect(kept()).toEqual(['other']);

    all();
    bus.stale('s', 'p', ['a-x/written-around.txt']); // the observer's paths, without a leading slash
    expect(kept()).toEqual(['a', 'ab', 'abc', 'd', 'other']);
    bus.stale('s', 'p'); // no paths: the whole space
    expect(kept()).toEqual(['other']);

    // A listing being made is not kept when something it shows changed meanwhile (and it cannot
    // say which child: it did not tell where each one's response ends); otherwise it is.
    const f1 = c.begin('f1', 's', 'p', 'etag-1', '/a');
    c.add(f1, Buffer.from('f1'));
    const f2 = c.begin('f2', 's', 'p', 'etag-1', '/d');
    const f3 = c.begin('f3', 's', 'p', 'etag-1');
    at('/a/x.txt');
    for (const f of [f1, f2, f3]) c.done(f, Number.POSITIVE_INFINITY);
    expect(['f1', 'f2', 'f3'].filter((k) => c.get(k, 'etag-1'))).toEqual(['f2']);
    c.close();
  });

  it('marks the child on the way to a change in the listings above it, and patches them entry by entry', () => {
    const bus = new EventBus();
    const c = new ListingCache(bus);
    /** A listing of folder `path` with one response per child, each `<name>` (told where it ends). */
    const keep = (key: string, path: string, children: string[], etag = 'etag-1') => {
      const f = c.begin(key, 's', 'p', etag, path);
      for (const name of children) {
        const r = `<${name}>`;
        c.entry(f, name, Buffer.byteLength(r));
        c.add(f, Buffer.from(r));
      }
      c.done(f, Number.POSITIVE_INFINITY);
    };
    const at = (path: string, extra: Partial<Parameters<EventBus['emit']>[0]> = {}) =>
      bus.emit({ ...event('p'), path, kind: 'file', ...extra });
    keep('root', '/', ['a', 'd', 'é']);
    keep('a', '/a', ['b', 'x.txt', 'y.txt']);
    keep('ab', '/a/b', ['c']);

    at('/a/b/new.txt'); // below root, a and a/b: in each listing, the child on the way is marked
    expect(c.get('ab', 'etag-2')?.dirty).toEqual(['new.txt']);
    const root = c.get('root', 'etag-2')!; // the folder's etag moved: expected, with a child marked
    expect(root.dirty).toEqual(['a']);
    expect(c.get('a', 'etag-2')?.dirty).toEqual(['b']);

    // Rendered again: changed in place, gone, and a new child (last); the rest as it was.
    const body = c.patch('root', root, new Map([['a', '<A>']]), 'etag-2', Number.POSITIVE_INFINITY);
    expect(text(body)).toBe('<A><d><é>');
    const clean = c.get('root', 'etag-2')!;
    expect(clean.dirty).toBeUndefined();
    expect(text(clean.body)).toBe('<A><d><é>');
    expect(c.get('root', 'etag-3')).toBeUndefined(); // no child marked: the etag counts again

    keep('a', '/a', ['b', 'x.txt', 'y.txt']);
    at('/a/x.txt', { type: 'trashed' });
    at('/a/z.txt', { type: 'created' });
    const a = c.get('a', 'etag-2')!;
    expect(a.dirty).toEqual(['x.txt', 'z.txt']);
    // A change after the get stays marked in what is kept: the next get renders it again.
    at('/a/y.txt');
    const patched = c.patch(
      'a',
      a,
      new Map([
        ['x.txt', null],
        ['z.txt', '<z.txt>'],
      ]),
      'etag-2',
      Number.POSITIVE_INFINITY,
    );
    expect(text(patched)).toBe('<b><y.txt><z.txt>');
    const again = c.get('a', 'etag-3')!;
    expect(again.dirty).toEqual(['y.txt']);
    expect(text(c.patch('a', again, new Map([['y.txt', '<Y>']]), 'etag-3', 0))).toBe('<b><Y><z.txt>');
    expect(c.get('a', 'etag-3')).toBeUndefined(); // kept until 0: a grant a new child showed under expired

    // Too many children marked (more than 64, and an eighth of the listing): the listing goes.
    keep(
      'big',
      '/big',
      Array.from({ length: 100 }, (_, i) => `f${i}`),
    );
    for (let i = 0; i < 64; i++) at(`/big/f${i}`);
    expect(c.get('big', 'etag-1')?.dirty).toHaveLength(64);
    at('/big/f64');
    expect(c.get('big', 'etag-1')).toBeUndefined();

    // The observer's paths: a folder still in place (only its own attributes changed) keeps its
    // listing and what is below it; it is marked in the listing above it.
    keep('root', '/', ['a', 'd']);
    keep('a', '/a', ['b']);
    keep('ab', '/a/b', ['c']);
    bus.stale('s', 'p', ['a/b', 'a'], ['a/b', 'a']);
    expect(c.get('ab', 'etag-1')?.dirty).toBeUndefined();
    expect(c.get('a', 'etag-1')?.dirty).toEqual(['b']);
    expect(c.get('root', 'etag-1')?.dirty).toEqual(['a']);
    bus.stale('s', 'p', ['a/b']); // not in place (replaced, moved): its listing goes
    expect(c.get('ab', 'etag-1')).toBeUndefined();
    c.close();
  });

  it('shares the unchanged runs of a patched listing with the one it was patched from, and copies it when the parts get too many', () => {
    const bus = new EventBus();
    const c = new ListingCache(bus);
    const f = c.begin('big', 's', 'p', 'etag-1', '/big');
    const names = Array.from({ length: 4000 }, (_, i) => `f${String(i).padStart(4, '0')}`);
    // Responses of 100 bytes, added in parts of 64 KiB as the door does.
    const all = Buffer.concat(names.map((n) => Buffer.from(`<${n}>`.padEnd(100, '.'))));
    for (const n of names) c.entry(f, n, 100);
    for (let i = 0; i < all.length; i += 65_536) c.add(f, all.subarray(i, i + 65_536));
    c.done(f, Number.POSITIVE_INFINITY);
    const first = c.get('big', 'etag-1')!.body;
    const held = c.stats().bytes;
    // Readers of the listing before and after a change hold the same memory for what did not change.
    bus.emit({ ...event('p'), path: '/big/f2000', kind: 'file' });
    const kept = c.get('big', 'etag-2')!;
    const patched = c.patch('big', kept, new Map([['f2000', '<F2000>']]), 'etag-2', Number.POSITIVE_INFINITY);
    const expected = all.toString().replace(/<f2000>\.{93}/, '<F2000>');
    expect(text(patched)).toBe(expected);
    const under = new Set(first.map((p) => p.buffer));
    expect(patched.filter((p) => !under.has(p.buffer)).map((p) => p.toString())).toEqual(['<F2000>']);
    expect(c.stats().bytes - held).toBeLessThan(100); // the new response (in a buffer of its own) and its name
    // Many patches later the parts are copied into fresh ones (at most 1,024 parts kept).
    let body = patched;
    for (let i = 0; i < 600; i++) {
      const name = names[(i * 7) % 4000]!;
      bus.emit({ ...event('p'), path: `/big/${name}`, kind: 'file' });
      body = c.patch(
        'big',
        c.get('big', 'etag-2')!,
        new Map([[name, `<${name}!>`]]),
        'etag-2',
        Number.POSITIVE_INFINITY,
      );
      expect(body.length).toBeLessThanOrEqual(1024);
    }
    const now = text(body)!;
    expect(now).toContain('<f0007!>');
    expect(now).not.toContain('<f0007>');
    expect(now.length).toBe(4000 * 100 - 600 * 92 - 93); // each one rendered again is shorter
    expect(body.some((p) => under.has(p.buffer))).toBe(false);
    c.close();
  });

  it('stops using a listing when a grant it depended on expires', async () => {
    const c = new ListingCache(new EventBus());
    c.done(fill(c, 'k'), Date.now() + 30);
    expect(c.get('k', 'etag-1')).toBeDefined();
    await new Promise((r) => setTimeout(r, 40));
    expect(c.get('k', 'etag-1')).toBeUndefined();
  });
});
