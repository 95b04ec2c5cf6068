/**
 * A search with a small `oc:limit` holds its results until it has counted every match (to send
 * `Content-Range: rows 0-N/total`). Holding must not outlast what sits between it and its client
 * (the server's idle timeout, a proxy's wait for a first byte), and a client gone early must not
 * leave a walk running for nobody. The provider is slowed (or its clock moved) here to show both.
 */
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StorageProvider } from '../../src/index.js';
import { type DavEnv, davFetch, startDav } from './server.js';

let env: DavEnv;
const body = (pattern: string, limit: number) =>
  `<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:getetag/></d:prop><oc:search><oc:pattern>${pattern}</oc:pattern><oc:limit>${limit}</oc:limit></oc:search></oc:search-files>`;
const hrefs = (text: string) => (text.match(/<d:href>[^<]*hit[^<]*<\/d:href>/g) ?? []).length;

// Sessions keep the methods they were made with: the provider is wrapped before any exists.
const { list, stat } = StorageProvider.prototype;
/** Listings begun; what each costs of the server's clock (ms); how long the next stat waits. */
let listings = 0;
let listCost = 0;
let statDelay = 0;
let offset = 0;
const realNow = Date.now;

beforeAll(async () => {
  StorageProvider.prototype.list = function (this: StorageProvider, ...a: Parameters<typeof list>) {
    listings++;
    offset += listCost;
    return list.apply(this, a);
  };
  StorageProvider.prototype.stat = async function (this: StorageProvider, ...a: Parameters<typeof stat>) {
    // (the first stat after statDelay is set waits, once)
    const wait = statDelay;
    statDelay = 0;
    if (wait) await new Promise((r) => setTimeout(r, wait));
    return stat.apply(this, a);
  };
  Date.now = () => realNow() + offset;
  env = await startDav([{ id: 'u-bob', username: 'bob' }], { watch: false });
  const bob = await env.provider.as('u-bob');
  const sp = (await bob.personalSpace()).id;
  for (let d = 0; d < 12; d++) {
    await bob.mkdir({ space: sp, path: `d${d}` });
    await bob.write({ space: sp, path: `d${d}/hit${d}.txt` }, 'x');
  }
});
afterAll(async () => {
  await env?.close();
  Object.assign(StorageProvider.prototype, { list, stat });
  Date.now = realNow;
});
afterEach(() => {
  listCost = 0;
  statDelay = 0;
});

describe('webdav: a search that holds its results', () => {
  it('counts them all while it is quick (12 matches, 13 listings)', async () => {
    const r = await davFetch(env, 'REPORT', '/remote.php/webdav/', 'bob', { body: body('name:"hit*"', 3) });
    expect([r.status, r.headers.get('content-range'), hrefs(await r.text())]).toEqual([
      207,
      'rows 0-2/12',
      3,
    ]);
  });

  it('sends what it holds, without a total, once it has held it 5 s, and streams the rest', async () => {
    // Each folder listing takes a second of the server's clock.
    listCost = 1000;
    // Fewer matches than the limit: all of them come, streamed after the first 5 s.
    const all = await davFetch(env, 'REPORT', '/remote.php/webdav/', 'bob', {
      body: body('name:"hit*"', 200),
    });
    expect([all.status, all.headers.get('content-range'), hrefs(await all.text())]).toEqual([207, null, 12]);
    // The limit met before the time is up: the count stops with the holding, and no more is walked.
    const before = listings;
    const three = await davFetch(env, 'REPORT', '/remote.php/webdav/', 'bob', {
      body: body('name:"hit*"', 3),
    });
    expect([three.status, three.headers.get('content-range'), hrefs(await three.text())]).toEqual([
      207,
      null,
      3,
    ]);
    expect(listings - before).toBeLessThan(8);
  });

  it('walks nothing when its client left while it looked up where to search', async () => {
    statDelay = 300;
    const before = listings;
    // (node:http, its connection its own: the client leaves by closing it)
    const req = http.request(`${env.url}/remote.php/webdav/`, {
      method: 'REPORT',
      agent: false,
      headers: { authorization: env.basic('bob') },
    });
    req.on('error', () => {});
    req.end(body('name:"hit*"', 8));
    await new Promise((r) => setTimeout(r, 100));
    req.destroy();
    await new Promise((r) => setTimeout(r, 600));
    expect(listings - before).toBe(0);
  });
});
