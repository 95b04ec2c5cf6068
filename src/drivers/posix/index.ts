/**
 * The POSIX driver: `stowage/drivers/posix`.
 *
 * ```ts
 * import { createPosixDriver } from 'stowage/drivers/posix';
 * const driver = await createPosixDriver({ root: '/srv/stowage' });
 * ```
 *
 * Needs the optional native dependencies `fs-xattr` and `fs-ext` (installed with Stowage unless
 * optional dependencies are omitted) and a filesystem with user extended attributes (ext4, xfs,
 * btrfs, CephFS, ...). See the README next to this file.
 *
 * @module stowage/drivers/posix
 */

import { openPosixDriver, type PosixDriver, type PosixDriverOptions } from './driver.js';
import { loadNative } from './native.js';

export type { PosixDriver, PosixDriverOptions } from './driver.js';
export type { FsckOptions, FsckProblem, FsckProblemKind, FsckSpaceReport } from './fsck.js';
export { XATTR_META, XATTR_NODE, XATTR_PREFIX } from './record.js';

/** Open the storage at `options.root` (created when missing). */
export async function createPosixDriver(options: PosixDriverOptions): Promise<PosixDriver> {
  return openPosixDriver(await loadNative(), options);
}
