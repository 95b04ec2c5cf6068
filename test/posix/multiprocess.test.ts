import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { runNode } from '../helpers/child.js';
import { litter, treeSizeErrors, usageErrors, walkSpace } from '../helpers/disk.js';
import { tempRoot } from '../helpers/tmp.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/churn-child.mjs');

const run = (args: string[]) => runNode(child, args);

describe('posix: several processes writing into one space', () => {
  it('keeps every tree size exact, every id unique and resolvable, every checksum true', async () => {
    const root = await tempRoot('churn');
    const setup = new StorageProvider({ drivers: await createPosixDriver({ root }) });
    const sp = await setup.createSpace({ type: 'project', name: 'churn' });
    for (const d of ['d0/s0/t0', 'd1/s0', 'd2/s1'])
      await setup.mkdir({ space: sp.id, path: d }, { parents: true });
    await setup.close();

    const processes = 4;
    const ops = Number(process.env.STOWAGE_CHURN_OPS ?? 1500);
    const results = await Promise.all(
      Array.from({ length: processes }, (_, i) => run([root, String(i + 1), String(ops)])),
    );
    for (const r of results) expect(r.code, r.out).toBe(0);
    if (process.env.STOWAGE_CHURN_VERBOSE) console.log(results.map((r) => r.out).join(''));

    const spaceRoot = path.join(root, 'spaces/project/churn');
    expect(await treeSizeErrors(spaceRoot)).toEqual([]);

    const driver = await createPosixDriver({ root });
    const s = new StorageProvider({ drivers: driver });
    try {
      await driver.idle();
      const left = await litter(spaceRoot);
      if (left.length)
        console.log(
          'LITTER',
          left,
          await Promise.all(
            left.map((n) =>
              fs
                .readdir(path.join(spaceRoot, '.stowage/tmp', n), { recursive: true })
                .catch((e) => String(e)),
            ),
          ),
        );
      expect(left).toEqual([]);
      const nodes = await walkSpace(spaceRoot);
      expect(nodes.length).toBeGreaterThan(5);
      const ids = nodes.map((n) => n.rec?.id);
      expect(ids.every(Boolean)).toBe(true);
      expect(new Set(ids).size).toBe(nodes.length);
      for (const n of nodes) {
        const info = await s.stat({ resourceId: { storageId: '', spaceId: sp.id, opaqueId: n.rec!.id } });
        expect(info.path).toBe(`/${n.rel}`);
        if (n.type === 'file') {
          const content = await fs.readFile(path.join(spaceRoot, n.rel));
          expect(info.checksums?.sha1).toBe(createHash('sha1').update(content).digest('hex'));
        }
      }
      const space = await s.getSpace(sp.id);
      expect(space.usage?.files).toBe(nodes.filter((n) => n.type === 'file').reduce((a, n) => a + n.size, 0));
      // Trash and versions are counted exactly too, and used is the sum.
      expect(await usageErrors(spaceRoot)).toEqual([]);
      expect(space.used).toBe(space.usage!.files + space.usage!.trash + space.usage!.versions);
      expect(space.usage!.trash).toBeGreaterThan(0);
      expect(space.usage!.versions).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });
});
