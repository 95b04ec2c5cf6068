/**
 * HTTP dates and entity-tag comparison of the preconditions every door shares.
 */
import { describe, expect, it } from 'vitest';
import {
  evaluateConditions,
  ifRangeHolds,
  parseHttpDate,
  parseRangeHeader,
  parseRangesHeader,
  rangeToServe,
} from '../../src/core/conditions.js';
import type { ResourceInfo } from '../../src/core/types.js';
import { ifRangeHeader, splitEtags } from '../../src/http/common.js';

const SUNDAY = Date.UTC(1994, 10, 6, 8, 49, 37);

describe('parseHttpDate', () => {
  it('reads the three forms of RFC 9110 §5.6.7 as the same instant, in GMT', () => {
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(SUNDAY);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(SUNDAY);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(SUNDAY);
    expect(parseHttpDate('  Sun, 06 Nov 1994 08:49:37 GMT ')).toBe(SUNDAY);
  });

  it('takes a two-digit year more than 50 years ahead from the century before', () => {
    const soon = (new Date().getUTCFullYear() + 10) % 100;
    const far = (new Date().getUTCFullYear() + 60) % 100;
    const yy = (n: number) => String(n).padStart(2, '0');
    expect(new Date(parseHttpDate(`Monday, 01-Jan-${yy(soon)} 00:00:00 GMT`)!).getUTCFullYear()).toBe(
      new Date().getUTCFullYear() + 10,
    );
    expect(new Date(parseHttpDate(`Monday, 01-Jan-${yy(far)} 00:00:00 GMT`)!).getUTCFullYear()).toBe(
      new Date().getUTCFullYear() + 60 - 100,
    );
  });

  it('judges the 50 years by the whole date, and reads four-digit years below 100 as they are', () => {
    const now = new Date();
    const yy = String((now.getUTCFullYear() + 50) % 100).padStart(2, '0');
    const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
    const mon = now.toUTCString().slice(8, 11);
    const dd = String(now.getUTCDate()).padStart(2, '0');
    // Midnight today, 50 years on: not more than 50 years ahead; 23:59:59 of a later month is.
    const today = parseHttpDate(`${days[0]}, ${dd}-${mon}-${yy} 00:00:00 GMT`)!;
    expect(new Date(today).getUTCFullYear()).toBe(now.getUTCFullYear() + 50);
    if (now.getUTCMonth() < 11) {
      const next = new Date(Date.UTC(2000, now.getUTCMonth() + 1, 1)).toUTCString().slice(8, 11);
      const later = parseHttpDate(`${days[0]}, 01-${next}-${yy} 00:00:00 GMT`)!;
      expect(new Date(later).getUTCFullYear()).toBe(now.getUTCFullYear() + 50 - 100);
    }
    expect(new Date(parseHttpDate('Thu, 01 Jan 0099 00:00:00 GMT')!).getUTCFullYear()).toBe(99);
    expect(new Date(parseHttpDate('Mon Jan  1 00:00:00 0050')!).getUTCFullYear()).toBe(50);
  });

  it('refuses what is not an HTTP date, so that a condition carrying it is ignored', () => {
    for (const bad of [
      '',
      '2024-01-01',
      '1700000000',
      'Sun, 06 Nov 1994 08:49:37 CET',
      'Sun, 31 Feb 2024 00:00:00 GMT',
      'Sun, 06 Nov 1994 25:00:00 GMT',
      'Sun, 06 Foo 1994 08:49:37 GMT',
      'Sun Nov 6 08:49:37 1994',
    ])
      expect(parseHttpDate(bad), bad).toBeUndefined();
  });
});

describe('entity tags', () => {
  const info = { etag: 'abc', mtime: SUNDAY + 400 } as ResourceInfo;

  it('compares If-Match strongly and If-None-Match weakly', () => {
    expect(evaluateConditions({ ifMatch: ['"abc"'] }, info, 'write')).toBe(200);
    expect(evaluateConditions({ ifMatch: ['W/"abc"'] }, info, 'write')).toBe(412);
    expect(evaluateConditions({ ifMatch: ['W/"abc"', '"abc"'] }, info, 'write')).toBe(200);
    expect(evaluateConditions({ ifNoneMatch: ['W/"abc"'] }, info, 'read')).toBe(304);
    expect(evaluateConditions({ ifNoneMatch: ['W/"abc"'] }, info, 'write')).toBe(412);
  });

  it('holds an If-Range date only when it is the last modification, to the second, in any form', () => {
    expect(ifRangeHolds('Sun, 06 Nov 1994 08:49:37 GMT', info)).toBe(true);
    expect(ifRangeHolds('Sun Nov  6 08:49:37 1994', info)).toBe(true);
    expect(ifRangeHolds('Sunday, 06-Nov-94 08:49:38 GMT', info)).toBe(false);
    expect(ifRangeHolds('"abc"', info)).toBe(true);
    expect(ifRangeHolds('W/"abc"', info)).toBe(false);
  });

  it('holds an If-Range date only when the modification it names is a second old (a strong validator)', () => {
    const date = 'Sun, 06 Nov 1994 08:49:37 GMT';
    expect(ifRangeHolds(date, info, SUNDAY + 1400)).toBe(true);
    expect(ifRangeHolds(date, info, SUNDAY + 1399)).toBe(false);
    expect(ifRangeHolds('"abc"', info, SUNDAY + 400)).toBe(true); // an etag is always strong
  });

  it('judges dates by the last change on the storage too, when that is a second or more after the time', () => {
    const date = 'Sun, 06 Nov 1994 08:49:37 GMT';
    const ims = { ifModifiedSince: SUNDAY };
    // Written within its time's second: the time stands for it
    const written = { ...info, changed: SUNDAY + 1300 };
    expect(evaluateConditions(ims, written, 'read')).toBe(304);
    expect(ifRangeHolds(date, written, SUNDAY + 2400)).toBe(true);
    // Given its time (older) a second or more after: changed since any date before that change
    const retimed = { ...info, changed: SUNDAY + 1400 };
    expect(evaluateConditions(ims, retimed, 'read')).toBe(200);
    expect(evaluateConditions({ ifModifiedSince: SUNDAY + 1000 }, retimed, 'read')).toBe(304);
    expect(ifRangeHolds(date, retimed, SUNDAY + 9000)).toBe(false);
  });

  it('serves the whole body when If-Range fails, even for a range the new content cannot satisfy', () => {
    const file = { ...info, size: 4 };
    expect(rangeToServe({ range: { start: 10 } }, file)).toBeNull();
    expect(rangeToServe({ range: { start: 10 }, ifRange: '"old"' }, file)).toBeUndefined();
    expect(rangeToServe({ range: { start: 1 }, ifRange: '"abc"' }, file)).toEqual({ start: 1, end: 3 });
    expect(rangeToServe({ range: { start: 0 } }, { ...info, size: 0 })).toBeUndefined();
  });

  it('ignores a Range whose last position comes before its first, and drops unquoted entity tags', () => {
    expect(parseRangeHeader('bytes=5-2')).toBeUndefined();
    expect(parseRangeHeader('bytes=2-2')).toEqual({ start: 2, end: 2 });
    expect(splitEtags('abc, "abc", W/"abc", "a"b"')).toEqual(['"abc"', 'W/"abc"']);
    expect(evaluateConditions({ ifMatch: splitEtags('abc') }, info, 'write')).toBe(412);
    expect(ifRangeHeader('abc')).toBe('W/""');
    expect(ifRangeHeader(' "abc" ')).toBe('"abc"');
    expect(ifRangeHeader('Sun, 06 Nov 1994 08:49:37 GMT')).toBe('Sun, 06 Nov 1994 08:49:37 GMT');
  });

  it('reads a Range of several ranges in the order given, and ignores it whole when any of them is malformed', () => {
    expect(parseRangesHeader('bytes=0-9, 20-,-5')).toEqual([
      { start: 0, end: 9 },
      { start: 20 },
      { suffix: 5 },
    ]);
    expect(parseRangesHeader('Bytes = 100-199 ,, 0-0,')).toEqual([
      { start: 100, end: 199 },
      { start: 0, end: 0 },
    ]);
    expect(parseRangesHeader('bytes=7-')).toEqual([{ start: 7 }]);
    for (const bad of [
      'bytes=0-9,5-2',
      'bytes=0-9,-',
      'bytes=0-9,a-b',
      'items=0-9,10-19',
      'bytes=',
      'bytes=,',
      '',
    ])
      expect(parseRangesHeader(bad), bad).toBeUndefined();
  });
});
