/**
 * What a space can still take: the POSIX driver reports the free space of the filesystem beneath,
 * so a space without a quota still says how much room it has (as Reva and Apache mod_dav do), and
 * a quota larger than the disk does not promise bytes the disk cannot hold.
 */
import fsp from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const drivers: PosixDriver[] = [];
afterAll(async () => {
  for (const d of drivers) await d.close();
});

/** Free bytes for unprivileged writers where `dir` is. */
async function free(dir: string): Promise<number> {
  const st = await fsp.statfs(dir);
  return st.bavail * st.bsize;
}

describe('posix: room left in a space', () => {
  it('is the filesystem’s free space without a quota, and the smaller of the two with one', async () => {
    const root = await tempRoot('free-space');
    const driver = await createPosixDriver({ root });
    drivers.push(driver);
    const s = new StorageProvider({ drivers: driver });
    // (other tests write meanwhile: the disk's free space moves by a little)
    const near = (a: number | undefined, b: number) => {
      expect(a).toBeDefined();
      expect(Math.abs(a! - b)).toBeLessThan(256 * 1024 * 1024);
    };

    const open = await s.createSpace({ type: 'project', name: 'no quota' });
    const q = await s.getQuota({ space: open.id, path: '' });
    expect(q.total).toBeUndefined();
    expect(q.remaining).toBeUndefined();
    near(q.available, await free(root));

    const small = await s.createSpace({ type: 'project', name: 'small quota', quota: 10_000 });
    await s.write({ space: small.id, path: 'f' }, Buffer.alloc(4000));
    expect(await s.getQuota({ space: small.id, path: '' })).toEqual({
      total: 10_000,
      used: 4000,
      usage: { files: 4000, trash: 0, versions: 0 },
      remaining: 6000,
      available: 6000,
    });

    // A quota larger than the disk: what can be written is what the disk has.
    const disk = await free(root);
    const big = await s.createSpace({ type: 'project', name: 'big quota', quota: disk + 2 ** 40 });
    const b = await s.getQuota({ space: big.id, path: '' });
    expect(b.remaining).toBeGreaterThan(disk);
    near(b.available, disk);
    expect(b.available).toBeLessThan(b.remaining!);
  });
});
