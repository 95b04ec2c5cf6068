/**
 * The POSIX driver checks a write (parent, folder in the way, lock, precondition) before it reads
 * a big body, and under the commit lock for every body. Small bodies skip the early checks; their
 * refusals must still be the same, and come before any fault of the body itself.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { StorageError, StorageProvider } from '../../src/index.js';
import { litter } from '../helpers/disk.js';
import { tempRoot } from '../helpers/tmp.js';

const drivers: PosixDriver[] = [];
afterAll(async () => {
  for (const d of drivers) await d.close();
});

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'written';
  } catch (err) {
    if (!(err instanceof StorageError)) throw err;
    return err.reason ? `${err.code}/${err.reason}` : err.code;
  }
}

describe('posix: a refused write', () => {
  for (const syncMetadata of [true, false]) {
    it(`is refused the same way for a small and a big body, before any fault of the body (syncMetadata ${syncMetadata})`, async () => {
      const driver = await createPosixDriver({ root: await tempRoot('write-checks'), syncMetadata });
      drivers.push(driver);
      const s = new StorageProvider({ drivers: driver });
      const sp = await s.createSpace({ type: 'project', name: 'checks', quota: 1024 * 1024 });
      const at = (p: string) => ({ space: sp.id, path: p });
      await s.write(at('locked.txt'), 'x');
      await s.setLock(at('locked.txt'), { lockId: 'L1', type: 'write' });
      await s.write(at('kept.txt'), 'x');
      await s.mkdir(at('dir'));
      const wrongSum = { checksums: { sha1: '0'.repeat(40) } };
      const cases: [string, string, object][] = [
        ['no parent', 'none/f.txt', wrongSum],
        ['a folder in the way', 'dir', wrongSum],
        ['locked', 'locked.txt', wrongSum],
        ['If-Match fails', 'kept.txt', { ...wrongSum, conditions: { ifMatch: ['"other"'] } }],
        [
          'If-Match fails, mtime out of range',
          'kept.txt',
          { mtime: -1e16, conditions: { ifMatch: ['"other"'] } },
        ],
      ];
      const expected = [
        'FAILED_PRECONDITION/parent-missing',
        'FAILED_PRECONDITION/is-folder',
        'LOCKED',
        'FAILED_PRECONDITION/condition',
        'FAILED_PRECONDITION/condition',
      ];
      for (const bytes of [10, 300 * 1024]) {
        const got: string[] = [];
        for (const [, path, opts] of cases)
          got.push(await outcome(s.write(at(path), Buffer.alloc(bytes, 1), opts)));
        expect(got, `${bytes} bytes`).toEqual(expected);
        // Only the body's own fault left: that is what is said.
        expect(await outcome(s.write(at('kept.txt'), Buffer.alloc(bytes, 1), wrongSum))).toBe(
          'INVALID_ARGUMENT/checksum-mismatch',
        );
      }
      expect(await litter(await driver.spacePath(sp.id))).toEqual([]);
      expect((await s.stat(at('kept.txt'))).size).toBe(1);
    });
  }
});
