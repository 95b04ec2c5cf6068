/**
 * Stowage: one storage model over pluggable drivers.
 *
 * ```ts
 * import { StorageProvider } from 'stowage';
 * import { createPosixDriver } from 'stowage/drivers/posix';
 *
 * const storage = new StorageProvider({ drivers: await createPosixDriver({ root: './data' }) });
 * const space = await storage.createSpace({ type: 'project', name: 'Demo' });
 * await storage.write({ space: space.id, path: 'hello.txt' }, 'Hello');
 * ```
 *
 * @module stowage
 */
export * from './core/body.js';
export * from './core/changes.js';
export * from './core/checksums.js';
export * from './core/conditions.js';
export * from './core/driver.js';
export * from './core/errors.js';
export * from './core/etag.js';
export * from './core/events.js';
export * from './core/identity.js';
export * from './core/locks.js';
export * from './core/mime.js';
export * from './core/permissions.js';
export * from './core/provider.js';
export * from './core/refs.js';
export * from './core/types.js';
export * from './core/wrappers.js';
