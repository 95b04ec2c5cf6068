/**
 * A tree deeper than a path can name: moving a deep tree into a deep folder makes paths longer
 * than PATH_MAX (4096 bytes), which no call by path reaches. Removing such a tree (a purge, a
 * deleted space) must still free every byte, not fail in the background and leave the bytes on
 * disk while the quota counts them gone.
 */
import { spawnSync } from 'node:child_process';
import fsp from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const drivers: PosixDriver[] = [];
const roots: string[] = [];
afterAll(async () => {
  for (const d of drivers) await d.close();
  // (GNU rm goes by folder, not by path: what a failure here left, at any depth, goes)
  for (const r of roots) spawnSync('rm', ['-rf', r]);
});

/** Files named `name` anywhere under `root` (find goes by folder, not by path: any depth). */
const found = (root: string, name: string) =>
  spawnSync('find', [root, '-name', name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);

describe('posix: trees deeper than a path can name', () => {
  it('frees every byte of a purged tree and of a deleted space whose paths outgrow PATH_MAX', async () => {
    const root = await tempRoot('deep-trees');
    roots.push(root);
    const logs: string[] = [];
    const driver = await createPosixDriver({
      root,
      log: (m, e) => logs.push(`${m}: ${(e as Error)?.message}`),
    });
    drivers.push(driver);
    const s = new StorageProvider({ drivers: driver });
    const N = 'n'.repeat(250);
    // Nine levels of 250-byte names: ~2,260 bytes each; one moved into the other: ~4,500.
    const chain = (top: string) => [top, ...Array<string>(9).fill(N)].join('/');
    const deepSpace = async (name: string) => {
      const sp = await s.createSpace({ type: 'project', name, quota: 10 * 1024 * 1024 });
      const at = (p: string) => ({ space: sp.id, path: p });
      for (const top of ['x1', 'x2']) await s.mkdir(at(chain(top)), { parents: true });
      await s.write(at(`${chain('x1')}/payload.bin`), Buffer.alloc(300_000, 1));
      await s.move(at('x1'), at(`${chain('x2')}/x1`));
      return { sp, at };
    };

    const { sp, at } = await deepSpace('deep');
    expect(found(root, 'payload.bin')).toHaveLength(1);
    expect((await s.getQuota(at(''))).used).toBe(300_000);
    await s.delete(at('x2'));
    await s.purgeTrash(sp.id);
    await driver.idle();
    expect(logs).toEqual([]);
    expect(found(root, 'payload.bin')).toEqual([]);
    expect((await s.getQuota(at(''))).used).toBe(0);
    const tmp = `${await driver.spacePath(sp.id)}/.stowage/tmp`;
    expect((await fsp.readdir(tmp)).filter((n) => !n.startsWith('live-'))).toEqual([]);

    // A whole space holding such a tree goes too.
    const other = await deepSpace('deep too');
    expect(found(root, 'payload.bin')).toHaveLength(1);
    await s.updateSpace(other.sp.id, { disabled: true });
    await s.deleteSpace(other.sp.id);
    await driver.idle();
    expect(logs).toEqual([]);
    expect(found(root, 'payload.bin')).toEqual([]);
    expect(await fsp.readdir(`${root}/.stowage/tmp`)).toEqual([]);
  });

  it('still refuses a path through a symlink put in the place of a folder it has just walked through', async () => {
    const root = await tempRoot('deep-real');
    roots.push(root);
    const driver = await createPosixDriver({ root });
    drivers.push(driver);
    const s = new StorageProvider({ drivers: driver });
    const sp = await s.createSpace({ type: 'project', name: 'real' });
    const at = (p: string) => ({ space: sp.id, path: p });
    await s.mkdir(at('a/b/c'), { parents: true });
    await s.write(at('a/b/c/f.txt'), 'inside');
    // Every folder on the way is now known real (and its locks and grants read).
    expect((await s.stat(at('a/b/c/f.txt'))).size).toBe(6);
    await s.getLock(at('a/b/c/f.txt')).catch(() => undefined);
    // Swapped for a symlink to a look-alike tree outside the space (its records copied too), at once.
    const b = `${await driver.spacePath(sp.id)}/a/b`;
    const outside = `${root}/outside`;
    expect(spawnSync('cp', ['-a', b, outside]).status).toBe(0);
    await fsp.appendFile(`${outside}/c/f.txt`, '+outside');
    await fsp.rename(b, `${root}/b-moved`);
    await fsp.symlink(outside, b);
    await expect(s.stat(at('a/b/c/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(s.read(at('a/b/c/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // (a parent reached through a symlink is no parent: nothing is written there)
    await expect(s.write(at('a/b/c/g.txt'), 'x')).rejects.toMatchObject({ reason: 'parent-missing' });
    expect((await fsp.readdir(`${outside}/c`)).filter((n) => !n.startsWith('.'))).toEqual(['f.txt']);
  });
});
