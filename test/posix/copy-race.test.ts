/**
 * A folder's copy walks its source outside the commit lock. A source moved or deleted meanwhile
 * leaves the walk with part of it (a tree that never was): the copy is refused, nothing is kept.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

let driver: PosixDriver;
let s: StorageProvider;
/** What to do between a copy's walk and its commit. */
let meanwhile: (() => Promise<unknown>) | undefined;

beforeAll(async () => {
  driver = await createPosixDriver({
    root: await tempRoot('copy-race'),
    hooks: {
      beforeCommit: async (op) => {
        const f = meanwhile;
        meanwhile = undefined;
        if (op === 'copy' && f) await f();
      },
    },
  });
  s = new StorageProvider({ drivers: driver });
});
afterAll(() => s?.close());

describe('posix: a copy whose source goes while it is copied', () => {
  it.each(['moved', 'deleted', 'replaced'])(
    'is refused when the source is %s, and leaves nothing',
    async (how) => {
      const sp = await s.createSpace({ type: 'project', name: `copy ${how}` });
      const at = (p: string) => ({ space: sp.id, path: p });
      await s.mkdir(at('src/sub'), { parents: true });
      for (const n of ['a', 'b']) await s.write(at(`src/sub/${n}.txt`), n);
      const usage = (await s.getQuota(at(''))).used;
      meanwhile = () =>
        how === 'moved'
          ? s.move(at('src'), at('elsewhere'))
          : how === 'deleted'
            ? s.delete(at('src'))
            : s.delete(at('src')).then(() => s.mkdir(at('src')));
      await expect(s.copy(at('src'), at('copy'))).rejects.toMatchObject({ code: 'ABORTED' });
      await expect(s.stat(at('copy'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
      // Nothing staged is left behind, and the usage counts no copy.
      expect((await s.getQuota(at(''))).used).toBe(usage);
      const tmp = path.join(await driver.spacePath(sp.id), '.stowage', 'tmp');
      expect((await fsp.readdir(tmp).catch(() => [])).filter((n) => n.startsWith('cp'))).toEqual([]);
      // Asked again, the copy is of what is there now.
      if (how === 'moved') {
        await s.copy(at('elsewhere'), at('copy'));
        expect((await s.stat(at('copy/sub/b.txt'))).size).toBe(1);
      }
    },
  );

  it('copies a source that only changed inside meanwhile, as the walk found it', async () => {
    const sp = await s.createSpace({ type: 'project', name: 'copy busy' });
    const at = (p: string) => ({ space: sp.id, path: p });
    await s.mkdir(at('src'));
    await s.write(at('src/a.txt'), 'a');
    meanwhile = () => s.write(at('src/late.txt'), 'late');
    const copy = await s.copy(at('src'), at('copy'));
    expect(copy.size).toBe(1);
    expect((await s.stat(at('src'))).size).toBe(5);
  });
});
