/**
 * A file replaced by a write, a restored version, a move or a copy over it is never missing from
 * its path meanwhile: before, it was moved aside first (to its versions, the trash, a temp name)
 * and the new content renamed in after, so a listing, a download or a sync client looking in
 * between found nothing there (a soak saw a GET answer 404 during an overwrite). Now the old file
 * gets its second name first, as a hard link, and the rename replaces it whole.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { cachedRecordCount } from '../../src/drivers/posix/space.js';
import { collect, StorageProvider } from '../../src/index.js';
import { treeSizeErrors, usageErrors, walkSpace } from '../helpers/disk.js';
import { all } from '../helpers/iter.js';
import { tempRoot } from '../helpers/tmp.js';

describe('posix: replacing a file leaves its path in place until the new one is there', () => {
  it.each([true, false])(
    'write, restore of a version, move and copy over a file (trash %s)',
    async (trash) => {
      const root = await tempRoot('replace');
      /** What the path held at each point where the old file was put aside (ino, or missing). */
      const seen: [string, number | 'missing'][] = [];
      let watch: string | undefined;
      const driver = await createPosixDriver({
        root,
        trash,
        hooks: {
          afterRename: (op) => {
            if (!op.endsWith('-aside') || !watch) return;
            const st = fs.lstatSync(watch, { throwIfNoEntry: false });
            seen.push([op, st ? st.ino : 'missing']);
          },
        },
      });
      const s = new StorageProvider({ drivers: driver });
      try {
        const sp = await s.createSpace({ type: 'project', name: 'p' });
        const spaceRoot = path.join(root, 'spaces/project/p');
        const at = (p: string) => ({ space: sp.id, path: p });
        const ino = (p: string) => fs.lstatSync(path.join(spaceRoot, p)).ino;
        await s.write(at('f.txt'), 'one');
        await s.write(at('src.txt'), 'from a move');
        await s.write(at('copied.txt'), 'from a copy');
        watch = path.join(spaceRoot, 'f.txt');

        let before = ino('f.txt');
        await s.write(at('f.txt'), 'two'); // "one" becomes a version
        expect(seen.pop()).toEqual(['write-aside', before]);
        before = ino('f.txt');
        const [v] = await s.listVersions(at('f.txt'));
        await s.restoreVersion(at('f.txt'), v!.key); // "two" becomes a version
        expect(seen.pop()).toEqual(['restore-version-aside', before]);
        expect(await text(s, at('f.txt'))).toBe('one');
        const [w] = await s.listVersions(at('f.txt'));
        expect((await collect((await s.readVersion(at('f.txt'), w!.key)).body!)).toString()).toBe('two');
        before = ino('f.txt');
        await s.move(at('src.txt'), at('f.txt'), { overwrite: true });
        expect(seen.pop()).toEqual(['move-aside', before]);
        expect(await text(s, at('f.txt'))).toBe('from a move');
        before = ino('f.txt');
        await s.copy(at('copied.txt'), at('f.txt'), { overwrite: true });
        expect(seen.pop()).toEqual(['copy-aside', before]);
        expect(await text(s, at('f.txt'))).toBe('from a copy');
        expect(seen).toEqual([]);

        // What was replaced is where it belongs, under one name only.
        if (trash) {
          const items = await all(s.listTrash(sp.id));
          expect(items.map((i) => i.path)).toEqual(['/f.txt', '/f.txt']);
        }
        const nodes = await walkSpace(spaceRoot);
        expect(nodes.filter((n) => n.rec?.tr).map((n) => n.rel)).toEqual([]);
        const links = fs
          .readdirSync(spaceRoot, { recursive: true, encoding: 'utf8' })
          .map((rel) => path.join(spaceRoot, rel))
          .filter((p) => fs.lstatSync(p).isFile() && fs.lstatSync(p).nlink !== 1);
        expect(links).toEqual([]);
        expect(await treeSizeErrors(spaceRoot)).toEqual([]);
        expect(await usageErrors(spaceRoot)).toEqual([]);
      } finally {
        await s.close();
      }
    },
  );
  it('forgets the cached records of files it puts in the trash or among the versions', async () => {
    const root = await tempRoot('reccache');
    const driver = await createPosixDriver({ root });
    const s = new StorageProvider({ drivers: driver });
    try {
      const sp = await s.createSpace({ type: 'project', name: 'p' });
      const at = (p: string) => ({ space: sp.id, path: p });
      const n = 60;
      await s.mkdir(at('d'));
      for (let i = 0; i < n; i++) await s.write(at(`d/f${i}`), `v1 ${i}`);
      await new Promise((r) => setTimeout(r, 1100)); // (only records settled for a second are kept)
      const listed = async () => {
        for await (const _ of s.list(at('d'))) {
          // each entry's record is read, and kept
        }
      };
      await listed();
      const full = cachedRecordCount();
      expect(full).toBeGreaterThanOrEqual(n);
      // Overwritten: the old inodes go among the versions; deleted: into the trash.
      for (let i = 0; i < n / 2; i++) await s.write(at(`d/f${i}`), `v2 ${i}`);
      for (let i = n / 2; i < n; i++) await s.delete(at(`d/f${i}`));
      // (a few others may be read and kept meanwhile: the version folders, say)
      expect(cachedRecordCount()).toBeLessThanOrEqual(full - n + 5);
    } finally {
      await s.close();
    }
  });
});

async function text(s: StorageProvider, ref: { space: string; path: string }): Promise<string> {
  return (await collect((await s.read(ref)).body!)).toString();
}
