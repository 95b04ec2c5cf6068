/**
 * TUS uploads started from the WebDAV door and finished on the data plane: each POST is an upload
 * of its own, and a lock token sent on the data plane counts for the lock's creator only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, type DavInit, davFetch, sharedProject, startDav } from './server.js';

let env: DavEnv;
let projectId: string;

beforeAll(async () => {
  env = await startDav(
    [
      { id: 'u-alice', username: 'alice', createSpaces: true },
      { id: 'u-bob', username: 'bob' },
    ],
    { watch: false },
  );
  projectId = await sharedProject(env, 'alice', 'TUS via WebDAV', 'u-bob', 'editor');
});
afterAll(() => env?.close());

const dav = (method: string, url: string, user: string, init?: DavInit) =>
  davFetch(env, method, url, user, init);
const b64 = (s: string) => Buffer.from(s).toString('base64');
const TUS = { 'tus-resumable': '1.0.0' };

/** A TUS creation on a folder (`body`: creation-with-upload). */
const post = (user: string, folder: string, name: string, length: number, body?: string) =>
  dav('POST', folder, user, {
    headers: {
      ...TUS,
      'upload-length': String(length),
      'upload-metadata': `filename ${b64(name)}`,
      ...(body !== undefined && { 'content-type': 'application/offset+octet-stream' }),
    },
    ...(body !== undefined && { body }),
  });

const patch = (location: string, body: string, headers: Record<string, string> = {}) =>
  fetch(location, {
    method: 'PATCH',
    headers: { ...TUS, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', ...headers },
    body,
  });

describe('webdav: TUS uploads are each their own', () => {
  it('gives every POST its own upload, the same file by the same user within a second too', async () => {
    for (const folder of ['/remote.php/webdav/', `/dav/spaces/${projectId}/`]) {
      const locations = new Set<string>();
      for (const i of [1, 2, 3]) {
        // Creation with upload: all of the bytes come with the POST (curl --data-binary).
        const r = await post('alice', folder, 'same.txt', 5, `abcd${i}`);
        expect(r.status, `${folder} POST #${i}`).toBe(201);
        locations.add(r.headers.get('location')!);
      }
      expect(locations.size).toBe(3);
      expect(await (await dav('GET', `${folder}same.txt`, 'alice')).text()).toBe('abcd3');

      // Creation, then the bytes: two uploads begun at once do not share their offsets.
      const [a, b] = await Promise.all([
        post('alice', folder, 'twice.txt', 5),
        post('alice', folder, 'twice.txt', 5),
      ]);
      expect([a.status, b.status]).toEqual([201, 201]);
      const [la, lb] = [a.headers.get('location')!, b.headers.get('location')!];
      expect(la).not.toBe(lb);
      expect((await patch(la, 'first')).status).toBe(204);
      expect((await patch(lb, 'again')).status).toBe(204);
      expect(await (await dav('GET', `${folder}twice.txt`, 'alice')).text()).toBe('again');
    }
  });

  it('still finds one upload by its own location (a retried POST, a HEAD first)', async () => {
    const r = await post('alice', `/dav/spaces/${projectId}/`, 'retried.txt', 4);
    expect(r.status).toBe(201);
    const location = r.headers.get('location')!;
    expect((await patch(location, 'ab')).status).toBe(204);
    const again = await fetch(location, { method: 'POST', headers: { ...TUS, 'upload-length': '4' } });
    expect(again.status).toBe(201);
    expect(again.headers.get('upload-offset')).toBe('2');
    const head = await fetch(location, { method: 'HEAD', headers: TUS });
    expect(head.headers.get('upload-offset')).toBe('2');
  });
});

describe('webdav: a lock token on the data plane', () => {
  const lockBody =
    '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:shared/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';

  it('counts only for the user who took the lock, as in the WebDAV door (shared locks too)', async () => {
    const base = `/dav/spaces/${projectId}`;
    expect((await dav('PUT', `${base}/shared.txt`, 'alice', { body: 'alice' })).status).toBe(201);
    // Both begin an upload of the file before it is locked.
    const bobs = await post('bob', `${base}/`, 'shared.txt', 5);
    const alices = await post('alice', `${base}/`, 'shared.txt', 6);
    expect([bobs.status, alices.status]).toEqual([201, 201]);

    const lock = await dav('LOCK', `${base}/shared.txt`, 'alice', { body: lockBody });
    expect(lock.status).toBe(200);
    const token = lock.headers.get('lock-token')!.replace(/^<|>$/g, '');
    // Bob sees the token (DAV:lockdiscovery) ...
    const found = await dav('PROPFIND', `${base}/shared.txt`, 'bob', {
      headers: { depth: '0' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:lockdiscovery/></d:prop></d:propfind>',
    });
    expect(await found.text()).toContain(token);
    // ... which does not let him write, by WebDAV or by the data plane.
    expect(
      (await dav('PUT', `${base}/shared.txt`, 'bob', { body: 'bob!!', headers: { if: `(<${token}>)` } }))
        .status,
    ).toBe(423);
    const refused = await patch(bobs.headers.get('location')!, 'bob!!', { 'x-lock-id': token });
    expect(refused.status).toBe(423);
    expect(((await refused.json()) as { code: string }).code).toBe('LOCKED');
    expect(await (await dav('GET', `${base}/shared.txt`, 'alice')).text()).toBe('alice');

    // Alice, who took it, may.
    expect((await patch(alices.headers.get('location')!, 'alice2', { 'x-lock-id': token })).status).toBe(204);
    expect(await (await dav('GET', `${base}/shared.txt`, 'bob')).text()).toBe('alice2');
  });
});

describe('webdav: TUS uploads keep If-Match (the ownCloud client sends the etag it last saw)', () => {
  it('refuses a stale etag at creation, and an edit made while the bytes were on their way at the end', async () => {
    const folder = '/remote.php/webdav/';
    expect((await dav('PUT', `${folder}doc.txt`, 'alice', { body: 'version 1' })).status).toBe(201);
    const v1 = (await dav('HEAD', `${folder}doc.txt`, 'alice')).headers.get('etag')!;
    expect((await dav('PUT', `${folder}doc.txt`, 'alice', { body: 'version 2' })).status).toBe(204);
    const v2 = (await dav('HEAD', `${folder}doc.txt`, 'alice')).headers.get('etag')!;
    const postIf = (etag: string, body?: string) =>
      dav('POST', folder, 'alice', {
        headers: {
          ...TUS,
          'if-match': etag,
          'upload-length': '11',
          'upload-metadata': `filename ${b64('/doc.txt')}`,
          ...(body !== undefined && { 'content-type': 'application/offset+octet-stream' }),
        },
        ...(body !== undefined && { body }),
      });
    // Based on version 1: refused at once, with or without the bytes in the POST.
    expect((await postIf(v1, 'client edit')).status).toBe(412);
    expect((await postIf(v1)).status).toBe(412);
    expect(await (await dav('GET', `${folder}doc.txt`, 'alice')).text()).toBe('version 2');
    // Based on version 2, but someone else saves version 3 before the bytes are in: refused then.
    const created = await postIf(v2);
    expect(created.status).toBe(201);
    expect((await dav('PUT', `${folder}doc.txt`, 'alice', { body: 'version 3' })).status).toBe(204);
    expect((await patch(created.headers.get('location')!, 'client edit', { 'if-match': v2 })).status).toBe(
      412,
    );
    expect(await (await dav('GET', `${folder}doc.txt`, 'alice')).text()).toBe('version 3');
    // Based on what is there: written.
    const v3 = (await dav('HEAD', `${folder}doc.txt`, 'alice')).headers.get('etag')!;
    expect((await postIf(v3, 'client edit')).status).toBe(201);
    expect(await (await dav('GET', `${folder}doc.txt`, 'alice')).text()).toBe('client edit');
  });
});
