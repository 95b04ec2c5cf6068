/**
 * Driver wrappers. Each one forwards every capability of the driver it wraps (a test proves it).
 *
 * @module
 */
import type { Driver, FeatureName, Features } from './driver.js';
import { FEATURE_NAMES } from './driver.js';
import { StorageError } from './errors.js';

function denied(): never {
  throw new StorageError('PERMISSION_DENIED', 'this storage is read-only');
}

const refuse = async () => denied();

/**
 * Per capability: which of its methods only read (forwarded as they are); every other method is
 * refused. Typed against {@link Features} so a capability added there must be decided here.
 */
const READ_METHODS: { readonly [K in FeatureName]-?: readonly string[] } = {
  copy: [],
  metadata: [],
  favorites: ['list'],
  mtime: [],
  spaces: [],
  grants: ['list', 'inspect'],
  locks: ['get'],
  trash: ['list', 'get'],
  versions: ['list', 'read'],
  quota: ['enforced'],
  // Watching assimilates what it finds (writes ids, checksums, sizes): refused.
  watch: [],
};

/**
 * A read-only view of a driver: reads and listings go through, every mutation (including those of
 * capabilities) fails with PERMISSION_DENIED before it reaches the driver.
 */
export function readOnly(driver: Driver): Driver {
  const features: Record<string, unknown> = {};
  for (const name of FEATURE_NAMES) {
    const feature = driver.features[name] as Record<string, unknown> | undefined;
    if (!feature) continue;
    const view: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(feature)) {
      view[key] = READ_METHODS[name].includes(key)
        ? typeof value === 'function'
          ? value.bind(feature)
          : value
        : typeof value === 'function'
          ? refuse
          : value;
    }
    features[name] = Object.freeze(view);
  }
  return Object.freeze({
    kind: `readonly(${driver.kind})`,
    storageId: driver.storageId,
    features: Object.freeze(features) as Features,
    listSpaces: (filter) => driver.listSpaces(filter),
    getSpace: (key) => driver.getSpace(key),
    stat: (ref, opts) => driver.stat(ref, opts),
    list: (ref, opts) => driver.list(ref, opts),
    read: (ref, opts) => driver.read(ref, opts),
    write: refuse,
    mkdir: refuse,
    delete: refuse,
    move: refuse,
    close: () => driver.close(),
  } satisfies Driver);
}
