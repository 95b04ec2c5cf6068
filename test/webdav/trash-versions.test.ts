/**
 * The trash and file versions over WebDAV, as ownCloud Web and OpenCloud use them: list, restore
 * (where it was or elsewhere), purge, empty; list, read and restore versions. Grants decide who
 * sees what, and locks guard restores.
 */

import { SaxesParser } from 'saxes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromLetters, ROLES } from '../../src/index.js';
import { type DavEnv, type DavInit, davFetch, startDav } from './server.js';

let env: DavEnv;
let projectId: string;
let personalId: string;

const dav = (method: string, url: string, user: string | null, init?: DavInit) =>
  davFetch(env, method, url, user, init);

/** The responses of a multistatus: href and the text of each property found (200 propstats only). */
async function multistatus(r: Response): Promise<{ href: string; props: Record<string, string> }[]> {
  expect(r.status).toBe(207);
  const xml = await r.text();
  const out: { href: string; props: Record<string, string> }[] = [];
  const parser = new SaxesParser({ xmlns: true });
  const stack: string[] = [];
  let text = '';
  let cur: { href: string; props: Record<string, string> } | undefined;
  let props: Record<string, string> = {};
  parser.on('error', (err) => {
    throw err;
  });
  parser.on('opentag', (t) => {
    stack.push(`{${t.uri}}${t.local}`);
    text = '';
    if (t.uri === 'DAV:' && t.local === 'response') cur = { href: '', props: {} };
    if (t.uri === 'DAV:' && t.local === 'propstat') props = {};
  });
  parser.on('text', (t) => {
    text += t;
  });
  parser.on('closetag', (t) => {
    const name = stack.pop()!;
    const parent = stack.at(-1);
    if (t.uri === 'DAV:' && t.local === 'href' && parent === '{DAV:}response') cur!.href = text;
    else if (parent === '{DAV:}prop') props[name] = text;
    else if (t.uri === 'DAV:' && t.local === 'status' && text.includes(' 200 '))
      Object.assign(cur!.props, props);
    else if (t.uri === 'DAV:' && t.local === 'response') out.push(cur!);
    text = '';
  });
  parser.write(xml).close();
  return out;
}

const TRASH_PROPS = `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns"><d:prop>
<oc:trashbin-original-filename/><oc:trashbin-original-location/><oc:trashbin-delete-datetime/><oc:trashbin-delete-timestamp/>
<d:getcontentlength/><d:resourcetype/><oc:size/><oc:fileid/><nc:trashbin-deletion-time/><d:getetag/></d:prop></d:propfind>`;
const OC_ = '{http://owncloud.org/ns}';

beforeAll(async () => {
  env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
    { id: 'u-eve', username: 'eve' },
  ]);
  const ann = await env.provider.as('ann');
  personalId = (await ann.personalSpace()).id;
  const project = await ann.createSpace({ type: 'project', name: 'Lab' });
  projectId = project.id;
  await ann.setGrant(
    { space: project.id, path: '' },
    { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.editor) },
  );
});
afterAll(() => env?.close());

describe('webdav: the trash', () => {
  it('lists what was deleted, restores it where it was with its id, or elsewhere', async () => {
    expect((await dav('MKCOL', '/remote.php/webdav/t', 'ann')).status).toBe(201);
    const put = await dav('PUT', '/remote.php/webdav/t/a%20file%20%231.txt', 'ann', { body: 'first' });
    expect(put.status).toBe(201);
    const fileId = put.headers.get('oc-fileid')!;
    expect((await dav('DELETE', '/remote.php/webdav/t/a%20file%20%231.txt', 'ann')).status).toBe(204);

    for (const base of ['/remote.php/dav/trash-bin/ann', `/dav/spaces/trash-bin/${personalId}`]) {
      const list = await multistatus(
        await dav('PROPFIND', `${base}/`, 'ann', { headers: { depth: '1' }, body: TRASH_PROPS }),
      );
      expect(list[0]!.href).toBe(`${base}/`);
      expect(list[0]!.props['{DAV:}resourcetype']).toBe('');
      const item = list.find((r) => r.props[`${OC_}trashbin-original-location`] === 't/a file #1.txt')!;
      expect(item).toBeDefined();
      expect(item.props[`${OC_}trashbin-original-filename`]).toBe('a file #1.txt');
      expect(item.props['{DAV:}getcontentlength']).toBe('5');
      expect(item.props[`${OC_}fileid`]).toBe(fileId);
      expect(Number(item.props[`${OC_}trashbin-delete-timestamp`])).toBeGreaterThan(Date.now() / 1000 - 60);
      expect(item.href.startsWith(`${base}/`)).toBe(true);
      // Depth: 0 of the item itself.
      const one = await multistatus(
        await dav('PROPFIND', item.href, 'ann', { headers: { depth: '0' }, body: TRASH_PROPS }),
      );
      expect(one).toHaveLength(1);
      expect(one[0]!.props[`${OC_}trashbin-original-location`]).toBe('t/a file #1.txt');
    }

    const list = await multistatus(
      await dav('PROPFIND', '/remote.php/dav/trash-bin/ann/', 'ann', {
        headers: { depth: '1' },
        body: TRASH_PROPS,
      }),
    );
    const href = list.find((r) => r.props[`${OC_}fileid`] === fileId)!.href;
    // Restore where it was: the same id comes back.
    const restored = await dav('MOVE', href, 'ann', {
      headers: { destination: `${env.url}/remote.php/webdav/t/a%20file%20%231.txt` },
    });
    expect(restored.status).toBe(201);
    expect(restored.headers.get('oc-fileid')).toBe(fileId);
    expect(await (await dav('GET', '/remote.php/webdav/t/a%20file%20%231.txt', 'ann')).text()).toBe('first');
    expect((await dav('PROPFIND', href, 'ann', { headers: { depth: '0' } })).status).toBe(404);

    // Delete again and restore elsewhere (a path, as ownCloud Web sends it).
    expect((await dav('DELETE', '/remote.php/webdav/t/a%20file%20%231.txt', 'ann')).status).toBe(204);
    const again = (
      await multistatus(
        await dav('PROPFIND', '/remote.php/dav/trash-bin/ann/', 'ann', {
          headers: { depth: '1' },
          body: TRASH_PROPS,
        }),
      )
    ).find((r) => r.props[`${OC_}fileid`] === fileId)!.href;
    expect((await dav('PUT', '/remote.php/webdav/t/b.txt', 'ann', { body: 'in the way' })).status).toBe(201);
    const refused = await dav('MOVE', again, 'ann', {
      headers: { destination: '/remote.php/webdav/t/b.txt', overwrite: 'F' },
    });
    expect(refused.status).toBe(412);
    const replaced = await dav('MOVE', again, 'ann', {
      headers: { destination: '/remote.php/webdav/t/b.txt' },
    });
    expect(replaced.status).toBe(204);
    expect(await (await dav('GET', '/remote.php/webdav/t/b.txt', 'ann')).text()).toBe('first');
    // What was in the way went to the trash, as a DELETE sends it.
    const now = await multistatus(
      await dav('PROPFIND', '/remote.php/dav/trash-bin/ann/', 'ann', {
        headers: { depth: '1' },
        body: TRASH_PROPS,
      }),
    );
    expect(now.some((r) => r.props[`${OC_}trashbin-original-location`] === 't/b.txt')).toBe(true);
  });

  it('reads untagged If lists of a restore as about the trash item, and takes a locked Destination’s token tagged', async () => {
    expect((await dav('PUT', '/remote.php/webdav/rl-old.txt', 'ann', { body: 'deleted' })).status).toBe(201);
    expect((await dav('DELETE', '/remote.php/webdav/rl-old.txt', 'ann')).status).toBe(204);
    const file = '/remote.php/webdav/rl-locked.txt';
    const dest = `${env.url}${file}`;
    expect((await dav('PUT', file, 'ann', { body: 'locked' })).status).toBe(201);
    const lockBody =
      '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>';
    const token = (await dav('LOCK', file, 'ann', { body: lockBody })).headers.get('lock-token')!;
    const href = (
      await multistatus(
        await dav('PROPFIND', '/remote.php/dav/trash-bin/ann/', 'ann', {
          headers: { depth: '1' },
          body: TRASH_PROPS,
        }),
      )
    ).find((r) => r.props[`${OC_}trashbin-original-location`] === 'rl-old.txt')!.href;
    const restore = (headers: Record<string, string>) =>
      dav('MOVE', href, 'ann', { headers: { destination: dest, ...headers } });
    expect((await restore({})).status).toBe(423);
    // Untagged: about the trash item, which holds no lock.
    expect((await restore({ if: `(${token})` })).status).toBe(412);
    expect(await (await dav('GET', file, 'ann')).text()).toBe('locked');
    // Tagged with the Destination: it holds, and the token is submitted.
    expect((await restore({ if: `<${dest}> (${token})` })).status).toBe(204);
    expect(await (await dav('GET', file, 'ann')).text()).toBe('deleted');
  });

  it('changes nothing when a restore over something is refused (the Destination is not deleted first)', async () => {
    const ann = await env.provider.as('ann');
    await ann.mkdir({ space: projectId, path: 'nr' });
    // May delete and see the trash, not restore from it.
    await ann.setGrant(
      { space: projectId, path: '' },
      { grantee: { type: 'user', id: 'u-eve' }, permissions: fromLetters('splrwcdmvtq') },
    );
    await ann.write({ space: projectId, path: 'nr/gone.txt' }, 'gone');
    await ann.delete({ space: projectId, path: 'nr/gone.txt' });
    await ann.write({ space: projectId, path: 'nr/victim.txt' }, 'keep me');
    let key = '';
    for await (const item of ann.listTrash(projectId)) if (item.path === '/nr/gone.txt') key = item.key;
    const dest = `/dav/spaces/${projectId}/nr/victim.txt`;
    for (const overwrite of ['T', 'F']) {
      const r = await dav('MOVE', `/dav/spaces/trash-bin/${projectId}/${key}`, 'eve', {
        headers: { destination: dest, overwrite },
      });
      expect(r.status, overwrite).toBe(overwrite === 'T' ? 403 : 412);
    }
    expect(await (await dav('GET', dest, 'ann')).text()).toBe('keep me');
    const trashed: string[] = [];
    for await (const item of ann.listTrash(projectId)) trashed.push(item.path);
    expect(trashed).not.toContain('/nr/victim.txt');
    // Who may restore replaces it, and what was there goes to the trash.
    expect(
      (
        await dav('MOVE', `/dav/spaces/trash-bin/${projectId}/${key}`, 'bob', {
          headers: { destination: dest },
        })
      ).status,
    ).toBe(204);
    expect(await (await dav('GET', dest, 'ann')).text()).toBe('gone');
    for await (const item of ann.listTrash(projectId)) trashed.push(item.path);
    expect(trashed).toContain('/nr/victim.txt');
    await ann.removeGrant({ space: projectId, path: '' }, { type: 'user', id: 'u-eve' });
  });

  it('shows a deleted folder’s content below its key, purges one item, and empties the trash', async () => {
    expect((await dav('MKCOL', `/dav/spaces/${projectId}/f`, 'ann')).status).toBe(201);
    expect((await dav('PUT', `/dav/spaces/${projectId}/f/in.txt`, 'ann', { body: 'x' })).status).toBe(201);
    expect((await dav('PUT', `/dav/spaces/${projectId}/g.txt`, 'bob', { body: 'g' })).status).toBe(201);
    expect((await dav('DELETE', `/dav/spaces/${projectId}/f`, 'ann')).status).toBe(204);
    expect((await dav('DELETE', `/dav/spaces/${projectId}/g.txt`, 'bob')).status).toBe(204);
    const base = `/remote.php/dav/spaces/trash-bin/${projectId}`;
    const list = await multistatus(
      await dav('PROPFIND', `${base}/`, 'bob', { headers: { depth: '1' }, body: TRASH_PROPS }),
    );
    const folder = list.find((r) => r.props[`${OC_}trashbin-original-location`] === 'f')!;
    expect(folder.href.endsWith('/')).toBe(true);
    expect(folder.props['{DAV:}resourcetype']).toBe('');
    const inside = await multistatus(
      await dav('PROPFIND', folder.href, 'bob', { headers: { depth: '1' }, body: TRASH_PROPS }),
    );
    expect(inside.map((r) => r.props[`${OC_}trashbin-original-filename`])).toEqual(['f', 'in.txt']);
    // Someone without a grant on the space sees no trash at all, nor another user's.
    expect((await dav('PROPFIND', `${base}/`, 'eve', { headers: { depth: '1' } })).status).toBe(404);
    expect(
      (await dav('PROPFIND', '/remote.php/dav/trash-bin/ann/', 'eve', { headers: { depth: '1' } })).status,
    ).toBe(404);
    expect((await dav('PROPFIND', `${base}/`, 'bob', { headers: { depth: 'infinity' } })).status).toBe(403);
    // Restoring into another space is refused, and changes nothing.
    const g = list.find((r) => r.props[`${OC_}trashbin-original-location`] === 'g.txt')!;
    expect(
      (await dav('MOVE', g.href, 'ann', { headers: { destination: '/remote.php/webdav/g.txt' } })).status,
    ).toBe(502);
    expect((await dav('GET', '/remote.php/webdav/g.txt', 'ann')).status).toBe(404);
    // Purging is for managers: an editor may not.
    expect((await dav('DELETE', g.href, 'bob')).status).toBe(403);
    expect((await dav('DELETE', `${base}/`, 'bob')).status).toBe(403);
    // Purge one item, then empty the rest.
    expect((await dav('DELETE', g.href, 'ann')).status).toBe(204);
    expect((await dav('DELETE', g.href, 'ann')).status).toBe(404);
    expect((await dav('DELETE', `${base}/`, 'ann')).status).toBe(204);
    const empty = await multistatus(await dav('PROPFIND', `${base}/`, 'ann', { headers: { depth: '1' } }));
    expect(empty).toHaveLength(1);
  });
});

describe('webdav: versions', () => {
  it('lists, reads and restores a file’s previous contents', async () => {
    const first = await dav('PUT', `/dav/spaces/${projectId}/doc.txt`, 'ann', { body: 'version one' });
    const id = first.headers.get('oc-fileid')!;
    expect(
      (await dav('PUT', `/dav/spaces/${projectId}/doc.txt`, 'bob', { body: 'version two!' })).status,
    ).toBe(204);
    const meta = `/remote.php/dav/meta/${encodeURIComponent(id)}`;
    const where = await multistatus(
      await dav('PROPFIND', meta, 'bob', {
        headers: { depth: '0' },
        body: '<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><oc:meta-path-for-user/><oc:fileid/></d:prop></d:propfind>',
      }),
    );
    expect(where[0]!.props[`${OC_}meta-path-for-user`]).toBe('/doc.txt');
    const versions = await multistatus(
      await dav('PROPFIND', `${meta}/v`, 'bob', { headers: { depth: '1' } }),
    );
    expect(versions).toHaveLength(2);
    const v = versions[1]!;
    expect(v.props['{DAV:}getcontentlength']).toBe('11');
    expect(v.props['{DAV:}getetag']).toMatch(/^".+"$/);
    const got = await dav('GET', v.href, 'bob');
    expect(await got.text()).toBe('version one');
    const part = await dav('GET', v.href, 'bob', { headers: { range: 'bytes=8-' } });
    expect(part.status).toBe(206);
    expect(await part.text()).toBe('one');
    // Nobody without a grant reads it or learns it exists.
    expect((await dav('PROPFIND', `${meta}/v`, 'eve', { headers: { depth: '1' } })).status).toBe(404);
    expect((await dav('GET', v.href, 'eve')).status).toBe(404);
    expect((await dav('COPY', v.href, 'eve')).status).toBe(404);
    // A lock on the file guards it: the holder's token is needed.
    const lock = await dav('LOCK', `/dav/spaces/${projectId}/doc.txt`, 'ann', {
      body: '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>',
    });
    const token = lock.headers.get('lock-token')!;
    expect((await dav('COPY', v.href, 'bob')).status).toBe(423);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/doc.txt`, 'bob')).text()).toBe('version two!');
    const restore = await dav('COPY', v.href, 'ann', { headers: { if: `(${token})` } });
    expect(restore.status).toBe(204);
    expect(await (await dav('GET', `/dav/spaces/${projectId}/doc.txt`, 'ann')).text()).toBe('version one');
    const after = await multistatus(await dav('PROPFIND', `${meta}/v`, 'ann', { headers: { depth: '1' } }));
    expect(after.slice(1).map((r) => r.props['{DAV:}getcontentlength'])).toContain('12');
    expect((await dav('GET', `${meta}/v/no-such-version`, 'ann')).status).toBe(404);
    expect(
      (await dav('PROPFIND', '/remote.php/dav/meta/not-an-id/v', 'ann', { headers: { depth: '1' } })).status,
    ).toBeGreaterThanOrEqual(400);
  });

  it('announces the trash and versions in the capabilities', async () => {
    const caps = (await (
      await dav('GET', '/ocs/v1.php/cloud/capabilities?format=json', 'ann', {
        headers: { 'ocs-apirequest': 'true' },
      })
    ).json()) as {
      ocs: { data: { capabilities: { dav: Record<string, unknown>; files: Record<string, unknown> } } };
    };
    expect(caps.ocs.data.capabilities.dav.trashbin).toBe('1.0');
    expect(caps.ocs.data.capabilities.files.undelete).toBe(true);
    expect(caps.ocs.data.capabilities.files.versioning).toBe(true);
  });
});
