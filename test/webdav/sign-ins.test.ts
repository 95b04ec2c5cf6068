/**
 * Password guessing held in check: an address that keeps failing must wait, credentials already
 * checked keep working, and few passwords are checked at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressKey, SignInThrottle } from '../../src/http/sign-ins.js';
import { type DavEnv, startDav } from './server.js';

let env: DavEnv;
beforeAll(async () => {
  env = await startDav(
    [
      { id: 'u-ann', username: 'ann' },
      { id: 'u-bob', username: 'bob' },
    ],
    { signIns: { freeFailures: 3, firstWaitMs: 1000 } },
  );
});
afterAll(() => env?.close());

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
const propfind = (user: string, pw: string) =>
  fetch(`${env.url}/remote.php/webdav/`, {
    method: 'PROPFIND',
    headers: { authorization: basic(user, pw), depth: '0' },
  });

describe('WebDAV sign-ins', () => {
  it('makes an address that keeps failing wait, longer each time, without looking at its passwords', async () => {
    // Signed in before the guessing started: kept, and not held up.
    expect((await propfind('ann', 'pw-ann')).status).toBe(207);
    for (let i = 0; i < 3; i++) expect((await propfind('bob', `guess-${i}`)).status).toBe(401);
    const held = await propfind('bob', 'pw-bob'); // (the right one: not even looked at now)
    expect(held.status).toBe(429);
    expect(held.headers.get('retry-after')).toBe('1');
    expect(await held.text()).toMatch(/too many failed sign-ins from this address/);
    expect((await propfind('ann', 'pw-ann')).status).toBe(207);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await propfind('bob', 'guess-again')).status).toBe(401);
    const longer = await propfind('bob', 'pw-bob');
    expect(longer.status).toBe(429);
    expect(longer.headers.get('retry-after')).toBe('2');
    await new Promise((r) => setTimeout(r, 2100));
    expect((await propfind('bob', 'pw-bob')).status).toBe(207);
  });
});

describe('SignInThrottle', () => {
  it('checks at most `concurrent` passwords at once and turns away more than its queue holds', async () => {
    const t = new SignInThrottle({ concurrent: 2, queue: 3 });
    let running = 0;
    let most = 0;
    const check = async () => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return true;
    };
    const all = Array.from({ length: 6 }, (_, i) =>
      t.check(`10.0.0.${i}`, check).then(
        () => 'ok',
        (e) => e.status,
      ),
    );
    expect((await Promise.all(all)).sort()).toEqual([503, 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(most).toBe(2);
  });

  it('forgets failures after a while, and counts IPv6 addresses by their /64', async () => {
    const t = new SignInThrottle({ freeFailures: 1, forgetAfterMs: 50 });
    await t.check(addressKey('2001:db8:1:2::1'), async () => undefined);
    await expect(t.check(addressKey('2001:db8:1:2:ffff::9'), async () => true)).rejects.toMatchObject({
      status: 429,
    });
    expect(t.waitOf(addressKey('2001:db8:1:3::1'))).toBe(0);
    await new Promise((r) => setTimeout(r, 60));
    // (the wait itself, 1 s, outlasts the memory of the failure here: forgotten, it is no wait)
    expect(await t.check(addressKey('2001:db8:1:2::1'), async () => true)).toBe(true);
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:DB8:0001:0002:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
