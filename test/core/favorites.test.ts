/**
 * Favorites through the provider: one user's marks, shown to that user only (`favorite` field),
 * listed while the user can still see them, announced, and never a change of the resource. Runs on
 * every driver with the capability; the POSIX one also across processes sharing a root.
 */
import fs from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../../src/drivers/memory/index.js';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import {
  type Driver,
  fromLetters,
  ROLES,
  type Space,
  StaticIdentitySource,
  StorageError,
  type StorageEvent,
  StorageProvider,
} from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const drivers: [string, () => Promise<{ driver: Driver; root?: string }>][] = [
  ['memory', async () => ({ driver: createMemoryDriver() })],
  [
    'posix',
    async () => {
      const root = await tempRoot('fav');
      return { driver: await createPosixDriver({ root }), root };
    },
  ],
];

describe.each(drivers)('favorites on %s', (name, make) => {
  let system: StorageProvider;
  let identity: StaticIdentitySource;
  let root: string | undefined;
  let n = 0;

  beforeAll(async () => {
    identity = await StaticIdentitySource.create({
      users: [
        { id: 'ann', username: 'ann' },
        { id: 'bob', username: 'bob' },
        { id: 'eve', username: 'eve' },
      ],
    });
    const made = await make();
    root = made.root;
    system = new StorageProvider({ drivers: made.driver, identity });
    return () => system.close();
  });

  /** A project space where ann edits and bob views; eve has nothing. */
  async function arrange(): Promise<Space> {
    const sp = await system.createSpace({ type: 'project', name: `fav ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    await system.mkdir(at('docs'));
    await system.write(at('docs/a.txt'), 'a');
    await system.write(at('docs/b.txt'), 'b');
    await system.setGrant(at(''), {
      grantee: { type: 'user', id: 'ann' },
      permissions: fromLetters(ROLES.editor),
    });
    await system.setGrant(at(''), {
      grantee: { type: 'user', id: 'bob' },
      permissions: fromLetters(ROLES.viewer),
    });
    return sp;
  }

  it('shows each user their own marks, and a viewer may mark', async () => {
    const sp = await arrange();
    const at = (p: string) => ({ space: sp.id, path: p });
    const ann = await system.as('ann');
    const bob = await system.as('bob');
    await ann.setFavorite(at('docs/a.txt'), true);
    await bob.setFavorite(at('docs/b.txt'), true);
    await bob.setFavorite(at('docs'), true);
    const fields = ['favorite'] as const;
    const seen = async (who: StorageProvider) => {
      const out: Record<string, boolean | undefined> = {};
      for await (const i of who.list(at('docs'), { fields: [...fields] })) out[i.name] = i.favorite;
      out.docs = (await who.stat(at('docs'), { fields: [...fields] })).favorite;
      return out;
    };
    expect(await seen(ann)).toEqual({ 'a.txt': true, 'b.txt': false, docs: false });
    expect(await seen(bob)).toEqual({ 'a.txt': false, 'b.txt': true, docs: true });
    // Only when asked for, and never for the system (nobody's marks).
    expect((await ann.stat(at('docs/a.txt'))).favorite).toBeUndefined();
    expect((await system.stat(at('docs/a.txt'), { fields: [...fields] })).favorite).toBeUndefined();
    await ann.setFavorite(at('docs/a.txt'), false);
    expect((await ann.stat(at('docs/a.txt'), { fields: [...fields] })).favorite).toBe(false);
  });

  it('refuses what the user cannot see, and the system, and changes nothing of the resource', async () => {
    const sp = await arrange();
    const at = (p: string) => ({ space: sp.id, path: p });
    const before = await system.stat(at('docs/a.txt'), { metadataKeys: '*' });
    const root0 = await system.stat(at(''));
    const eve = await system.as('eve');
    await expect(eve.setFavorite(at('docs/a.txt'), true)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(system.setFavorite(at('docs/a.txt'), true)).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    await expect((await system.as('ann')).setFavorite(at('docs/none.txt'), true)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    const bob = await system.as('bob');
    await bob.setFavorite(at('docs/a.txt'), true);
    const after = await system.stat(at('docs/a.txt'), { metadataKeys: '*' });
    expect(after.etag).toBe(before.etag);
    expect(after.mtime).toBe(before.mtime);
    expect(after.metadata ?? {}).toEqual(before.metadata ?? {});
    expect((await system.stat(at(''))).etag).toBe(root0.etag);
    for await (const f of eve.listFavorites()) throw new Error(`eve sees ${f.path}`);
  });

  it('lists what the user can still see: not what was deleted (until restored), nor what a grant no longer shows', async () => {
    const sp = await arrange();
    const at = (p: string) => ({ space: sp.id, path: p });
    const bob = await system.as('bob');
    await bob.setFavorite(at('docs/a.txt'), true);
    await bob.setFavorite(at('docs'), true);
    const paths = async () => {
      const out: string[] = [];
      for await (const f of bob.listFavorites()) {
        expect(f.favorite).toBe(true);
        if (f.id.spaceId === sp.id) out.push(f.path); // (bob's marks of the other tests too)
      }
      return out.sort();
    };
    expect(await paths()).toEqual(['/docs', '/docs/a.txt']);
    // Moves are followed (marks are by id).
    await system.move(at('docs'), at('papers'));
    expect(await paths()).toEqual(['/papers', '/papers/a.txt']);
    // Deleted: gone from the list; restored from the trash: back.
    await system.delete(at('papers/a.txt'));
    expect(await paths()).toEqual(['/papers']);
    const [item] = await collectAll(system.listTrash(sp.id));
    await system.restoreTrash(sp.id, item!.key);
    expect(await paths()).toEqual(['/papers', '/papers/a.txt']);
    // A deny on the folder hides both from bob; lifting it shows them again.
    await system.setGrant(at('papers'), {
      grantee: { type: 'user', id: 'bob' },
      permissions: fromLetters(''),
      deny: true,
    });
    expect(await paths()).toEqual([]);
    await system.removeGrant(at('papers'), { type: 'user', id: 'bob' });
    expect(await paths()).toEqual(['/papers', '/papers/a.txt']);
  });

  it('announces a change of a mark with its user, and nothing when nothing changed', async () => {
    const sp = await arrange();
    const at = (p: string) => ({ space: sp.id, path: p });
    const got: StorageEvent[] = [];
    const off = system.events.on((e) => {
      if (e.spaceId === sp.id) got.push(e);
    });
    try {
      const ann = await system.as('ann');
      await ann.setFavorite(at('docs/a.txt'), true);
      await ann.setFavorite(at('docs/a.txt'), true);
      await ann.setFavorite(at('docs/a.txt'), false);
      expect(got.map((e) => [e.type, e.user, e.path])).toEqual([
        ['favorite.changed', 'ann', '/docs/a.txt'],
        ['favorite.changed', 'ann', '/docs/a.txt'],
      ]);
    } finally {
      off();
    }
  });

  it.skipIf(name !== 'posix')(
    'shares marks between processes on the same root, and keeps them on disk as links',
    async () => {
      const sp = await arrange();
      const at = (p: string) => ({ space: sp.id, path: p });
      const other = new StorageProvider({ drivers: await createPosixDriver({ root: root! }), identity });
      try {
        const here = await system.as('ann');
        const there = await other.as('ann');
        const a = await system.stat(at('docs/a.txt'));
        const ask = { fields: ['favorite' as const] };
        expect((await there.stat(at('docs/a.txt'), ask)).favorite).toBe(false);
        await here.setFavorite(at('docs/a.txt'), true);
        expect((await there.stat(at('docs/a.txt'), ask)).favorite).toBe(true);
        await there.setFavorite(at('docs/a.txt'), false);
        expect((await here.stat(at('docs/a.txt'), ask)).favorite).toBe(false);
        await there.setFavorite(at('docs/a.txt'), true);
        const links = await fs.readdir(`${root}/.stowage/favorites/ann`);
        expect(links).toContain(`${sp.id}!${a.id.opaqueId}`);
        // Once the folder's last change is old enough to trust its mtime, a change by the other
        // process still shows at once (the mtime moved).
        expect((await here.stat(at('docs/a.txt'), ask)).favorite).toBe(true);
        await new Promise((r) => setTimeout(r, 2200));
        expect((await here.stat(at('docs/a.txt'), ask)).favorite).toBe(true); // (kept, trusted now)
        await there.setFavorite(at('docs/a.txt'), false);
        expect((await here.stat(at('docs/a.txt'), ask)).favorite).toBe(false);
        await there.setFavorite(at('docs/a.txt'), true);
        // Stray entries there are ignored, not an error, whatever their names.
        const dir = `${root}/.stowage/favorites/ann`;
        for (const stray of ['notes.txt', 'x!', '!x', '%00!x', `${sp.id}!%zz`, `${sp.id}!A%2e`])
          await fs.writeFile(`${dir}/${stray}`, 'mine');
        expect((await here.stat(at('docs/a.txt'), ask)).favorite).toBe(true);
        const mine = await collectAll(here.listFavorites({ space: sp.id }));
        expect(mine.map((f) => f.path)).toEqual(['/docs/a.txt']);
        const marks = await system.drivers[0]!.features.favorites!.list('ann');
        expect([...marks].filter(([, s]) => s === sp.id)).toEqual([[a.id.opaqueId, sp.id]]);
        // A well-formed mark of an id that is no id at all is passed over too.
        await fs.writeFile(`${dir}/${sp.id}!a%2Fb`, 'mine');
        const again = await collectAll(here.listFavorites({ space: sp.id }));
        expect(again.map((f) => f.path)).toEqual(['/docs/a.txt']);
      } finally {
        await other.close();
      }
    },
  );

  it('looks only at the space asked for, and forgets the marks of a deleted space', async () => {
    const sp = await arrange();
    const other = await arrange();
    const bob = await system.as('bob');
    await bob.setFavorite({ space: sp.id, path: 'docs/a.txt' }, true);
    await bob.setFavorite({ space: other.id, path: 'docs/b.txt' }, true);
    const inSp = await collectAll(bob.listFavorites({ space: sp.id }));
    expect(inSp.map((f) => [f.id.spaceId, f.path])).toEqual([[sp.id, '/docs/a.txt']]);
    const driver = system.drivers[0]!;
    expect([...(await driver.features.favorites!.list('bob')).values()]).toContain(other.id);
    await system.updateSpace(other.id, { disabled: true });
    await system.deleteSpace(other.id);
    if ('idle' in driver) await (driver as unknown as { idle(): Promise<void> }).idle();
    expect([...(await driver.features.favorites!.list('bob')).values()]).not.toContain(other.id);
    expect((await collectAll(bob.listFavorites())).some((f) => f.id.spaceId === sp.id)).toBe(true);
  });

  it('is refused by a storage without the capability', async () => {
    const d = createMemoryDriver();
    const { favorites: _, ...features } = d.features;
    const bare: Driver = {
      kind: d.kind,
      storageId: d.storageId,
      features,
      listSpaces: (f) => d.listSpaces(f),
      getSpace: (k) => d.getSpace(k),
      stat: (r, o) => d.stat(r, o),
      list: (r, o) => d.list(r, o),
      read: (r, o) => d.read(r, o),
      write: (r, b, o) => d.write(r, b, o),
      mkdir: (r, o) => d.mkdir(r, o),
      delete: (r, o) => d.delete(r, o),
      move: (a, b, o) => d.move(a, b, o),
      close: () => d.close(),
    };
    const p = new StorageProvider({ drivers: bare, identity });
    const sp = await p.createSpace({ type: 'personal', name: 'Ann', owner: { id: 'ann', username: 'ann' } });
    await p.write({ space: sp.id, path: 'x.txt' }, 'x');
    const ann = await p.as('ann');
    const err = await ann.setFavorite({ space: sp.id, path: 'x.txt' }, true).catch((e) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err.code).toBe('UNIMPLEMENTED');
    expect(
      (await ann.stat({ space: sp.id, path: 'x.txt' }, { fields: ['favorite'] })).favorite,
    ).toBeUndefined();
  });
});

async function collectAll<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
