/**
 * Records are cached by inode and ctime. Where a filesystem stamps changes with a coarse clock, two
 * changes within one tick share a ctime, so only records settled for a second are kept; where its
 * ctimes are fine-grained (Linux 6.13+ on ext4, xfs, btrfs, tmpfs: a change made after the ctime was
 * read always gets a ctime of its own), a record is kept as soon as it is read. The driver probes
 * which it is when it opens the storage.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as xattr from 'fs-xattr';
import { describe, expect, it } from 'vitest';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { cachedRecordCount, probeFineCtimes } from '../../src/drivers/posix/space.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const native = {
  setxattrSync: (p: string, name: string, value: string | Buffer) => xattr.setAttributeSync(p, name, value),
  removexattrSync: (p: string, name: string) => xattr.removeAttributeSync(p, name),
};

describe('posix: the ctime probe', () => {
  it('tells a coarse clock, a fine one and a machine too slow to tell apart', async () => {
    const dir = await tempRoot('probe');
    const fake =
      (ctimeMs: () => number, spin = 0) =>
      () => {
        const until = performance.now() + spin;
        while (performance.now() < until) {
          // (a slow stat)
        }
        return { ctimeMs: ctimeMs(), dev: -1 };
      };
    const probe = (lstat: ReturnType<typeof fake>) => probeFineCtimes(native, dir, 'user.test.probe', lstat);
    // A clock ticking every 4 ms: changes within a tick share their ctime.
    expect(probe(fake(() => Math.floor(Date.now() / 4) * 4))).toBe(false);
    // Each change stamped on its own, but every look takes 1 ms: nothing can be told, so no.
    let t = 0;
    expect(probe(fake(() => ++t, 1))).toBe(false);
    // Each change stamped on its own.
    expect(probe(fake(() => ++t))).toBe(true);
    // The probe leaves no attribute behind.
    expect(xattr.listAttributesSync(dir)).not.toContain('user.test.probe');
  });

  it('says fine-grained only where a change after a look always moves the ctime', async () => {
    const dir = await tempRoot('probe-real');
    if (!probeFineCtimes(native, dir, 'user.test.probe')) return; // (a coarse clock here: nothing to hold it to)
    const f = path.join(dir, 'f');
    fs.writeFileSync(f, '');
    for (let i = 0; i < 500; i++) {
      const before = fs.lstatSync(f).ctimeMs;
      xattr.setAttributeSync(f, 'user.test.n', String(i));
      expect(fs.lstatSync(f).ctimeMs).not.toBe(before);
    }
  });
});

describe('posix: records read right after a change', () => {
  it('are never served stale, and are kept at once where ctimes are fine-grained', async () => {
    const root = await tempRoot('young');
    const driver = await createPosixDriver({ root });
    const s = new StorageProvider({ drivers: driver });
    try {
      const sp = await s.createSpace({ type: 'project', name: 'young' });
      const at = (p: string) => ({ space: sp.id, path: p });
      const written = await s.write(at('f.txt'), 'hello');
      const file = path.join(root, 'spaces/project/young/f.txt');
      // Read, then a tool rewrites the record at once (no settling), then read again: 50 times,
      // each within a fraction of a clock tick, the new record is what is seen.
      const rec = JSON.parse(xattr.getAttributeSync(file, 'user.stowage.n').toString());
      for (let i = 0; i < 50; i++) {
        await s.stat(at('f.txt'));
        const md5 = i.toString(16).padStart(32, '0');
        xattr.setAttributeSync(file, 'user.stowage.n', JSON.stringify({ ...rec, ck: { ...rec.ck, md5 } }));
        expect((await s.stat(at('f.txt'))).checksums?.md5).toBe(md5);
      }
      expect((await s.stat(at('f.txt'))).id).toEqual(written.id);
      // A record just written and read is kept (or not) as the probe found the filesystem.
      const fine = probeFineCtimes(native, root, 'user.test.probe');
      await s.write(at('g.txt'), 'young');
      const before = cachedRecordCount();
      await s.stat(at('g.txt'));
      expect(cachedRecordCount() > before).toBe(fine);
    } finally {
      await s.close();
    }
  });
});
