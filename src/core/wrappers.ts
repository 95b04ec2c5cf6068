/**
 * Driver wrappers. Each one forwards every capability of the driver it wraps (a test proves it).
 *
 * @module
 */
import type { Driver, Features } from './driver.js';
import { StorageError } from './errors.js';

function denied(): never {
  throw new StorageError('PERMISSION_DENIED', 'this storage is read-only');
}

/**
 * A read-only view of a driver: reads and listings go through, every mutation (including those of
 * capabilities) fails with PERMISSION_DENIED before it reaches the driver.
 */
export function readOnly(driver: Driver): Driver {
  const f = driver.features;
  const features: Features = Object.freeze({
    ...(f.copy && { copy: Object.freeze({ copy: async () => denied() }) }),
    ...(f.metadata && {
      metadata: Object.freeze({ set: async () => denied(), unset: async () => denied() }),
    }),
    ...(f.spaces && {
      spaces: Object.freeze({
        create: async () => denied(),
        update: async () => denied(),
        delete: async () => denied(),
      }),
    }),
  });
  return Object.freeze({
    kind: `readonly(${driver.kind})`,
    storageId: driver.storageId,
    features,
    listSpaces: (filter) => driver.listSpaces(filter),
    getSpace: (key) => driver.getSpace(key),
    stat: (ref, opts) => driver.stat(ref, opts),
    list: (ref, opts) => driver.list(ref, opts),
    read: (ref, opts) => driver.read(ref, opts),
    write: async () => denied(),
    mkdir: async () => denied(),
    delete: async () => denied(),
    move: async () => denied(),
    close: () => driver.close(),
  } satisfies Driver);
}
