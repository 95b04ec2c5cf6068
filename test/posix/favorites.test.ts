import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const open: StorageProvider[] = [];
afterAll(async () => {
  for (const s of open) await s.close();
});

async function setup(label: string, opts: { trash?: boolean } = {}) {
  const root = await tempRoot(label);
  const driver: PosixDriver = await createPosixDriver({ root, ...opts });
  const s = new StorageProvider({ drivers: driver });
  open.push(s);
  const sp = await s.createSpace({ type: 'project', name: label });
  const fav = driver.features.favorites!;
  const at = (p: string) => ({ space: sp.id, path: p });
  const marked = async (user: string) => [...(await fav.list(user)).keys()].sort();
  return { root, driver, s, sp, fav, at, marked };
}

describe('posix: favorite marks of what is gone', () => {
  it('drops the marks of what a delete removes for good (no trash), a whole folder of them', async () => {
    const { driver, s, fav, at, marked } = await setup('fav-notrash', { trash: false });
    await s.mkdir(at('d'));
    const files = [];
    for (let i = 0; i < 40; i++) files.push(await s.write(at(`d/f${i}.txt`), 'x'));
    const d = await s.stat(at('d'));
    const keep = await s.write(at('keep.txt'), 'k');
    for (const f of files) await fav.set('ann', f.id, true);
    await fav.set('ann', d.id, true);
    await fav.set('ann', keep.id, true);
    await fav.set('bob', files[3]!.id, true);
    const single = await s.write(at('single.txt'), 's');
    await fav.set('bob', single.id, true);
    await s.delete(at('single.txt'));
    await driver.idle();
    expect(await marked('bob')).toEqual([files[3]!.id.opaqueId]);
    await s.delete(at('d'));
    await driver.idle();
    expect(await marked('ann')).toEqual([keep.id.opaqueId]);
    expect(await marked('bob')).toEqual([]);
  });

  it('fsck finds marks of resources deleted around Stowage and drops them with --repair, not those in the trash', async () => {
    const { root, driver, s, sp, fav, at, marked } = await setup('fav-fsck');
    const gone = await s.write(at('gone.txt'), 'g');
    const trashed = await s.write(at('trashed.txt'), 't');
    const live = await s.write(at('live.txt'), 'l');
    await s.mkdir(at('dir'));
    const inside = await s.write(at('dir/inside.txt'), 'i');
    for (const f of [gone, trashed, live, inside]) await fav.set('ann', f.id, true);
    await fav.set('ann', { storageId: '', spaceId: sp.id, opaqueId: sp.id }, true); // the root
    // (private to Stowage's account: who marked what)
    expect((await fs.stat(path.join(root, '.stowage', 'favorites'))).mode & 0o777).toBe(0o700);
    await s.delete(at('trashed.txt'));
    await s.delete(at('dir'));
    await fs.rm(path.join(await driver.spacePath(sp.id), 'gone.txt'));
    await new Promise((r) => setTimeout(r, 20));
    const [check] = await driver.fsck({ space: sp.id });
    expect(check!.problems['favorite-orphan']).toBe(1);
    expect(check!.examples.find((e) => e.kind === 'favorite-orphan')?.detail).toBe(gone.id.opaqueId);
    expect(await marked('ann')).toHaveLength(5); // (only reported)
    const [repaired] = await driver.fsck({ space: sp.id, repair: true });
    expect(repaired!.problems['favorite-orphan']).toBe(1);
    expect(await marked('ann')).toEqual(
      [trashed.id.opaqueId, live.id.opaqueId, inside.id.opaqueId, sp.id].sort(),
    );
    const [clean] = await driver.fsck({ space: sp.id });
    expect(clean!.problems['favorite-orphan']).toBeUndefined();
  });
});
