/**
 * HTTP-style preconditions and byte ranges, evaluated against resource info only: a driver decides
 * 304/412/416 before it opens any content.
 *
 * @module
 */
import { StorageError } from './errors.js';
import type { ByteRange, Conditions, ResourceInfo } from './types.js';

function stripQuotes(etag: string): string {
  let e = etag.trim();
  if (e.startsWith('W/')) e = e.slice(2);
  if (e.length >= 2 && e.startsWith('"') && e.endsWith('"')) e = e.slice(1, -1);
  return e;
}

function matches(list: readonly string[] | '*', info: ResourceInfo | undefined): boolean {
  if (!info) return false;
  if (list === '*') return true;
  return list.some((t) => t === '*' || stripQuotes(t) === info.etag);
}

/**
 * Evaluate conditions in RFC 9110 order. Returns 200 (go on), 304 (not modified, reads only)
 * or 412 (precondition failed). `info` is undefined when the resource does not exist.
 */
export function evaluateConditions(
  c: Conditions | undefined,
  info: ResourceInfo | undefined,
  method: 'read' | 'write',
): 200 | 304 | 412 {
  if (!c) return 200;
  if (c.ifMatch !== undefined) {
    if (!matches(c.ifMatch, info)) return 412;
  } else if (c.ifUnmodifiedSince !== undefined && info) {
    if (Math.floor(info.mtime / 1000) > Math.floor(c.ifUnmodifiedSince / 1000)) return 412;
  }
  if (c.ifNoneMatch !== undefined) {
    if (matches(c.ifNoneMatch, info)) return method === 'read' ? 304 : 412;
  } else if (c.ifModifiedSince !== undefined && info && method === 'read') {
    if (Math.floor(info.mtime / 1000) <= Math.floor(c.ifModifiedSince / 1000)) return 304;
  }
  return 200;
}

/**
 * Whether an If-Range validator still holds, so the range is served (RFC 9110 §13.1.5): an entity
 * tag, quoted or bare, that is the current etag (compared strongly: a weak `W/` tag never holds),
 * or an HTTP date that is exactly the last modification (to the second).
 */
export function ifRangeHolds(validator: string, info: ResourceInfo): boolean {
  const v = validator.trim();
  if (v.startsWith('W/')) return false;
  if (IMF_DATE.test(v)) return Math.floor(info.mtime / 1000) === Math.floor(Date.parse(v) / 1000);
  return v.replace(/^"(.*)"$/, '$1') === info.etag;
}

/** An HTTP date (IMF-fixdate), as If-Range carries one. */
const IMF_DATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** Throw FAILED_PRECONDITION (reason `condition`) when write conditions fail. */
export function checkWriteConditions(c: Conditions | undefined, info: ResourceInfo | undefined): void {
  if (evaluateConditions(c, info, 'write') !== 200) {
    throw new StorageError('FAILED_PRECONDITION', 'precondition failed', { reason: 'condition' });
  }
}

/**
 * Resolve a range against a size: the inclusive byte span to serve, `undefined` for the whole
 * body, or `null` when it is not satisfiable (416).
 */
export function resolveRange(
  range: ByteRange | undefined,
  size: number,
): { start: number; end: number } | null | undefined {
  if (!range) return undefined;
  if (range.suffix !== undefined) {
    if (!(range.suffix > 0)) return null;
    if (size === 0) return null;
    return { start: Math.max(0, size - range.suffix), end: size - 1 };
  }
  const start = range.start ?? 0;
  if (!Number.isSafeInteger(start) || start < 0) return null;
  if (start >= size) return null;
  let end = range.end ?? size - 1;
  if (Number.isNaN(end) || end < start) return null;
  if (end >= size) end = size - 1; // past the end, however far (RFC 9110 §14.1.2): up to the last byte
  return { start, end };
}

/**
 * Parse a single-range HTTP `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`). Multiple ranges
 * and other units return `undefined` (the caller serves the whole body, as RFC 9110 allows).
 */
export function parseRangeHeader(header: string | undefined): ByteRange | undefined | null {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  if (a === '') return { suffix: Number(b) };
  return b === '' ? { start: Number(a) } : { start: Number(a), end: Number(b) };
}
