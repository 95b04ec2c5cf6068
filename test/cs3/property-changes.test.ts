/**
 * One resource's metadata, time and favorite mark changed together, through both doors on one
 * provider: all or nothing (CS3 Set/UnsetArbitraryMetadata, WebDAV PROPPATCH), the If header of a
 * mark, X-OC-Mtime after a COPY or MOVE under the mover's own lock, and favorites of a space the
 * user cannot see. (Found by a cross-door review: each of these left part of a refused change.)
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cs3Client } from '../../src/cs3/client.js';
import { Code } from '../../src/cs3/gen/cs3/rpc/v1beta1/code.js';
import { LockType } from '../../src/cs3/gen/cs3/storage/provider/v1beta1/resources.js';
import { mintRevaToken } from '../../src/cs3/jwt.js';
import { type Cs3Server, serveCs3 } from '../../src/cs3/serve.js';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { fromLetters, ROLES, StaticIdentitySource, StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const SECRET = 'property-changes-secret';
const USERS = [
  { id: 'u-ann', username: 'ann', createSpaces: true },
  { id: 'u-bob', username: 'bob' },
  { id: 'u-carol', username: 'carol' },
];
const OC_FAV = 'http://owncloud.org/ns/favorite';
const NS = 'xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x"';
const PP = (set: string, remove = '') =>
  `<?xml version="1.0"?><d:propertyupdate ${NS}>${set && `<d:set><d:prop>${set}</d:prop></d:set>`}${remove && `<d:remove><d:prop>${remove}</d:prop></d:remove>`}</d:propertyupdate>`;
const LOCK = `<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>`;

let root: string;
let provider: StorageProvider;
let server: Cs3Server;
let url: string;
let spaceId: string;
let rootId: { storageId: string; spaceId: string; opaqueId: string };
const clients: Cs3Client[] = [];

function cs3(username: string): Cs3Client {
  const c = new Cs3Client(server.grpcAddress, {
    token: mintRevaToken(USERS.find((u) => u.username === username)!, SECRET),
  });
  clients.push(c);
  return c;
}
function dav(
  method: string,
  p: string,
  user: string,
  init: { headers?: Record<string, string>; body?: string } = {},
) {
  return fetch(url + p, {
    method,
    ...(init.body !== undefined && { body: init.body }),
    headers: {
      authorization: `Basic ${Buffer.from(`${user}:pw-${user}`).toString('base64')}`,
      ...init.headers,
    },
  });
}
const rel = (p: string) => ({ resourceId: rootId, path: `./${p}` });
const at = (p: string) => ({ space: spaceId, path: p });
const now = (p: string) => provider.stat(at(p), { fields: [], metadataKeys: '*' });
const favorites = async (user: string) => {
  const names: string[] = [];
  for await (const f of (await provider.as(user)).listFavorites({ space: spaceId })) names.push(f.name);
  return names;
};
// The user's favorites can no longer be written: a file where their folder goes.
const favoritesFolder = (user: string) => path.join(root, 'data', '.stowage', 'favorites', user);
async function breakFavorites(user: string) {
  await fsp.mkdir(path.dirname(favoritesFolder(user)), { recursive: true });
  await fsp.rm(favoritesFolder(user), { recursive: true, force: true });
  await fsp.writeFile(favoritesFolder(user), 'not a folder');
}

beforeAll(async () => {
  root = await tempRoot('property-changes');
  const identity = await StaticIdentitySource.create({
    users: USERS.map((u) => ({ password: `pw-${u.username}`, ...u })),
  });
  provider = new StorageProvider({
    drivers: await createPosixDriver({ root: path.join(root, 'data') }),
    identity,
  });
  server = await serveCs3({
    provider,
    jwtSecret: SECRET,
    grpc: '127.0.0.1:0',
    http: '127.0.0.1:0',
    uploadsDir: path.join(root, 'uploads'),
    webdav: { uploadsDir: path.join(root, 'chunks') },
  });
  url = `http://${server.httpAddress}`;
  const ann = await provider.as('u-ann');
  const sp = await ann.createSpace({ type: 'project', name: 'Changes' });
  await ann.setGrant(
    { space: sp.id, path: '' },
    { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.editor) },
  );
  spaceId = sp.id;
  rootId = sp.root as typeof rootId;
  await ann.mkdir(at('dir'));
  for (const n of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) await ann.write(at(`${n}.txt`), 'data');
});

afterAll(async () => {
  for (const c of clients) c.close();
  await server?.close();
  await provider?.close();
});

describe('CS3 Set/UnsetArbitraryMetadata: all or nothing', () => {
  it('changes no time when a key or a value is refused', async () => {
    for (const [file, metadata] of [
      ['a.txt', { mtime: '1000000000', ['k'.repeat(300)]: 'v' }],
      ['b.txt', { mtime: '1000000000', note: 'x'.repeat(65 * 1024) }],
    ] as const) {
      const before = await now(file);
      const res = await cs3('bob').provider('setArbitraryMetadata', {
        ref: rel(file),
        arbitraryMetadata: { metadata },
      });
      expect(res.status!.code).toBe(Code.CODE_INVALID_ARGUMENT);
      const after = await now(file);
      expect([after.mtime, after.etag, after.metadata]).toEqual([before.mtime, before.etag, before.metadata]);
    }
  });

  it('puts keys and the time back when the mark fails', async () => {
    await breakFavorites('u-bob');
    try {
      const before = await now('c.txt');
      const res = await cs3('bob').provider('setArbitraryMetadata', {
        ref: rel('c.txt'),
        arbitraryMetadata: { metadata: { [OC_FAV]: '1', color: 'red', mtime: '1000000000' } },
      });
      expect(res.status!.code).not.toBe(Code.CODE_OK);
      const after = await now('c.txt');
      expect(after.metadata).toEqual(before.metadata);
      expect(Math.floor(after.mtime / 1000)).toBe(Math.floor(before.mtime / 1000));
    } finally {
      await fsp.rm(favoritesFolder('u-bob'), { force: true });
    }
  });

  it('puts removed keys back when the unmark fails', async () => {
    const bob = cs3('bob');
    await bob.providerOk('setArbitraryMetadata', {
      ref: rel('d.txt'),
      arbitraryMetadata: { metadata: { color: 'blue', [OC_FAV]: '1' } },
    });
    expect(await favorites('u-bob')).toEqual(['d.txt']);
    // (the mark cannot be unlinked: a folder with something in it where it is)
    const [mark] = await fsp.readdir(favoritesFolder('u-bob'));
    await fsp.rm(path.join(favoritesFolder('u-bob'), mark!));
    await fsp.mkdir(path.join(favoritesFolder('u-bob'), mark!, 'x'), { recursive: true });
    try {
      const res = await bob.provider('unsetArbitraryMetadata', {
        ref: rel('d.txt'),
        arbitraryMetadataKeys: [OC_FAV, 'color'],
      });
      expect(res.status!.code).not.toBe(Code.CODE_OK);
      expect((await now('d.txt')).metadata).toEqual({ color: 'blue' });
    } finally {
      await fsp.rm(favoritesFolder('u-bob'), { recursive: true, force: true });
    }
  });

  it('still answers a request that changes nothing about the resource and the right to change it', async () => {
    expect((await cs3('bob').provider('setArbitraryMetadata', { ref: rel('a.txt') })).status!.code).toBe(
      Code.CODE_OK,
    );
    expect((await cs3('carol').provider('setArbitraryMetadata', { ref: rel('a.txt') })).status!.code).toBe(
      Code.CODE_NOT_FOUND,
    );
    expect(
      (
        await cs3('bob').provider('unsetArbitraryMetadata', {
          ref: rel('missing.txt'),
          arbitraryMetadataKeys: [],
        })
      ).status!.code,
    ).toBe(Code.CODE_NOT_FOUND);
  });
});

describe('WebDAV PROPPATCH: all or nothing', () => {
  it('stores nothing when a removed property is refused', async () => {
    const r = await dav('PROPPATCH', `/dav/spaces/${spaceId}/e.txt`, 'bob', {
      body: PP('<x:a>1</x:a>', `<x:${'b'.repeat(300)}/>`),
    });
    expect(r.status).toBe(207);
    const statuses = [...(await r.text()).matchAll(/<d:status>([^<]*)<\/d:status>/g)].map((m) => m[1]);
    expect(statuses).toEqual(['HTTP/1.1 409 Conflict', 'HTTP/1.1 409 Conflict']);
    expect((await now('e.txt')).metadata).toEqual({});
  });

  it('changes no etag when a property too large is refused with a time', async () => {
    for (let i = 0; i < 3; i++) {
      const p = `dir/r${i}.txt`;
      await (await provider.as('u-ann')).write(at(p), 'data');
      const before = [(await now(p)).etag, (await now('dir')).etag];
      const r = await dav('PROPPATCH', `/dav/spaces/${spaceId}/${p}`, 'bob', {
        body: PP(`<d:lastmodified>1000000000</d:lastmodified><x:big>${'y'.repeat(65 * 1024)}</x:big>`),
      });
      const text = await r.text();
      expect(text).toContain('Insufficient Storage');
      expect(text).not.toContain('200 OK');
      expect([(await now(p)).etag, (await now('dir')).etag]).toEqual(before);
    }
  });

  it('refuses a mark whose If header evaluates false (412), and marks nothing', async () => {
    const r = await dav('PROPPATCH', `/dav/spaces/${spaceId}/f.txt`, 'bob', {
      headers: { if: '(["not-the-etag"])' },
      body: PP('<oc:favorite>1</oc:favorite>'),
    });
    expect(r.status).toBe(412);
    expect(await favorites('u-bob')).toEqual([]);
  });
});

describe('X-OC-Mtime after a COPY or MOVE under the mover’s own lock', () => {
  const lock = async (p: string) => {
    const l = await dav('LOCK', `/dav/spaces/${spaceId}/${p}`, 'ann', {
      headers: { depth: '0', timeout: 'Second-600' },
      body: LOCK,
    });
    expect(l.status).toBe(200);
    return l.headers.get('lock-token')!;
  };

  it('takes the time of a MOVE of a file the mover locked', async () => {
    const token = await lock('g.txt');
    const r = await dav('MOVE', `/dav/spaces/${spaceId}/g.txt`, 'ann', {
      headers: {
        destination: `${url}/dav/spaces/${spaceId}/g-moved.txt`,
        if: `(${token})`,
        'x-oc-mtime': '1000000000',
      },
    });
    expect(r.status).toBe(201);
    expect(r.headers.get('x-oc-mtime')).toBe('accepted');
    expect((await now('g-moved.txt')).mtime).toBe(1_000_000_000_000);
  });

  it('takes the time of a COPY over a file the copier locked', async () => {
    const token = await lock('h.txt');
    const r = await dav('COPY', `/dav/spaces/${spaceId}/a.txt`, 'ann', {
      headers: {
        destination: `${url}/dav/spaces/${spaceId}/h.txt`,
        if: `<${url}/dav/spaces/${spaceId}/h.txt> (${token})`,
        'x-oc-mtime': '1000000000',
        overwrite: 'T',
      },
    });
    expect(r.status).toBe(204);
    expect(r.headers.get('x-oc-mtime')).toBe('accepted');
    expect((await now('h.txt')).mtime).toBe(1_000_000_000_000);
  });
});

describe('favorites of one space', () => {
  it('answers a space the user cannot see as a missing one', async () => {
    const ann = await provider.as('u-ann');
    const secret = await ann.createSpace({ type: 'project', name: 'Secret plans' });
    const carol = await provider.as('u-carol');
    const outcome = async (space: string) => {
      try {
        for await (const _ of carol.listFavorites({ space })) return 'some';
        return 'none';
      } catch (err) {
        return `${(err as { code: string }).code}: ${(err as Error).message.replace(space, '<space>')}`;
      }
    };
    const missing = await outcome('project/no-such-space');
    expect(missing).toBe('NOT_FOUND: not found');
    expect(await outcome(secret.alias)).toBe(missing);
    expect(await outcome(secret.id)).toBe(missing);
    expect(await outcome('00000000-0000-4000-8000-000000000000')).toBe(missing);
    // (a space the user sees, with no favorites in it: an empty answer)
    expect(await favorites('u-bob')).toEqual([]);
  });
});

describe('a WebDAV lock on a folder guards it through every door', () => {
  const lockFolder = async (p: string, depth: '0' | 'infinity') => {
    const l = await dav('LOCK', `/dav/spaces/${spaceId}/${p}/`, 'ann', {
      headers: { depth, timeout: 'Second-600' },
      body: LOCK,
    });
    expect(l.status).toBe(200);
    return l.headers.get('lock-token')!.replace(/^<|>$/g, '');
  };

  it('depth infinity: nothing below changes through CS3 or the TypeScript API without its token', async () => {
    const ann = await provider.as('u-ann');
    await ann.mkdir(at('tree/sub'), { parents: true });
    await ann.write(at('tree/sub/in.txt'), 'data');
    await ann.write(at('tree/top.txt'), 'data');
    const token = await lockFolder('tree', 'infinity');
    const bob = cs3('bob');
    const before = await now('tree/sub/in.txt');
    const refused = {
      metadata: await bob.provider('setArbitraryMetadata', {
        ref: rel('tree/sub/in.txt'),
        arbitraryMetadata: { metadata: { mtime: '1000000000', color: 'red' } },
      }),
      touch: await bob.provider('touchFile', { ref: rel('tree/sub/new.txt') }),
      mkdir: await bob.provider('createContainer', { ref: rel('tree/sub/new') }),
      delete: await bob.provider('delete', { ref: rel('tree/top.txt') }),
      moveOut: await bob.provider('move', { source: rel('tree/top.txt'), destination: rel('out.txt') }),
      moveIn: await bob.provider('move', { source: rel('a.txt'), destination: rel('tree/a.txt') }),
    };
    for (const [what, r] of Object.entries(refused))
      expect([what, r.status!.code]).toEqual([what, Code.CODE_LOCKED]);
    const after = await now('tree/sub/in.txt');
    expect([after.mtime, after.metadata]).toEqual([before.mtime, before.metadata]);
    expect(await provider.stat(at('a.txt'))).toBeDefined();
    // The system too, unless it holds the token
    await expect(provider.write(at('tree/sub/in.txt'), 'x')).rejects.toMatchObject({ code: 'LOCKED' });
    await expect(provider.setMtime(at('tree/top.txt'), 1e12)).rejects.toMatchObject({ code: 'LOCKED' });
    await expect(
      provider.setMtime(at('tree/top.txt'), 1e12, { heldLockIds: [token] }),
    ).resolves.toBeDefined();
    // Its holder, with the token as the lock id (CS3 has one): the lock above is not the file's own
    const annCs3 = cs3('ann');
    const held = await annCs3.provider('setArbitraryMetadata', {
      ref: rel('tree/sub/in.txt'),
      lockId: token,
      arbitraryMetadata: { metadata: { color: 'green' } },
    });
    expect(held.status!.code).toBe(Code.CODE_OK);
    expect((await now('tree/sub/in.txt')).metadata).toEqual({ color: 'green' });
    // Not with another user's token
    const stolen = await bob.provider('setArbitraryMetadata', {
      ref: rel('tree/sub/in.txt'),
      lockId: token,
      arbitraryMetadata: { metadata: { color: 'red' } },
    });
    expect(stolen.status!.code).toBe(Code.CODE_LOCKED);
    // Outside the tree, nothing is in the way
    expect((await bob.provider('touchFile', { ref: rel('free.txt') })).status!.code).toBe(Code.CODE_OK);
    const unlock = await dav('UNLOCK', `/dav/spaces/${spaceId}/tree/`, 'ann', {
      headers: { 'lock-token': `<${token}>` },
    });
    expect(unlock.status).toBe(204);
    expect((await bob.provider('touchFile', { ref: rel('tree/sub/new.txt') })).status!.code).toBe(
      Code.CODE_OK,
    );
  });

  it('depth 0: the folder’s members are not created, deleted or moved, but may change', async () => {
    const ann = await provider.as('u-ann');
    await ann.mkdir(at('flat'));
    await ann.write(at('flat/in.txt'), 'data');
    const token = await lockFolder('flat', '0');
    const bob = cs3('bob');
    expect((await bob.provider('touchFile', { ref: rel('flat/new.txt') })).status!.code).toBe(
      Code.CODE_LOCKED,
    );
    expect((await bob.provider('delete', { ref: rel('flat/in.txt') })).status!.code).toBe(Code.CODE_LOCKED);
    const changed = await bob.provider('setArbitraryMetadata', {
      ref: rel('flat/in.txt'),
      arbitraryMetadata: { metadata: { color: 'blue' } },
    });
    expect(changed.status!.code).toBe(Code.CODE_OK);
    await expect((await provider.as('u-bob')).write(at('flat/in.txt'), 'rewritten')).resolves.toMatchObject({
      size: 9,
    });
    await expect(ann.write(at('flat/new.txt'), 'x', { lockId: token })).resolves.toMatchObject({ size: 1 });
    await expect(provider.mkdir(at('flat/p/q'), { parents: true })).rejects.toMatchObject({ code: 'LOCKED' });
    // (someone who may not see the folder learns nothing of its lock)
    const carol = await provider.as('u-carol');
    const codeOf = (p: string) => carol.mkdir(at(p)).catch((err) => [err.code, err.message]);
    expect(await codeOf('flat/x')).toEqual(await codeOf('nowhere/x'));
  });

  it('depth infinity: a CS3 SetLock below it is a second lock, refused but shared on shared of the same user', async () => {
    const ann = await provider.as('u-ann');
    await ann.mkdir(at('locked/sub'), { parents: true });
    await ann.write(at('locked/sub/in.txt'), 'data');
    const token = await lockFolder('locked', 'infinity');
    const setLock = (user: string, type: LockType, p = 'locked/sub/in.txt') =>
      cs3(user).provider('setLock', {
        ref: rel(p),
        lock: { type, lockId: `app-${user}-${type}`, appName: 'app' },
      });
    expect((await setLock('bob', LockType.LOCK_TYPE_EXCL)).status!.code).toBe(Code.CODE_LOCKED);
    expect((await setLock('bob', LockType.LOCK_TYPE_SHARED)).status!.code).toBe(Code.CODE_LOCKED);
    // (the holder too: an exclusive lock is the only one on what it covers)
    expect((await setLock('ann', LockType.LOCK_TYPE_EXCL)).status!.code).toBe(Code.CODE_LOCKED);
    expect((await now('locked/sub/in.txt')).lock).toBeUndefined();
    await dav('UNLOCK', `/dav/spaces/${spaceId}/locked/`, 'ann', { headers: { 'lock-token': `<${token}>` } });
    // Shared locks add up for their holder
    const shared = await dav('LOCK', `/dav/spaces/${spaceId}/locked/`, 'ann', {
      headers: { depth: 'infinity', timeout: 'Second-600' },
      body: LOCK.replace('<d:exclusive/>', '<d:shared/>'),
    });
    expect(shared.status).toBe(200);
    expect((await setLock('bob', LockType.LOCK_TYPE_SHARED)).status!.code).toBe(Code.CODE_LOCKED);
    expect((await setLock('ann', LockType.LOCK_TYPE_SHARED)).status!.code).toBe(Code.CODE_OK);
    // Outside the tree, nothing is in the way
    await ann.write(at('unlocked.txt'), 'data');
    expect((await setLock('bob', LockType.LOCK_TYPE_EXCL, 'unlocked.txt')).status!.code).toBe(Code.CODE_OK);
  });

  it('an app’s lock on a folder guards the folder, not its members, through both doors', async () => {
    const ann = await provider.as('u-ann');
    await ann.mkdir(at('app-locked'));
    await ann.write(at('app-locked/in.txt'), 'data');
    const set = await cs3('ann').provider('setLock', {
      ref: rel('app-locked'),
      lock: { type: LockType.LOCK_TYPE_EXCL, lockId: 'app-lock-1', appName: 'some app' },
    });
    expect(set.status!.code).toBe(Code.CODE_OK);
    const bob = await provider.as('u-bob');
    // Its members, as a CS3 provider has them: created, changed and deleted through both doors
    await expect(bob.write(at('app-locked/api.txt'), 'x')).resolves.toMatchObject({ size: 1 });
    expect((await dav('PUT', `/dav/spaces/${spaceId}/app-locked/dav.txt`, 'bob', { body: 'y' })).status).toBe(
      201,
    );
    expect((await dav('DELETE', `/dav/spaces/${spaceId}/app-locked/in.txt`, 'bob')).status).toBe(204);
    // The folder itself, through both doors: not without the lock
    await expect(bob.setMetadata(at('app-locked'), { color: 'red' })).rejects.toMatchObject({
      code: 'LOCKED',
    });
    const pp = await dav('PROPPATCH', `/dav/spaces/${spaceId}/app-locked/`, 'bob', {
      body: PP('<x:color>red</x:color>'),
    });
    expect(pp.status).toBe(423);
    expect((await dav('DELETE', `/dav/spaces/${spaceId}/app-locked/`, 'bob')).status).toBe(423);
    expect((await now('app-locked')).metadata ?? {}).not.toHaveProperty('color');
  });
});
