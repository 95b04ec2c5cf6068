/**
 * fsck on the POSIX driver's id index: what an ordinary folder move leaves (entries below it
 * keep their old path, found through their parent's entry) is no problem; an entry that leads
 * nowhere is one, and --repair rewrites it.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

let driver: PosixDriver;
let s: StorageProvider;

beforeAll(async () => {
  driver = await createPosixDriver({ root: await tempRoot('fsck') });
  s = new StorageProvider({ drivers: driver });
});
afterAll(() => s?.close());

describe('fsck and the id index', () => {
  it('finds nothing wrong after folder moves, and rewrites an entry that leads nowhere', async () => {
    const sp = await s.createSpace({ type: 'project', name: 'moves' });
    const at = (p: string) => ({ space: sp.id, path: p });
    await s.mkdir(at('a/deep'), { parents: true });
    const f = await s.write(at('a/deep/f.txt'), 'one');
    const g = await s.write(at('a/g.txt'), 'two');
    await s.move(at('a'), at('b'));
    await s.mkdir(at('c'));
    await s.move(at('b'), at('c/b2'));
    const [after] = await driver.fsck({ space: sp.id });
    expect(after!.problems).toEqual({});
    // (and the ids still lead to the files)
    expect((await s.stat({ resourceId: f.id })).path).toBe('/c/b2/deep/f.txt');
    expect((await s.stat({ resourceId: g.id })).path).toBe('/c/b2/g.txt');

    // An entry naming another name than the node's leads nowhere: reported, then rewritten.
    const id = f.id.opaqueId;
    const link = path.join(await driver.spacePath(sp.id), '.stowage', 'ids', id.slice(0, 2), id);
    const target = await fsp.readlink(link);
    await fsp.unlink(link);
    await fsp.symlink(target.replace(/f\.txt$/, 'other.txt'), link);
    const [found] = await driver.fsck({ space: sp.id });
    expect(found!.problems).toEqual({ 'index-entry': 1 });
    expect(found!.examples[0]).toMatchObject({ kind: 'index-entry', path: '/c/b2/deep/f.txt' });
    await driver.fsck({ space: sp.id, repair: true });
    const [clean] = await driver.fsck({ space: sp.id });
    expect(clean!.problems).toEqual({});
    expect(await fsp.readlink(link)).toMatch(/\/c\/b2\/deep\/f\.txt$/);
  });
});
