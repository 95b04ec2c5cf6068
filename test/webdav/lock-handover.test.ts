/**
 * UNLOCK of the first of several shared locks hands the lock over to the next in one change:
 * the file is never without a lock between two steps, where a write by someone else could slip
 * in or a process killed right then would leave the other holders' locks lost for good.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Driver, Lock, LocksFeature, NodeRef } from '../../src/index.js';
import { type DavEnv, davFetch, overriding, sharedProject, startDav } from './server.js';

let env: DavEnv;
let base: string;
/** The lock each node held after each lock change the driver made (undefined: none). */
const after: (Lock | undefined)[] = [];

/** The POSIX driver, its locks capability looking at the lock after each change it makes. */
function watched(driver: Driver): Driver {
  const l = driver.features.locks!;
  const look = async <T>(ref: NodeRef, done: Promise<T>): Promise<T> => {
    const out = await done;
    after.push(await l.get(ref));
    return out;
  };
  const locks: LocksFeature = {
    get: (r) => l.get(r),
    set: (r, lock, o) => look(r, l.set(r, lock, o)),
    refresh: (r, lock, existing) => look(r, l.refresh(r, lock, existing)),
    unlock: (r, id, o) => look(r, l.unlock(r, id, o)),
  };
  return overriding(driver, { features: Object.freeze({ ...driver.features, locks }) });
}

beforeAll(async () => {
  env = await startDav(
    [
      { id: 'u-ann', username: 'ann', createSpaces: true },
      { id: 'u-bob', username: 'bob' },
    ],
    { wrap: watched },
  );
  base = `/dav/spaces/${await sharedProject(env, 'ann', 'Handover', 'u-bob', 'editor')}`;
});
afterAll(() => env?.close());

const dav = (method: string, p: string, user: string, init?: Parameters<typeof davFetch>[4]) =>
  davFetch(env, method, `${base}/${p}`, user, init);

const shared =
  '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:shared/></d:lockscope><d:locktype><d:write/></d:locktype><d:owner>t</d:owner></d:lockinfo>';

describe('webdav: UNLOCK of one of several shared locks', () => {
  it('hands the lock to the next token in one change, never leaving the file unlocked', async () => {
    expect((await dav('PUT', 'h.txt', 'ann', { body: 'one' })).status).toBe(201);
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await dav('LOCK', 'h.txt', 'ann', { body: shared });
      expect(r.status, await r.clone().text()).toBe(200);
      tokens.push(r.headers.get('lock-token')!.replace(/^<|>$/g, ''));
    }
    after.length = 0;
    // The first token (the one the stored lock is named by) goes; the other two stay.
    const un = await dav('UNLOCK', 'h.txt', 'ann', { headers: { 'lock-token': `<${tokens[0]}>` } });
    expect(un.status).toBe(204);
    expect(after.length).toBeGreaterThan(0);
    for (const lock of after) expect(lock?.lockId).toBe(tokens[1]);
    // The lock still guards the file: bob is kept out, either remaining token lets ann in, the
    // first no longer does.
    expect((await dav('PUT', 'h.txt', 'bob', { body: 'bob' })).status).toBe(423);
    const put = (token: string) =>
      dav('PUT', 'h.txt', 'ann', { body: 'two', headers: { if: `(<${token}>)` } }).then((r) => r.status);
    expect(await put(tokens[0]!)).toBe(412);
    expect(await put(tokens[2]!)).toBe(204);
    expect(await put(tokens[1]!)).toBe(204);
    // And the second can be given up the same way, leaving the third.
    after.length = 0;
    expect(
      (await dav('UNLOCK', 'h.txt', 'ann', { headers: { 'lock-token': `<${tokens[1]}>` } })).status,
    ).toBe(204);
    for (const lock of after) expect(lock?.lockId).toBe(tokens[2]);
    expect((await dav('PUT', 'h.txt', 'bob', { body: 'bob' })).status).toBe(423);
    // The last one unlocks the file.
    expect(
      (await dav('UNLOCK', 'h.txt', 'ann', { headers: { 'lock-token': `<${tokens[2]}>` } })).status,
    ).toBe(204);
    expect((await dav('PUT', 'h.txt', 'bob', { body: 'bob' })).status).toBe(204);
  });
});
