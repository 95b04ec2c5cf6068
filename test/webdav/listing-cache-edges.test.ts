/**
 * Kept listings at their edges: cases where a kept listing could differ from one made anew.
 * Two servers on one provider (one keeps listings, one does not); each scenario warms the kept
 * listing, makes a change, and compares.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cs3Server, serveCs3 } from '../../src/cs3/serve.js';
import { formatResourceId, fromLetters, ROLES, StorageProvider } from '../../src/index.js';
import { type DavEnv, type KeptAndPlain, startKeptAndPlain } from './server.js';

let pair: KeptAndPlain;
let env: DavEnv;
let plain: Cs3Server;
let space: string;
let dir: string;

beforeAll(async () => {
  pair = await startKeptAndPlain('Edges');
  ({ env, plain, space, dir } = pair);
});
afterAll(() => pair?.close());

const PROPS =
  '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x" xmlns:st="urn:stowage"><d:prop>' +
  '<d:getetag/><d:getcontentlength/><oc:fileid/><oc:permissions/><oc:size/><oc:checksums/><x:tag/><st:path/></d:prop></d:propfind>';

const settled = async () => {
  await new Promise((r) => setTimeout(r, 300));
  await env.observer!.idle();
};

async function pf(base: string, url: string, user = 'ann'): Promise<string> {
  const r = await fetch(base + url, {
    method: 'PROPFIND',
    headers: { authorization: env.basic(user), depth: '1' },
    body: PROPS,
  });
  return `${r.status} ${await r.text()}`;
}

/** Kept (asked twice: the second from the kept listing, if any) against made anew. */
async function same(url: string, user = 'ann'): Promise<void> {
  await pf(env.url, url, user);
  const kept = await pf(env.url, url, user);
  const fresh = await pf(`http://${plain.httpAddress}`, url, user);
  expect(kept).toBe(fresh);
}

/** List a folder twice on the keeping server (the second answer from the kept listing, if kept). */
async function warm(url: string, user = 'ann'): Promise<void> {
  await pf(env.url, url, user);
  await pf(env.url, url, user);
}

/** `a/x.txt` and its hard link `b/y.txt`; the listing of `b/` checked and warmed. Returns `b/`'s URL. */
async function hardLinked(a: string, b: string): Promise<string> {
  const ann = await env.provider.as('ann');
  await ann.mkdir({ space, path: a });
  await ann.mkdir({ space, path: b });
  await ann.write({ space, path: `${a}/x.txt` }, Buffer.from('one'));
  fs.linkSync(path.join(dir, `${a}/x.txt`), path.join(dir, `${b}/y.txt`));
  await settled();
  const url = `/dav/spaces/${space}/${b}/`;
  await same(url);
  await warm(url);
  return url;
}

describe('kept listings at their edges', () => {
  it("a hard link changed around Stowage: the other name's folder", async () => {
    const url = await hardLinked('h1', 'h2');
    fs.appendFileSync(path.join(dir, 'h1/x.txt'), ' and more');
    await settled();
    await same(url);
  });

  it("a hard-linked file given a dead property through Stowage: the other name's folder", async () => {
    const url = await hardLinked('k1', 'k2');
    const ann = await env.provider.as('ann');
    // The record (xattrs) is the inode's: both names get it; the event says /k1/x.txt.
    await ann.setMetadata({ space, path: 'k1/x.txt' }, { '{urn:x}tag': 'linked' });
    await settled();
    await same(url);
  });

  it('a folder replaced by a file (MOVE overwrite), then restored elsewhere: its subfolder by id', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space, path: 'p/s' }, { parents: true });
    await ann.write({ space, path: 'p/s/f.txt' }, Buffer.from('f'));
    await ann.write({ space, path: 'file.txt' }, Buffer.from('file'));
    const s = await ann.stat({ space, path: 'p/s' });
    const p = await ann.stat({ space, path: 'p' });
    const url = `/dav/spaces/${formatResourceId(s.id)}/`;
    await same(url);
    await warm(url);
    // A file moved over the folder: the event is kind 'file' at /p (nothing below it dropped).
    const r = await fetch(`${env.url}/dav/spaces/${space}/file.txt`, {
      method: 'MOVE',
      headers: {
        authorization: env.basic('ann'),
        destination: `/dav/spaces/${space}/p`,
        overwrite: 'T',
      },
    });
    expect(r.status).toBeLessThan(300);
    await settled();
    // The folder comes back from the trash, elsewhere.
    await ann.restoreTrash(space, p.id.opaqueId, { target: { space, path: 'q' } });
    await settled();
    await same(url);
  });

  it('a folder reached by id moved between the stat and the start of its listing', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space, path: 'r1/n' }, { parents: true });
    await ann.write({ space, path: 'r1/n/f.txt' }, Buffer.from('f'));
    const n = await ann.stat({ space, path: 'r1/n' });
    const url = `/dav/spaces/${formatResourceId(n.id)}/`;
    const body =
      '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><d:getetag/><x:tag/><d:quota-used-bytes/></d:prop></d:propfind>';
    // The window: getQuota runs after the stat and before the listing is begun (a move of the
    // folder there is announced before the fill exists, and the fill takes the stat's path).
    const orig = StorageProvider.prototype.getQuota;
    let once = true;
    StorageProvider.prototype.getQuota = async function (this: StorageProvider, ref) {
      if (once) {
        once = false;
        await ann.move({ space, path: 'r1/n' }, { space, path: 'r2' });
      }
      return orig.call(this, ref);
    };
    const ask = async (base: string) => {
      const r = await fetch(base + url, {
        method: 'PROPFIND',
        headers: { authorization: env.basic('ann'), depth: '1' },
        body,
      });
      return `${r.status} ${await r.text()}`;
    };
    try {
      await ask(env.url); // kept under r1/n, though the folder is at r2 now
    } finally {
      StorageProvider.prototype.getQuota = orig;
    }
    // A dead property of a file in it: announced at /r2/f.txt.
    await ann.setMetadata({ space, path: 'r2/f.txt' }, { '{urn:x}tag': 'new' });
    await settled();
    expect(await ask(env.url)).toBe(await ask(`http://${plain.httpAddress}`));
  });
});

describe('kept listings and another Stowage process (no shared events)', () => {
  it('a grant it changes on the space root: the listings in the space, kept with their children marked, go', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space, path: 'g1/sub' }, { parents: true });
    await ann.write({ space, path: 'g1/sub/f.txt' }, Buffer.from('f'));
    await ann.write({ space, path: 'g1/sub/e.txt' }, Buffer.from('e'));
    await settled();
    const url = `/dav/spaces/${space}/g1/sub/`;
    await same(url, 'bob');
    await warm(url, 'bob');
    // A change below the kept listing (its child marked), and then bob's grant on the root made
    // smaller by another process: the root keeps its inode, so the observer sees it "in place";
    // the space's grants version says what happened.
    await ann.write({ space, path: 'g1/sub/f.txt' }, Buffer.from('changed'));
    const { createPosixDriver } = await import('../../src/drivers/posix/index.js');
    const other = new StorageProvider({
      drivers: await createPosixDriver({ root: path.join(env.root, 'data') }),
    });
    const bob = (role: 'viewer' | 'editor') => ({
      grantee: { type: 'user' as const, id: 'u-bob' },
      permissions: fromLetters(ROLES[role]),
    });
    try {
      await other.setGrant({ space, path: '' }, bob('viewer'));
      await settled();
      const after = await pf(env.url, url, 'bob');
      expect(after).toBe(await pf(`http://${plain.httpAddress}`, url, 'bob'));
      expect(after).not.toMatch(/<oc:permissions>[^<]*W/);
    } finally {
      await other.setGrant({ space, path: '' }, bob('editor'));
      await other.close();
      await settled();
    }
  });
});

/**
 * The same without an observer: the other configuration the option allows ("nothing writes
 * around Stowage"), where events alone tell what changed.
 */
describe('kept listings at their edges, events only (no observer)', () => {
  let provider: StorageProvider;
  let keeping: Cs3Server;
  let fresh: Cs3Server;
  let sp: string;
  const basic = (u: string) => `Basic ${Buffer.from(`${u}:pw-${u}`).toString('base64')}`;
  beforeAll(async () => {
    const { createPosixDriver } = await import('../../src/drivers/posix/index.js');
    const { StaticIdentitySource } = await import('../../src/index.js');
    const { tempRoot } = await import('../helpers/tmp.js');
    const root = await tempRoot('dav-noobs');
    const identity = await StaticIdentitySource.create({
      users: [{ id: 'u-ann', username: 'ann', password: 'pw-ann', createSpaces: true }],
    });
    provider = new StorageProvider({
      drivers: await createPosixDriver({ root: path.join(root, 'data') }),
      identity,
    });
    const mk = (listingCache: boolean, n: string) =>
      serveCs3({
        provider,
        jwtSecret: 'x',
        grpc: false,
        http: '127.0.0.1:0',
        uploadsDir: path.join(root, `up-${n}`),
        webdav: { uploadsDir: path.join(root, `ch-${n}`), listingCache },
      });
    keeping = await mk(true, 'k');
    fresh = await mk(false, 'f');
    sp = (await (await provider.as('ann')).createSpace({ type: 'project', name: 'NoObs' })).id;
  });
  afterAll(async () => {
    await keeping?.close();
    await fresh?.close();
    await provider?.close();
  });
  const ask = async (server: Cs3Server, url: string, body = PROPS) => {
    const r = await fetch(`http://${server.httpAddress}${url}`, {
      method: 'PROPFIND',
      headers: { authorization: basic('ann'), depth: '1' },
      body,
    });
    return `${r.status} ${await r.text()}`;
  };

  it('a folder replaced by a file (MOVE overwrite), then restored elsewhere: its subfolder by id', async () => {
    const ann = await provider.as('ann');
    await ann.mkdir({ space: sp, path: 'p/s' }, { parents: true });
    await ann.write({ space: sp, path: 'p/s/f.txt' }, Buffer.from('f'));
    await ann.write({ space: sp, path: 'file.txt' }, Buffer.from('file'));
    const s = await ann.stat({ space: sp, path: 'p/s' });
    const p = await ann.stat({ space: sp, path: 'p' });
    const url = `/dav/spaces/${formatResourceId(s.id)}/`;
    await ask(keeping, url);
    await ask(keeping, url); // kept, under p/s
    // A file moved over the folder: the event is kind 'file' at /p, so nothing below /p is dropped.
    await ann.move({ space: sp, path: 'file.txt' }, { space: sp, path: 'p' }, { overwrite: true });
    // The folder comes back from the trash, elsewhere (announced at /q only).
    await ann.restoreTrash(sp, p.id.opaqueId, { target: { space: sp, path: 'q' } });
    expect(await ask(keeping, url)).toBe(await ask(fresh, url));
  });

  it('a folder reached by id moved between the stat and the start of its listing', async () => {
    const ann = await provider.as('ann');
    await ann.mkdir({ space: sp, path: 'r1/n' }, { parents: true });
    await ann.write({ space: sp, path: 'r1/n/f.txt' }, Buffer.from('f'));
    const n = await ann.stat({ space: sp, path: 'r1/n' });
    const url = `/dav/spaces/${formatResourceId(n.id)}/`;
    const body =
      '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><d:getetag/><x:tag/><d:quota-used-bytes/></d:prop></d:propfind>';
    // getQuota runs after the stat and before the fill is begun: a move announced there is not
    // seen by the fill, which takes the stat's (old) path.
    const orig = StorageProvider.prototype.getQuota;
    let once = true;
    StorageProvider.prototype.getQuota = async function (this: StorageProvider, ref) {
      if (once) {
        once = false;
        await ann.move({ space: sp, path: 'r1/n' }, { space: sp, path: 'r2' });
      }
      return orig.call(this, ref);
    };
    try {
      await ask(keeping, url, body); // kept under r1/n, though the folder is at r2 now
    } finally {
      StorageProvider.prototype.getQuota = orig;
    }
    await ann.setMetadata({ space: sp, path: 'r2/f.txt' }, { '{urn:x}tag': 'new' }); // at /r2/f.txt
    expect(await ask(keeping, url, body)).toBe(await ask(fresh, url, body));
  });
});
