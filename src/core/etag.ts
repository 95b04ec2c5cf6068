/**
 * Entity tags and tree times, shared by drivers so every driver answers alike.
 *
 * - A file's etag hashes its id, mtime, size and sha1 (when known): it changes with the content and
 *   stays put when only metadata, locks or grants change.
 * - A folder's etag hashes its id and its tree time, a microsecond counter that strictly increases
 *   with every change anywhere below (see {@link nextTreeTime}).
 *
 * @module
 */
import crypto from 'node:crypto';

// crypto.hash (Node >= 20.12) is a one-shot hash without a Hash object: about twice as fast here.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

function short(s: string): string {
  return oneShot ? oneShot('md5', s, 'hex') : crypto.createHash('md5').update(s).digest('hex');
}

/** Etag of a file. */
export function fileEtag(id: string, mtimeMs: number, size: number, sha1?: string): string {
  return short(`f:${id}:${mtimeMs}:${size}:${sha1 ?? ''}`);
}

/** Etag of a folder from its tree time (microseconds). */
export function folderEtag(id: string, treeTimeUs: number): string {
  return short(`d:${id}:${treeTimeUs}`);
}

/** Current time in whole microseconds since epoch. */
export function nowUs(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/** The next tree time after `prevUs`: now, but always strictly later than before. */
export function nextTreeTime(prevUs: number | undefined): number {
  const now = nowUs();
  return prevUs !== undefined && prevUs >= now ? prevUs + 1 : now;
}
