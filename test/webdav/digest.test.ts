/**
 * Instance digests (RFC 3230), as WLCG tools use them: davix, gfal2 and FTS send `Want-Digest:
 * adler32` on a HEAD or GET and verify a transfer by the `Digest` answered; with none, davix took a
 * 32-hex-digit etag for the file's md5 and reported a wrong checksum. A PUT's `Digest` is verified
 * as its OC-Checksum is.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, davFetch, startDav } from './server.js';

let env: DavEnv;
beforeAll(async () => {
  env = await startDav([{ id: 'u-dg', username: 'dg' }], { watch: false });
});
afterAll(() => env?.close());

const dav = (method: string, p: string, init?: Parameters<typeof davFetch>[4]) =>
  davFetch(env, method, `/remote.php/webdav/${p}`, 'dg', init);
/** "Wikipedia": its adler32 is 0x11e60398 (the usual example). */
const body = 'Wikipedia';
const md5 = createHash('md5').update(body).digest('base64');
const sha = createHash('sha1').update(body).digest('base64');

describe('webdav: Want-Digest and Digest (RFC 3230)', () => {
  it('answers a Want-Digest on HEAD, GET and a ranged GET with the digests it has, the most wanted first', async () => {
    expect((await dav('PUT', 'w.txt', { body })).status).toBe(201);
    const digest = async (want: string, method = 'HEAD', headers: Record<string, string> = {}) =>
      (await dav(method, 'w.txt', { headers: { 'want-digest': want, ...headers } })).headers.get('digest');
    expect(await digest('adler32')).toBe('adler32=11e60398');
    expect(await digest('ADLER32', 'GET')).toBe('ADLER32=11e60398');
    expect(await digest('md5')).toBe(`md5=${md5}`);
    expect(await digest('SHA')).toBe(`SHA=${sha}`);
    expect(await digest('adler32;q=0.3, md5;q=1, crc32c, sha;q=0.5')).toBe(
      `md5=${md5}, sha=${sha}, adler32=11e60398`,
    );
    // Of the whole file, whatever part of it is sent.
    const part = await dav('GET', 'w.txt', { headers: { 'want-digest': 'adler32', range: 'bytes=0-3' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('digest')).toBe('adler32=11e60398');
    // Nothing it can give, or nothing wanted: no Digest.
    expect(await digest('crc32c, UNIXcksum')).toBeNull();
    expect(await digest('md5;q=0')).toBeNull();
    expect((await dav('HEAD', 'w.txt')).headers.get('digest')).toBeNull();
  });

  it('verifies the Digest of a PUT, and refuses a malformed or contradicting one without writing', async () => {
    expect((await dav('PUT', 'p.txt', { body, headers: { digest: 'adler32=11e60398' } })).status).toBe(201);
    expect((await dav('PUT', 'p.txt', { body, headers: { digest: `md5=${md5}, sha=${sha}` } })).status).toBe(
      204,
    );
    // Algorithms it does not keep are passed over.
    expect((await dav('PUT', 'p.txt', { body, headers: { digest: 'sha-256=abc, crc32c=x' } })).status).toBe(
      204,
    );
    for (const [headers, status] of [
      [{ digest: 'adler32=00000000' }, 400],
      [{ digest: 'md5=not base64!' }, 400],
      [{ digest: `md5=${Buffer.alloc(15).toString('base64')}` }, 400],
      [{ digest: 'adler32=11e6039' }, 400],
      [{ digest: 'adler32=11e60398', 'oc-checksum': 'ADLER32:00000001' }, 400],
    ] as const) {
      const r = await dav('PUT', 'p.txt', { body: 'other content', headers });
      expect(r.status, JSON.stringify(headers)).toBe(status);
    }
    expect(await (await dav('GET', 'p.txt')).text()).toBe(body);
    // Agreeing headers go through together.
    const both = {
      digest: 'adler32=11e60398',
      'oc-checksum': `MD5:${Buffer.from(md5, 'base64').toString('hex')}`,
    };
    expect((await dav('PUT', 'p.txt', { body, headers: both })).status).toBe(204);
  });
});
