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

/**
 * Whether a list of entity tags names the resource. If-Match compares strongly (a weak `W/` tag
 * never matches, RFC 9110 §13.1.1); If-None-Match weakly (§13.1.2).
 */
function matches(list: readonly string[] | '*', info: ResourceInfo | undefined, strong: boolean): boolean {
  if (!info) return false;
  if (list === '*') return true;
  return list.some(
    (t) => t === '*' || ((!strong || !t.trim().startsWith('W/')) && stripQuotes(t) === info.etag),
  );
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
    if (!matches(c.ifMatch, info, true)) return 412;
  } else if (c.ifUnmodifiedSince !== undefined && info) {
    if (Math.floor(info.mtime / 1000) > Math.floor(c.ifUnmodifiedSince / 1000)) return 412;
  }
  if (c.ifNoneMatch !== undefined) {
    if (matches(c.ifNoneMatch, info, false)) return method === 'read' ? 304 : 412;
  } else if (c.ifModifiedSince !== undefined && info && method === 'read') {
    // Not modified: neither its time (what Last-Modified says) nor anything else changed since.
    if (Math.floor(lastChange(info) / 1000) <= Math.floor(c.ifModifiedSince / 1000)) return 304;
  }
  return 200;
}

/**
 * The latest of a resource's modification time and when it last changed on the storage: a file
 * given an older time (as sync clients and rclone keep their files' times) is still newer than a
 * copy fetched before, whatever its Last-Modified says. A change within a second of the time is
 * taken as that time's: HTTP dates have whole seconds, so a file rewritten within the second of
 * its date is never told apart by a date (If-Range asks dates to be a second old for that), and a
 * file written as it is would otherwise lose its 304s whenever its write crossed a second.
 */
function lastChange(info: ResourceInfo): number {
  return info.changed !== undefined && info.changed - info.mtime >= 1000 ? info.changed : info.mtime;
}

/**
 * Whether an If-Range validator still holds, so the range is served (RFC 9110 §13.1.5): an entity
 * tag, quoted or bare, that is the current etag (compared strongly: a weak `W/` tag never holds),
 * or an HTTP date that is exactly the last modification (to the second) when that is a strong
 * validator: modified at least a second before `now` (§8.8.2.2), and not changed on the storage
 * after that second either. A file rewritten within the second its date names keeps that date, and
 * a file given an older time may get the same date again: a range of either would be spliced onto
 * the old content.
 */
export function ifRangeHolds(validator: string, info: ResourceInfo, now = Date.now()): boolean {
  const v = validator.trim();
  if (v.startsWith('W/')) return false;
  const date = parseHttpDate(v);
  if (date !== undefined) {
    const second = Math.floor(date / 1000);
    const last = lastChange(info);
    return (
      Math.floor(info.mtime / 1000) === second && Math.floor(last / 1000) <= second && now - last >= 1000
    );
  }
  return v.replace(/^"(.*)"$/, '$1') === info.etag;
}

/**
 * The span of a file a read serves: `undefined` for the whole body, `null` for 416. The range is
 * ignored when an If-Range validator no longer holds (RFC 9110 §13.1.5: the whole new content,
 * even when the range would not fit it) and for an empty file, where no range but a suffix could
 * be satisfied and none could be stated in a Content-Range (§14.2 lets a server ignore a Range).
 */
export function rangeToServe(
  opts: { range?: ByteRange; ifRange?: string } | undefined,
  info: ResourceInfo,
): { start: number; end: number } | null | undefined {
  if (!opts?.range || info.size === 0) return undefined;
  if (opts.ifRange !== undefined && !ifRangeHolds(opts.ifRange, info)) return undefined;
  return resolveRange(opts.range, info.size);
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const IMF_FIXDATE = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE = /^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE = /^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * An HTTP date in any of the three forms RFC 9110 §5.6.7 has recipients accept (IMF-fixdate, the
 * obsolete RFC 850 form and asctime, all in GMT), as milliseconds since 1970; undefined for
 * anything else, which a condition then ignores. A two-digit year that makes a date more than
 * 50 years ahead is taken from the century before.
 */
export function parseHttpDate(value: string): number | undefined {
  const v = value.trim();
  const fields = httpDateFields(v);
  if (!fields) return undefined;
  const { day, mon, year, h, min, sec } = fields;
  const month = MONTHS.indexOf(mon.toLowerCase());
  if (month < 0 || day < 1 || day > 31 || h > 23 || min > 59 || sec > 60) return undefined;
  const at = (y: number) => {
    // (Date.UTC would read years 0-99 as 1900-1999)
    const d = new Date(0);
    d.setUTCFullYear(y, month, day);
    d.setUTCHours(h, min, Math.min(sec, 59), 0);
    return d;
  };
  let d = at(year);
  if (fields.twoDigitYear) {
    const limit = new Date();
    limit.setUTCFullYear(limit.getUTCFullYear() + 50);
    if (d.getTime() > limit.getTime()) d = at(year - 100);
  }
  // (31 February and the like roll over: not a date)
  return d.getUTCDate() === day ? d.getTime() : undefined;
}

/** The fields of one of the three forms, before they are checked. */
function httpDateFields(
  v: string,
):
  | { day: number; mon: string; year: number; h: number; min: number; sec: number; twoDigitYear?: boolean }
  | undefined {
  const imf = IMF_FIXDATE.exec(v);
  if (imf) {
    const [, d, mon, y, h, min, sec] = imf.map((x) => x ?? '') as string[];
    return { day: Number(d), mon: mon!, year: Number(y), h: Number(h), min: Number(min), sec: Number(sec) };
  }
  const rfc850 = RFC850_DATE.exec(v);
  if (rfc850) {
    const [, d, mon, yy, h, min, sec] = rfc850.map((x) => x ?? '') as string[];
    const year = 2000 + Number(yy);
    return {
      day: Number(d),
      mon: mon!,
      year,
      h: Number(h),
      min: Number(min),
      sec: Number(sec),
      twoDigitYear: true,
    };
  }
  const asctime = ASCTIME_DATE.exec(v);
  if (asctime) {
    const [, mon, d, h, min, sec, y] = asctime.map((x) => x ?? '') as string[];
    return {
      day: Number(d!.trim()),
      mon: mon!,
      year: Number(y),
      h: Number(h),
      min: Number(min),
      sec: Number(sec),
    };
  }
  return undefined;
}

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
 * Parse a single-range HTTP `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`). Multiple ranges,
 * other units and malformed ones return `undefined`.
 */
export function parseRangeHeader(header: string | undefined): ByteRange | undefined {
  const ranges = parseRangesHeader(header);
  return ranges?.length === 1 ? ranges[0] : undefined;
}

/**
 * Parse an HTTP `Range` header of one or more ranges (`bytes=0-99, 200-, -50`): its ranges in the
 * order given, or `undefined` when it is not one a server acts on (another unit, or any range in
 * it malformed: RFC 9110 §14.2 has the whole header ignored then).
 */
export function parseRangesHeader(header: string | undefined): ByteRange[] | undefined {
  const m = header && /^\s*bytes\s*=(.*)$/is.exec(header);
  if (!m) return undefined;
  const ranges: ByteRange[] = [];
  for (const item of m[1]!.split(',')) {
    const spec = item.trim();
    if (spec === '') continue; // (list syntax allows empty elements, RFC 9110 §5.6.1)
    const r = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
    const range = r && (r[1] || r[2]) ? rangeSpec(r[1]!, r[2]!) : undefined;
    if (!range) return undefined;
    ranges.push(range);
  }
  return ranges.length ? ranges : undefined;
}

/** One range-spec's numbers (either may be empty, not both). */
function rangeSpec(a: string, b: string): ByteRange | undefined {
  if (a === '') return { suffix: Number(b) };
  if (b === '') return { start: Number(a) };
  // A last position before the first makes the range invalid, not unsatisfiable (RFC 9110 §14.1.1).
  return Number(b) < Number(a) ? undefined : { start: Number(a), end: Number(b) };
}
