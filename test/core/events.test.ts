import { describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../../src/drivers/memory/index.js';
import {
  fromLetters,
  ROLES,
  StaticIdentitySource,
  StorageError,
  type StorageEvent,
  StorageProvider,
} from '../../src/index.js';

async function setup() {
  const identity = await StaticIdentitySource.create({
    users: [
      { id: 'u-ann', username: 'ann', createSpaces: true },
      { id: 'u-bob', username: 'bob' },
    ],
  });
  const storage = new StorageProvider({ drivers: createMemoryDriver(), identity });
  const events: StorageEvent[] = [];
  storage.events.on((e) => events.push(e));
  return { storage, events };
}

describe('events', () => {
  it('announces a write that completes an upload as upload.finished too, with the upload id', async () => {
    const { storage, events } = await setup();
    const ann = await storage.as('ann', { origin: 'cs3' });
    const sp = await ann.createSpace({ type: 'project', name: 'Uploads' });
    await ann.write({ space: sp.id, path: 'big.bin' }, 'bytes', { upload: { id: 'tus-1' } });
    await ann.write({ space: sp.id, path: 'plain.txt' }, 'x');
    const done = events.filter((e) => e.type === 'upload.finished');
    expect(done.map((e) => [e.path, e.key, e.origin, e.user, e.size])).toEqual([
      ['/big.bin', 'tus-1', 'cs3', 'u-ann', 5],
    ]);
  });

  it('announces what offboarding changes: the disabled personal space and each removed grant', async () => {
    const { storage, events } = await setup();
    const ann = await storage.as('ann');
    const sp = await ann.createSpace({ type: 'project', name: 'Offboard' });
    await ann.mkdir({ space: sp.id, path: 'a' });
    await ann.setGrant(
      { space: sp.id, path: 'a' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.viewer) },
    );
    const home = await (await storage.as('bob')).personalSpace();
    events.length = 0;
    await storage.offboardUser('u-bob', { removeGrants: true });
    expect(events.map((e) => [e.type, e.spaceId, e.path])).toEqual(
      expect.arrayContaining([
        ['space.updated', home.id, '/'],
        ['grant.changed', sp.id, '/a'],
      ]),
    );
  });

  it('announces every kind of change with type, origin, user, ids and paths', async () => {
    const { storage, events } = await setup();
    const ann = await storage.as('ann', { origin: 'webdav' });
    const sp = await ann.createSpace({ type: 'project', name: 'Events' });
    const at = (p: string) => ({ space: sp.id, path: p });
    await ann.mkdir(at('a'));
    const f = await ann.write(at('a/f.txt'), 'one');
    await ann.write(at('a/f.txt'), 'two');
    await ann.move(at('a/f.txt'), at('g.txt'));
    await ann.copy(at('g.txt'), at('h.txt'));
    await ann.setMetadata(at('g.txt'), { k: 'v' });
    await ann.setGrant(at('a'), {
      grantee: { type: 'user', id: 'u-bob' },
      permissions: fromLetters(ROLES.viewer),
    });
    await ann.setLock(at('g.txt'), { lockId: 'l1', type: 'exclusive' });
    await ann.unlock(at('g.txt'), 'l1');
    const gone = await ann.delete(at('h.txt'));
    const items = [];
    for await (const i of ann.listTrash(sp.id)) items.push(i);
    const [item] = items;
    await ann.restoreTrash(sp.id, item!.key);
    await ann.delete(at('h.txt'));
    await ann.purgeTrash(sp.id);
    await ann.updateSpace(sp.id, { description: 'changed' });
    const types = events.map((e) => `${e.type} ${e.path ?? ''}`);
    expect(types).toEqual(
      [
        'space.created /',
        'created /a',
        'created /a/f.txt',
        'updated /a/f.txt',
        'moved /g.txt',
        'created /h.txt',
        'metadata.changed /g.txt',
        'grant.changed /a',
        'lock.changed /g.txt',
        'lock.changed /g.txt',
        'trashed /h.txt',
        'restored /h.txt',
        'trashed /h.txt',
        'deleted ',
        'space.updated /',
      ].filter((t) => t !== 'grant.changed /'),
    );
    for (const e of events) {
      expect(e.origin).toBe('webdav');
      expect(e.user).toBe('u-ann');
      expect(e.spaceId).toBe(sp.id);
      expect(typeof e.id).toBe('string');
    }
    const moved = events.find((e) => e.type === 'moved')!;
    expect(moved.resourceId).toEqual(f.id);
    expect(moved.from?.path).toBe('/a/f.txt');
    expect(events.find((e) => e.type === 'created' && e.path === '/h.txt')!.copiedFrom).toEqual(f.id);
    expect(events.find((e) => e.type === 'trashed')!.resourceId).toEqual(gone.id);
    // The system provider's own changes come from 'api', with no user.
    await storage.write(at('sys.txt'), 'x');
    expect(events.at(-1)).toMatchObject({ type: 'created', origin: 'api', path: '/sys.txt' });
    expect(events.at(-1)!.user).toBeUndefined();
  });

  it('lets a before-hook refuse a change before it touches the driver', async () => {
    const { storage, events } = await setup();
    const sp = await storage.createSpace({ type: 'project', name: 'Ingest' });
    const seen: unknown[] = [];
    const off = storage.events.before((c) => {
      seen.push(c);
      if (c.op === 'write' && !c.path?.endsWith('.h5')) {
        throw new StorageError('PERMISSION_DENIED', 'only HDF5 files are accepted here');
      }
    });
    await expect(storage.write({ space: sp.id, path: 'notes.txt' }, 'x', { size: 1 })).rejects.toThrow(
      /HDF5/,
    );
    await expect(storage.stat({ space: sp.id, path: 'notes.txt' })).rejects.toThrow();
    await storage.write({ space: sp.id, path: 'run.h5' }, 'data');
    expect(seen).toContainEqual({ op: 'write', origin: 'api', spaceId: sp.id, path: '/notes.txt', size: 1 });
    expect(events.filter((e) => e.type === 'created').map((e) => e.path)).toEqual(['/run.h5']);
    off();
    await storage.write({ space: sp.id, path: 'notes.txt' }, 'x');
  });

  it('streams events to an async iterator until aborted, and fails a reader that falls too far behind', async () => {
    const { storage } = await setup();
    const sp = await storage.createSpace({ type: 'project', name: 'Stream' });
    const ac = new AbortController();
    const got: string[] = [];
    const reader = (async () => {
      for await (const e of storage.events.stream({ signal: ac.signal })) {
        got.push(`${e.type} ${e.path}`);
        if (got.length === 2) ac.abort();
      }
    })();
    await storage.write({ space: sp.id, path: 'a' }, '1');
    await storage.write({ space: sp.id, path: 'b' }, '2');
    await reader;
    expect(got).toEqual(['created /a', 'created /b']);
    const slow = storage.events.stream({ buffer: 2 });
    const first = slow.next(); // subscribed, then nobody reads
    for (const n of ['c', 'd', 'e', 'f']) await storage.write({ space: sp.id, path: n }, n);
    expect((await first).value?.path).toBe('/c');
    expect((await slow.next()).value?.path).toBe('/d');
    expect((await slow.next()).value?.path).toBe('/e');
    await expect(slow.next()).rejects.toThrow(/fell more than 2 events behind/); // /f was not kept
  });

  it('keeps the event bus from sessions', async () => {
    const { storage } = await setup();
    const bob = await storage.as('bob');
    expect(() => bob.events).toThrow(/system provider/);
  });
});
