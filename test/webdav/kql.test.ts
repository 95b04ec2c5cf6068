/**
 * The search queries OpenCloud's web UI writes, compiled to tests of a resource (no server: the
 * REPORT that runs them is in search.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { ResourceInfo } from '../../src/core/types.js';
import { MTIME_KEYWORDS, parseQuery } from '../../src/webdav/kql.js';

/** Sunday 2026-11-22 15:30 in the server's time zone. */
const NOW = new Date(2026, 10, 22, 15, 30).getTime();
const at = (y: number, m: number, d: number, h = 12) => new Date(y, m - 1, d, h).getTime();

function info(name: string, more: Partial<ResourceInfo> = {}): ResourceInfo {
  return {
    id: { storageId: 's', spaceId: 'sp', opaqueId: name },
    path: `/${name}`,
    name,
    type: 'file',
    size: 100,
    mtime: NOW - 60_000,
    etag: 'e',
    mimeType: 'application/octet-stream',
    ...more,
  } as ResourceInfo;
}

const matches = (q: string, i: ResourceInfo) => parseQuery(q, NOW).test(i);
const code = (q: string) => {
  try {
    parseQuery(q, NOW);
    return 'parsed';
  } catch (err) {
    return (err as { code: string }).code;
  }
};

describe('search queries', () => {
  it('match names whole, with wildcards, without regard to case or Unicode form', () => {
    expect(matches('name:"*report*"', info('Annual Report 2025.pdf'))).toBe(true);
    expect(matches('name:"*report*"', info('notes.md'))).toBe(false);
    expect(matches('name:"report"', info('report.pdf'))).toBe(false);
    expect(matches('name:"report.pdf"', info('REPORT.PDF'))).toBe(true);
    expect(matches('name:"r?port.*"', info('rEport.txt'))).toBe(true);
    // Regular-expression characters are plain characters in a name (all that ASCII has).
    const punct = "-_.~!#$%&'()+,;=@[]^`{|}/:<>";
    for (const ch of punct) expect(matches(`name:"*a${ch}b*"`, info(`x a${ch}b y`)), ch).toBe(true);
    // (a quoted string runs to the next quote, with no escapes: a backslash is a backslash)
    expect(matches('name:"*a\\b*"', info('x a\\b y'))).toBe(true);
    // Greek's final sigma is a sigma.
    expect(matches('name:"*ΟΔΟΣ*"', info('οδοσος.txt'))).toBe(true);
    expect(matches('name:"*my-report*"', info('my-report.txt'))).toBe(true);
    expect(matches('name:"*(1).[a]*"', info('x (1).[a] y'))).toBe(true);
    expect(matches('name:"*(1).[a]*"', info('x 1 a y'))).toBe(false);
    // Caf\u00e9 as typed, and as macOS writes it (e + combining acute).
    expect(matches('name:"*café*"', info('Cafe\u0301 menu.txt'))).toBe(true);
    expect(matches('name:"*cafe\u0301*"', info('café.txt'))).toBe(true);
    // Without a property, as ownCloud's search pattern: names containing it.
    expect(matches('report', info('my-report.txt'))).toBe(true);
    expect(matches('"annual report"', info('The Annual Report.odt'))).toBe(true);
    expect(matches('"annual report"', info('annual-report.odt'))).toBe(false);
  });

  it('combine terms with AND (said or not), OR, NOT and parentheses', () => {
    const pdf = info('report.pdf', { mimeType: 'application/pdf' });
    const xls = info('report.xlsx', {
      mimeType: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    });
    expect(matches('name:"*report*" AND mediatype:pdf', pdf)).toBe(true);
    expect(matches('name:"*report*" mediatype:pdf', xls)).toBe(false);
    expect(matches('mediatype:pdf OR mediatype:spreadsheet', xls)).toBe(true);
    expect(matches('name:"*report*" AND NOT mediatype:pdf', pdf)).toBe(false);
    expect(matches('name:"*report*" AND NOT mediatype:pdf', xls)).toBe(true);
    expect(matches('(name:"*x*" OR name:"*.pdf") AND size<=100', pdf)).toBe(true);
    expect(matches('NOT (name:"*.pdf" OR name:"*.xlsx")', xls)).toBe(false);
    // As the web UI's filter chips send it: a property over a group of values.
    expect(matches('mediatype:("image" OR "spreadsheet")', xls)).toBe(true);
    expect(matches('mediatype:("image" OR "document")', xls)).toBe(false);
  });

  it('know the media types the web UI offers, and mime types', () => {
    const folder = info('Reports', { type: 'folder', mimeType: 'httpd/unix-directory' });
    expect(matches('mediatype:folder', folder)).toBe(true);
    expect(matches('mediatype:file', folder)).toBe(false);
    expect(matches('mediatype:document', info('a.md', { mimeType: 'text/markdown' }))).toBe(true);
    expect(matches('mediatype:image', info('a.png', { mimeType: 'image/png' }))).toBe(true);
    expect(matches('mediatype:archive', info('a.tgz', { mimeType: 'application/gzip' }))).toBe(true);
    expect(matches('mediatype:"image/*"', info('a.png', { mimeType: 'image/png' }))).toBe(true);
    expect(matches('mediatype:"image/png"', info('a.jpg', { mimeType: 'image/jpeg' }))).toBe(false);
    expect(parseQuery('mediatype:pdf').fields).toEqual(['mimeType']);
    expect(code('mediatype:gizmo')).toBe('INVALID_ARGUMENT');
  });

  it('place mtime keywords in the calendar of the server', () => {
    const when = (q: string, t: number) => matches(q, info('f', { mtime: t }));
    expect(when('mtime:today', at(2026, 11, 22, 0))).toBe(true);
    expect(when('mtime:today', at(2026, 11, 21, 23))).toBe(false);
    expect(when('mtime:yesterday', at(2026, 11, 21, 23))).toBe(true);
    // Weeks start on Monday: the 22nd is a Sunday, its week began on the 16th.
    expect(when('mtime:"this week"', at(2026, 11, 16, 0))).toBe(true);
    expect(when('mtime:"this week"', at(2026, 11, 15, 23))).toBe(false);
    expect(when('mtime:"this week"', at(2026, 11, 23, 0))).toBe(false); // (next Monday)
    expect(when('mtime:"last week"', at(2026, 11, 9, 0))).toBe(true);
    expect(when('mtime:"last week"', at(2026, 11, 16, 0))).toBe(false);
    // Seven days with today, as OpenCloud counts them; nothing from the future.
    expect(when('mtime:"last 7 days"', at(2026, 11, 16, 0))).toBe(true);
    expect(when('mtime:"last 7 days"', at(2026, 11, 15, 23))).toBe(false);
    expect(when('mtime:"last 7 days"', at(2026, 11, 23, 0))).toBe(false);
    expect(when('mtime:"this month"', at(2026, 11, 1, 0))).toBe(true);
    expect(when('mtime:"last month"', at(2026, 10, 31))).toBe(true);
    expect(when('mtime:"last month"', at(2026, 11, 1))).toBe(false);
    expect(when('mtime:"last 30 days"', at(2026, 10, 24, 0))).toBe(true);
    expect(when('mtime:"last 30 days"', at(2026, 10, 23, 23))).toBe(false);
    expect(when('mtime:"this month"', at(2026, 12, 1, 0))).toBe(false);
    expect(when('mtime:"this year"', at(2027, 1, 1, 0))).toBe(false);
    expect(when('mtime:"this year"', at(2026, 1, 1, 0))).toBe(true);
    expect(when('mtime:"last year"', at(2025, 12, 31, 23))).toBe(true);
    expect(when('mtime:"last year"', at(2026, 1, 1, 0))).toBe(false);
    expect(when('mtime:2026-11-20', at(2026, 11, 20, 23))).toBe(true);
    expect(when('mtime:2026-11-20', at(2026, 11, 21, 0))).toBe(false);
    expect(when('mtime>=2026-01-01', at(2026, 1, 1, 0))).toBe(true);
    expect(when('mtime<2026-01-01', at(2026, 1, 1, 0))).toBe(false);
    expect(when('mtime<"2020-01-01T00:00:00Z"', Date.UTC(2019, 11, 31, 23, 59))).toBe(true);
    // A keyword the web UI offers in a group, as its chips send them.
    expect(when('mtime:("today" OR "yesterday")', at(2026, 11, 21))).toBe(true);
    // Unquoted, as the web UI's chips write them (mtime:${keyword}).
    for (const k of MTIME_KEYWORDS.filter((w) => w.includes(' '))) {
      const t = at(2026, 11, 16, 0);
      expect(matches(`mtime:${k} AND name:"*f*"`, info('f', { mtime: t })), k).toBe(
        matches(`mtime:"${k}" AND name:"*f*"`, info('f', { mtime: t })),
      );
      expect(code(`mtime:${k} AND mediatype:("pdf") AND is:favorite`), k).toBe('parsed');
    }
    expect(code('mtime:last 7 weeks')).toBe('INVALID_ARGUMENT');
    expect(code('mtime:"next week"')).toBe('INVALID_ARGUMENT');
    // Days that are not in the calendar; years before 100 are years before 100.
    for (const q of ['mtime:2026-02-30', 'mtime>=2026-13-45', 'mtime<2026-00-10'])
      expect(code(q), q).toBe('INVALID_ARGUMENT');
    expect(when('mtime<0100-01-01', new Date(-60e12).getTime())).toBe(true);
    expect(when('mtime<0100-01-01', at(1950, 1, 1))).toBe(false);
    expect(code('mtime>soon')).toBe('INVALID_ARGUMENT');
  });

  it('match any name in time that grows with name x pattern, however many wildcards', () => {
    const name = info(`${'a'.repeat(250)}.txt`);
    for (const q of [
      `name:"${'*a'.repeat(60)}*b"`,
      `name:"${'*'.repeat(2000)}x"`,
      `${'*'.repeat(2000)}x`,
      `name:"${'a?*'.repeat(80)}"`,
    ]) {
      const test = parseQuery(q, NOW);
      const t = performance.now();
      for (let i = 0; i < 10; i++) test.test(name);
      expect(performance.now() - t, q.slice(0, 20)).toBeLessThan(200);
    }
    expect(matches(`name:"${'*a'.repeat(60)}*"`, name)).toBe(true);
    expect(matches('name:"*a*b*c*"', info('xaybzc'))).toBe(true);
    expect(matches('name:"*a*b*c"', info('xaybzcd'))).toBe(false);
    expect(matches('name:"a*"', info('ba'))).toBe(false);
    expect(matches('name:"?"', info('é'))).toBe(true);
  });

  it('join terms of one property side by side as alternatives, as KQL does', () => {
    expect(matches('name:"*.pdf" name:"*.odt"', info('a.odt'))).toBe(true);
    expect(matches('name:"*.pdf" AND name:"*.odt"', info('a.odt'))).toBe(false);
    expect(matches('mediatype:("image" "pdf")', info('a.pdf', { mimeType: 'application/pdf' }))).toBe(true);
    expect(matches('name:"*a*" size<10', info('a'))).toBe(false);
  });

  it('compare sizes in bytes', () => {
    expect(matches('size>=100', info('f'))).toBe(true);
    expect(matches('size>100', info('f'))).toBe(false);
    expect(code('size>1e9')).toBe('INVALID_ARGUMENT');
    expect(code('name>x')).toBe('INVALID_ARGUMENT');
  });

  it('take is:favorite and scope: out for the walk to use', () => {
    const q = parseQuery('mtime:today AND mediatype:("document") AND is:favorite', NOW);
    expect(q.favoritesOnly).toBe(true);
    expect(q.fields.sort()).toEqual(['favorite', 'mimeType']);
    expect(q.test(info('a.md', { mimeType: 'text/markdown', favorite: true }))).toBe(true);
    expect(q.test(info('a.md', { mimeType: 'text/markdown', favorite: false }))).toBe(false);
    // Inside an OR it is a test, not a source.
    const either = parseQuery('is:favorite OR name:"*.md"', NOW);
    expect(either.favoritesOnly).toBe(false);
    expect(either.test(info('a.md', { favorite: false }))).toBe(true);
    const scoped = parseQuery('name:"*a*" AND scope:s$sp!node', NOW);
    expect(scoped.scope).toBe('s$sp!node');
    expect(scoped.test(info('abc'))).toBe(true);
    expect(code('name:"*a*" OR scope:s$sp!node')).toBe('INVALID_ARGUMENT');
    expect(code('NOT scope:x')).toBe('INVALID_ARGUMENT');
    expect(code('scope:a scope:b')).toBe('INVALID_ARGUMENT');
    // Parentheses around a conjunction change nothing of it.
    expect(parseQuery('(is:favorite AND name:"*x*")', NOW).favoritesOnly).toBe(true);
    expect(parseQuery('(name:"*a*" AND scope:s$sp!node)', NOW).scope).toBe('s$sp!node');
    expect(code('NOT (scope:x AND name:y)')).toBe('INVALID_ARGUMENT');
  });

  it("match OpenCloud's tags whole, without regard to case, and say they read them", () => {
    const tagged = info('a.txt', { metadata: { tags: 'Lab, raw data,x' } });
    expect(matches('tag:lab', tagged)).toBe(true);
    expect(matches('tag:"raw data"', tagged)).toBe(true);
    expect(matches('tags:("nope" OR "X")', tagged)).toBe(true);
    expect(matches('tag:la', tagged)).toBe(false);
    expect(matches('tag:lab', info('b.txt'))).toBe(false);
    expect(matches('NOT tag:lab', info('b.txt'))).toBe(true);
    expect(parseQuery('tag:lab AND name:"*a*"', NOW).metadataKeys).toEqual(['tags']);
    expect(parseQuery('name:"*a*"', NOW).metadataKeys).toEqual([]);
    expect(code('tag:""')).toBe('INVALID_ARGUMENT');
  });

  it('refuse what they cannot answer, and what does not parse, with a reason', () => {
    for (const q of ['content:"annual"', '(name:"*x*" OR content:"x")', 'is:shared', 'owner:ann'])
      expect(code(q), q).toBe('UNIMPLEMENTED');
    for (const q of [
      '',
      '   ',
      'name:"*x*" AND',
      'AND name:x',
      'name:x OR',
      '(name:x',
      'name:x)',
      'name:"unclosed',
      'name:',
      'name:()',
      'mediatype:("image" OR)',
      'NOT',
      'a\0b',
      `name:"${'x'.repeat(5000)}"`,
      `${'('.repeat(100)}x${')'.repeat(100)}`,
    ])
      expect(code(q), q.slice(0, 40)).toBe('INVALID_ARGUMENT');
    const said = (q: string) => {
      try {
        parseQuery(q, NOW);
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(said('a OR')).toMatch(/OR with nothing after/);
    expect(said('OR a')).toMatch(/OR with nothing before/);
    expect(said('(a NOT)')).toMatch(/NOT with nothing after/);
    expect(said('a ()')).toMatch(/empty parentheses/);
  });
});
