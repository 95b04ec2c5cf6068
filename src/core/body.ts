/**
 * Request bodies: normalise what callers hand in, and count/check bytes on the way.
 *
 * @module
 */
import type { Body } from './driver.js';

/** Any {@link Body} as an async iterable of byte chunks. */
export async function* bodyChunks(body: Body): AsyncGenerator<Uint8Array> {
  if (typeof body === 'string') {
    yield Buffer.from(body, 'utf8');
    return;
  }
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  for await (const chunk of body) {
    yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
  }
}

/** Read a whole (small) readable into memory; for tests, examples and metadata, never for content paths. */
export async function collect(body: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
  return Buffer.concat(parts);
}
