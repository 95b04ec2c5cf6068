/**
 * A file gone between the observer's lstat and its record read (a temp file renamed away in
 * that moment) is looked at again, not taken for a failed batch (which costs a rescan).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPosixDriver } from '../../src/drivers/posix/driver.js';
import { loadNative, type Native } from '../../src/drivers/posix/native.js';
import { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

describe('observer: a file gone between its lstat and its record read', () => {
  it('is looked at again, with no rescan', async () => {
    const real = await loadNative();
    let vanished = 0;
    // The record read of the file fails once as it would had the file just gone.
    const native: Native = {
      ...real,
      getxattrSync(p, name) {
        if (p.endsWith('/flicker.dat') && vanished === 0) {
          vanished++;
          throw Object.assign(new Error(`ENOENT: no such file or directory, '${p}'`), { code: 'ENOENT' });
        }
        return real.getxattrSync(p, name);
      },
    };
    const root = await tempRoot('vanish');
    const driver = await openPosixDriver(native, { root });
    const s = new StorageProvider({ drivers: driver });
    const space = await s.createSpace({ type: 'project', name: 'vanish' });
    const dir = await driver.spacePath(space.id);
    const created: string[] = [];
    s.events.on((e) => {
      if (e.origin === 'external' && e.type === 'created') created.push(e.path ?? '');
    });
    const o = s.watch({ debounceMs: 5, settleMs: 20 });
    try {
      await o.ready;
      const lost = o.stats().lost;
      fs.writeFileSync(path.join(dir, 'flicker.dat'), 'x');
      for (const until = Date.now() + 10_000; !created.includes('/flicker.dat') && Date.now() < until; )
        await new Promise((r) => setTimeout(r, 20));
      await o.idle();
      expect(vanished).toBe(1);
      expect(created).toContain('/flicker.dat');
      expect(o.stats().lost).toBe(lost);
    } finally {
      await o.close();
      await s.close();
    }
  });
});
