/**
 * HTTP dates and entity-tag comparison of the preconditions every door shares.
 */
import { describe, expect, it } from 'vitest';
import { evaluateConditions, ifRangeHolds, parseHttpDate } from '../../src/core/conditions.js';
import type { ResourceInfo } from '../../src/core/types.js';

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
});
