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
    t.grow('t1', 40); // a chunk being written counts from its first bytes
    expect([t.used('t1'), t.usedAll()]).toEqual([140, 170]);
    t.commit('t1', 40, 100); // in place of chunk 0
    expect([t.used('t1'), t.usedAll()]).toEqual([40, 70]);
    t.forget('t2');
    expect([t.used('t2'), t.usedAll()]).toEqual([0, 40]);
    expect(await kept.of(user)).toBe(t); // the same count until it is a minute old

    // Counted again from the folder once it is old: what another process did shows then.
    const fresh = new StagedChunks(0);
    const f = await fresh.of(user);
    f.grow('t1', 7); // bytes being written survive a recount
    await fsp.rm(path.join(user, 't1'), { recursive: true });
    await fsp.writeFile(path.join(user, 't2', '1'), 'z'.repeat(5));
    expect(await fresh.of(user)).toBe(f);
    expect([f.used('t1'), f.used('t2'), f.usedAll()]).toEqual([7, 35, 42]);
    expect((await fresh.of(path.join(dir, 'nobody'))).usedAll()).toBe(0);
    await fsp.rm(dir, { recursive: true, force: true });
  });
});
