/**
 * The WebDAV door of Stowage: RFC 4918 classes 1, 2 and 3, and the ownCloud/OpenCloud dialect of
 * desktop sync clients and rclone, as a `(req, res)` handler for `node:http`.
 *
 * ```ts
 * import { WebDav } from 'stowage/webdav';
 * const dav = new WebDav({ provider, uploadsDir: './data/.stowage/chunks' });
 * http.createServer(async (req, res) => {
 *   if (!(await dav.handle(req, res))) res.writeHead(404).end();
 * }).listen(8080);
 * ```
 *
 * @module stowage/webdav
 */
export { type CorsOptions, corsHandler } from '../http/cors.js';
export {
  addressKey,
  clientAddressOf,
  SignInRefused,
  SignInThrottle,
  type SignInThrottleOptions,
} from '../http/sign-ins.js';
export { createWebDavClientDriver, type WebDavClientDriverOptions } from './client-driver.js';
export { WebDav, type WebDavOptions } from './handler.js';
export { type IfCondition, type IfList, parseIf } from './ifheader.js';
export { type Fill, type Kept, ListingCache, type ListingCacheOptions } from './listing-cache.js';
