import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { describeConformance } from '../conformance/index.js';
import { litter, treeSizeErrors, usageErrors } from '../helpers/disk.js';
import { tempRoot } from '../helpers/tmp.js';

const roots = new WeakMap<object, string>();

// The suite twice: on local filesystems the driver reads metadata with synchronous syscalls, on
// network ones (CephFS, NFS) with asynchronous ones; both paths must behave the same.
for (const syncMetadata of [true, false]) {
  await describeConformance({
    name: syncMetadata
      ? 'posix (real xattrs on the machine disk)'
      : 'posix, asynchronous metadata calls (as on network filesystems)',
    async createDriver() {
      const root = await tempRoot('posix');
      const driver = await createPosixDriver({ root, syncMetadata });
      roots.set(driver, root);
      return driver;
    },
    async reopen(old) {
      const root = roots.get(old)!;
      await old.close();
      const driver = await createPosixDriver({ root, syncMetadata });
      roots.set(driver, root);
      return driver;
    },
    disk: {
      spaceRoot: (driver, space) => (driver as PosixDriver).spacePath(space.id),
      async check(driver, space) {
        const d = driver as PosixDriver;
        await d.idle();
        const dir = await d.spacePath(space.id);
        return [
          ...(await treeSizeErrors(dir)),
          ...(await usageErrors(dir)),
          ...(await litter(dir)).map((n) => `left in tmp: ${n}`),
        ];
      },
    },
  });
}
