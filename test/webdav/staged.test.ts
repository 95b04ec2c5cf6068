/** The running count of the bytes users stage in chunked uploads, against the folder it counts. */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { StagedChunks } from '../../src/webdav/staged.js';
import { tempRoot } from '../helpers/tmp.js';

describe('staged chunks', () => {
  it('counts a user’s chunks from the folder, follows what the door does, and counts again from the folder in time', async () => {
    const dir = await tempRoot('staged');
    const user = path.join(dir, 'u');
    await fsp.mkdir(path.join(user, 't1'), { recursive: true });
    await fsp.mkdir(path.join(user, 't2'), { recursive: true });
    await fsp.writeFile(path.join(user, 't1', '0'), 'x'.repeat(100));
    await fsp.writeFile(path.join(user, 't1', '.total'), '1000'); // no chunk
    await fsp.writeFile(path.join(user, 't1', '.0.tmp'), 'x'.repeat(50)); // a chunk being written by another
    await fsp.writeFile(path.join(user, 't2', '0'), 'y'.repeat(30));

    const kept = new StagedChunks(60_000);
    const t = await kept.of(user);
    expect([t.used('t1'), t.used('t2'), t.usedAll()]).toEqual([100, 30, 130]);
    const w = t.start('t1', '0');
    w.grow(40); // a chunk being written counts from its first bytes
    expect([t.used('t1'), t.usedAll()]).toEqual([140, 170]);
    // Sent again while the first try still comes (a stalled connection): only the latest counts.
    const again = t.start('t1', '0');
    again.grow(30);
    w.grow(10);
    expect([t.used('t1'), t.usedAll()]).toEqual([130, 160]);
    again.commit(100); // in place of chunk 0
    expect([t.used('t1'), t.usedAll()]).toEqual([30, 60]);
    w.commit(30); // the first try lands last, over the second
    expect([t.used('t1'), t.usedAll(), t.idle]).toEqual([50, 80, true]);
    const given = t.start('t1', '1');
    given.grow(99);
    given.abandon();
    expect([t.used('t1'), t.idle]).toEqual([50, true]);
    t.forget('t2');
    expect([t.used('t2'), t.usedAll()]).toEqual([0, 50]);
    expect(await kept.of(user)).toBe(t); // the same count until it is a minute old

    // Counted again from the folder once it is old: what another process did shows then.
    const fresh = new StagedChunks(0);
    const f = await fresh.of(user);
    f.start('t1', '9').grow(7); // bytes being written survive a recount
    await fsp.rm(path.join(user, 't1'), { recursive: true });
    await fsp.writeFile(path.join(user, 't2', '1'), 'z'.repeat(5));
    expect(await fresh.of(user)).toBe(f);
    expect([f.used('t1'), f.used('t2'), f.usedAll()]).toEqual([7, 35, 42]);
    expect((await fresh.of(path.join(dir, 'nobody'))).usedAll()).toBe(0);
    // A folder that cannot be read is no count of nothing (it would let a user past the quota).
    await fsp.symlink('loop', path.join(dir, 'loop'));
    await expect(fresh.of(path.join(dir, 'loop'))).rejects.toThrow(/ELOOP/);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('counts a chunk once when two tries of it land together, each measuring what is in place', async () => {
    const dir = await tempRoot('staged-place');
    const folder = path.join(dir, 'u', 't');
    await fsp.mkdir(folder, { recursive: true });
    const t = await new StagedChunks(60_000).of(path.dirname(folder));
    const dest = path.join(folder, '00001');
    const size = 1024;
    /** One try of the chunk: written whole to its temp file, then put in place as the door does. */
    const land = async (n: number) => {
      const w = t.start('t', '00001');
      const tmp = path.join(folder, `.00001.${n}`);
      await fsp.writeFile(tmp, Buffer.alloc(size, n));
      w.grow(size);
      return w.place(async () => {
        const over = (await fsp.stat(dest).catch(() => undefined))?.size ?? 0;
        await new Promise((r) => setTimeout(r, 20)); // the other try measures meanwhile
        await fsp.rename(tmp, dest);
        return over;
      });
    };
    await Promise.all([land(1), land(2)]);
    expect([t.used('t'), t.usedAll(), t.idle]).toEqual([size, size, true]);
    expect((await fsp.stat(dest)).size).toBe(size);
    // A try whose move fails is given up: its bytes no longer count, the chunk in place still does.
    const w = t.start('t', '00001');
    w.grow(size);
    await expect(w.place(async () => Promise.reject(new Error('disk gone')))).rejects.toThrow('disk gone');
    expect([t.used('t'), t.idle]).toEqual([size, true]);
    await fsp.rm(dir, { recursive: true, force: true });
  });
});
