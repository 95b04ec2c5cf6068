/**
 * A LOCK of an unmapped URL makes an empty file and locks it (RFC 4918 §7.3). A PUT of the same
 * name landing between the LOCK's look and its empty write was emptied by that write: the PUT had
 * been answered 201, and its content was gone from the file (kept only as a version). The empty
 * file is now made only if nothing is there yet; otherwise the LOCK locks what is there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Body, Driver, NodeRef, WriteOptions } from '../../src/index.js';
import { type DavEnv, davFetch, overriding, startDav } from './server.js';

let env: DavEnv;
/** Set by a test: the next empty write (a LOCK's) waits for it, other writes go through. */
let gate: Promise<void> | undefined;
/** Resolved when an empty write reaches the gate. */
let reached: (() => void) | undefined;

function gated(driver: Driver): Driver {
  const write = (ref: NodeRef, body: Body, opts?: WriteOptions) => {
    const empty = body instanceof Uint8Array && body.length === 0;
    const held = gate;
    if (!empty || !held) return driver.write(ref, body, opts);
    gate = undefined; // (the first one only)
    reached?.();
    return held.then(() => driver.write(ref, body, opts));
  };
  return overriding(driver, { write });
}

beforeAll(async () => {
  env = await startDav([{ id: 'u-lu', username: 'lu' }], { wrap: gated });
});
afterAll(() => env?.close());

const dav = (method: string, p: string, init?: Parameters<typeof davFetch>[4]) =>
  davFetch(env, method, `/remote.php/webdav/${p}`, 'lu', init);
const exclusive =
  '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>t</d:owner></d:lockinfo>';

/** Run a LOCK of `name` whose empty write waits until `meanwhile` is done. */
async function lockAround(name: string, meanwhile: () => Promise<void>): Promise<Response> {
  let open!: () => void;
  gate = new Promise((r) => {
    open = r;
  });
  const atGate = new Promise<void>((r) => {
    reached = r;
  });
  const lock = dav('LOCK', name, { body: exclusive });
  try {
    await atGate;
    await meanwhile();
  } finally {
    gate = undefined;
    open();
  }
  return lock;
}

describe('webdav: LOCK of an unmapped URL racing a PUT', () => {
  it('locks the file the PUT made instead of emptying it', async () => {
    const lock = await lockAround('race.txt', async () => {
      expect((await dav('PUT', 'race.txt', { body: 'acknowledged content' })).status).toBe(201);
    });
    expect(lock.status, await lock.clone().text()).toBe(200);
    const token = lock.headers.get('lock-token')!.replace(/^<|>$/g, '');
    expect(await (await dav('GET', 'race.txt')).text()).toBe('acknowledged content');
    // The lock is on it: a write without its token is refused, with it goes through.
    expect((await dav('PUT', 'race.txt', { body: 'x' })).status).toBe(423);
    expect((await dav('PUT', 'race.txt', { body: 'y', headers: { if: `(<${token}>)` } })).status).toBe(204);
    expect((await dav('UNLOCK', 'race.txt', { headers: { 'lock-token': `<${token}>` } })).status).toBe(204);
  });

  it('answers 423 when what appeared meanwhile is locked by another LOCK', async () => {
    let first: Response | undefined;
    const second = await lockAround('both.txt', async () => {
      first = await dav('LOCK', 'both.txt', { body: exclusive });
    });
    expect(first?.status).toBe(201);
    expect(second.status).toBe(423);
    expect(await (await dav('GET', 'both.txt')).text()).toBe('');
  });

  it('still makes the empty file, 201, when nothing else comes', async () => {
    const r = await dav('LOCK', 'alone.txt', { body: exclusive });
    expect(r.status).toBe(201);
    expect((await dav('GET', 'alone.txt')).status).toBe(200);
  });
});
