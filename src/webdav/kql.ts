/**
 * Search queries as OpenCloud's web UI writes them (its search bar, its "Favorites" filter chips),
 * in the part of the Keyword Query Language that a walk over the tree can answer: each query
 * compiles to a test of one resource's info.
 *
 * - `name:"*report*"`: the name, whole, with `*` and `?` as wildcards, case-insensitive (names
 *   compared in Unicode NFC, whichever form a client wrote them in). A term without a property
 *   (`report`, `"annual report"`) is a name containing it (ownCloud's plain search pattern).
 * - `is:favorite`: the user's favorites.
 * - `mediatype:document` and the other keywords of {@link MEDIA_TYPE_KEYWORDS}, or a mime type
 *   (`mediatype:"image/png"`, `mediatype:"image/*"`).
 * - `mtime:today` and the other keywords of {@link MTIME_KEYWORDS} (in the server's time zone;
 *   "last 7 days" counts today, "this week" runs Monday to Sunday), a day (`mtime:2026-11-22`),
 *   or a bound (`mtime>=2026-01-01`, `mtime<"2026-11-22T12:00:00Z"`).
 * - `size>=1000000`, `size<4096` (bytes; folders have the size of what is in them).
 * - `scope:<id>`: only below a folder (its resource id), as a condition of the whole query.
 * - `AND` (also implied between terms), `OR`, `NOT`, parentheses, and a property over a group of
 *   values: `mediatype:("image" OR "video")`. Terms of one property side by side with nothing
 *   between them are alternatives (`name:a name:b`, `mediatype:("image" "video")`), as in KQL.
 *   A quoted string runs to the next quote (no escapes); `mtime:last 7 days` unquoted is one
 *   keyword, as the web UI writes it.
 *
 * Properties this server keeps no index of (`content:`, `tag:` and the rest) are refused with
 * UNIMPLEMENTED rather than answered as if they had matched nothing; a query that does not parse,
 * with INVALID_ARGUMENT.
 *
 * @module
 */
import { StorageError } from '../core/errors.js';
import { FOLDER_MIME_TYPE } from '../core/mime.js';
import type { Field, ResourceInfo } from '../core/types.js';

/** The `mediatype:` keywords (as OpenCloud's web UI offers them). */
export const MEDIA_TYPE_KEYWORDS = [
  'file',
  'folder',
  'document',
  'spreadsheet',
  'presentation',
  'pdf',
  'image',
  'video',
  'audio',
  'archive',
] as const;

/** The `mtime:` keywords (as OpenCloud's web UI offers them). */
export const MTIME_KEYWORDS = [
  'today',
  'yesterday',
  'this week',
  'last week',
  'last 7 days',
  'this month',
  'last month',
  'last 30 days',
  'this year',
  'last year',
] as const;

/** A compiled query. */
export interface SearchQuery {
  /** Whether a resource matches. */
  test(info: ResourceInfo): boolean;
  /** The id of the folder a top-level `scope:` limits the search to. */
  scope?: string;
  /** A top-level `is:favorite`: only the user's favorites can match. */
  favoritesOnly: boolean;
  /** Fields the test reads beyond those every info has (name, type, size, mtime). */
  fields: Field[];
  /** Metadata keys the test reads (`tags`, for `tag:`). */
  metadataKeys: string[];
}

type Test = (info: ResourceInfo) => boolean;
type Token =
  | { kind: '(' | ')' }
  | { kind: 'word'; text: string }
  | { kind: 'string'; text: string }
  | { kind: 'op'; text: 'AND' | 'OR' | 'NOT' };
/** A term's operator: `name:x`, `mtime>=x`. */
type Relation = ':' | '=' | '>' | '>=' | '<' | '<=';

/** Queries longer than this are refused (a web UI's are a few dozen characters). */
const MAX_QUERY = 4096;
/** Parentheses nested deeper than this are refused (the parser recurses). */
const MAX_NESTING = 32;

function invalid(message: string): StorageError {
  return new StorageError('INVALID_ARGUMENT', message);
}

function lex(q: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '(' || c === ')') {
      out.push({ kind: c });
      i++;
    } else if (c === '"') {
      // (no escapes: as in OpenCloud's grammar, a quoted string runs to the next quote)
      const end = q.indexOf('"', i + 1);
      if (end < 0) throw invalid('the search has a quote that is not closed');
      out.push({ kind: 'string', text: q.slice(i + 1, end) });
      i = end + 1;
    } else {
      let j = i;
      while (j < q.length && !/[\s()"]/.test(q[j]!)) j++;
      const text = q.slice(i, j);
      i = j;
      if (text === 'AND' || text === 'OR' || text === 'NOT') out.push({ kind: 'op', text });
      else out.push({ kind: 'word', text });
    }
  }
  return out;
}

/** NFC and lower case (final sigma as sigma): how names are compared. */
function fold(s: string): string {
  return s.normalize('NFC').toLowerCase().replace(/ς/g, 'σ');
}

/**
 * Whether `name` matches `pattern` whole (`*` any run, `?` one character; both arrays of code
 * points). Greedy with one step back to the last `*`: at most name x pattern steps, whatever the
 * pattern (a regular expression of `.*`s can take exponential time on a name that nearly matches).
 */
function wildcard(pattern: readonly string[], name: readonly string[]): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || (pattern[p] !== '*' && pattern[p] === name[n]))) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** A name pattern (`*` any run, `?` one character) as a whole-name test. */
function nameTest(pattern: string): Test {
  const p = fold(pattern).replace(/\*+/g, '*');
  if (!/[*?]/.test(p)) return (i) => fold(i.name) === p;
  const cps = [...p];
  return (i) => wildcard(cps, [...fold(i.name)]);
}

const DOCUMENT = new Set([
  'application/msword',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  'application/vnd.oasis.opendocument.text',
  'application/rtf',
  'application/epub+zip',
  'text/plain',
  'text/markdown',
]);
const SPREADSHEET = new Set([
  'application/vnd.ms-excel',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  'application/vnd.oasis.opendocument.spreadsheet',
  'text/csv',
  'text/tab-separated-values',
]);
const PRESENTATION = new Set([
  'application/vnd.ms-powerpoint',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  'application/vnd.oasis.opendocument.presentation',
]);
const ARCHIVE = new Set([
  'application/zip',
  'application/gzip',
  'application/x-tar',
  'application/x-bzip2',
  'application/x-xz',
  'application/zstd',
  'application/x-7z-compressed',
  'application/vnd.rar',
  'application/x-rar-compressed',
]);

function mediaTypeTest(value: string): Test {
  const v = value.trim().toLowerCase();
  const isFile = (i: ResourceInfo) => i.type === 'file';
  const mime = (i: ResourceInfo) => (i.mimeType ?? '').toLowerCase();
  switch (v) {
    case 'file':
      return isFile;
    case 'folder':
      return (i) => i.type === 'folder';
    case 'document':
      return (i) => isFile(i) && DOCUMENT.has(mime(i));
    case 'spreadsheet':
      return (i) => isFile(i) && SPREADSHEET.has(mime(i));
    case 'presentation':
      return (i) => isFile(i) && PRESENTATION.has(mime(i));
    case 'pdf':
      return (i) => isFile(i) && mime(i) === 'application/pdf';
    case 'image':
    case 'video':
    case 'audio':
      return (i) => isFile(i) && mime(i).startsWith(`${v}/`);
    case 'archive':
      return (i) => isFile(i) && ARCHIVE.has(mime(i));
  }
  if (/^[a-z0-9.+-]+\/(\*|[a-z0-9.+-]+)$/.test(v)) {
    if (v === FOLDER_MIME_TYPE) return (i) => i.type === 'folder';
    if (v.endsWith('/*')) return (i) => isFile(i) && mime(i).startsWith(v.slice(0, -1));
    return (i) => isFile(i) && mime(i) === v;
  }
  throw invalid(
    `mediatype ${JSON.stringify(value.slice(0, 100))} is neither a mime type nor one of ${MEDIA_TYPE_KEYWORDS.join(', ')}`,
  );
}

/** Midnight starting a day in the server's time zone (days and months past the end roll over). */
function localDay(y: number, m: number, d: number): number {
  const t = new Date(2000, 0, 1);
  t.setFullYear(y, m, d); // (a Date built from a year under 100 would put it in the 1900s)
  return t.getTime();
}

/** A day as written, `YYYY-MM-DD`, or undefined; one that does not exist (2026-02-30) is refused. */
function writtenDay(v: string): number | undefined {
  const dm = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (!dm) return undefined;
  const [y, m, d] = [Number(dm[1]), Number(dm[2]) - 1, Number(dm[3])];
  const t = new Date(localDay(y, m, d));
  if (t.getFullYear() !== y || t.getMonth() !== m || t.getDate() !== d)
    throw invalid(`${v} is not a day of the calendar`);
  return t.getTime();
}

/** [from, to) in ms for an `mtime:` keyword or day, in the server's time zone. */
function mtimeRange(value: string, now: number): [number, number] {
  const d = new Date(now);
  const y = d.getFullYear();
  const m = d.getMonth();
  const dd = d.getDate();
  const today = localDay(y, m, dd);
  const tomorrow = localDay(y, m, dd + 1);
  // (weeks start on Monday, as ISO 8601 counts them)
  const monday = dd - ((d.getDay() + 6) % 7);
  // Periods named "this" run to their end, "last N days" to the end of today (today counted).
  switch (value.trim().toLowerCase().replace(/\s+/g, ' ')) {
    case 'today':
      return [today, tomorrow];
    case 'yesterday':
      return [localDay(y, m, dd - 1), today];
    case 'this week':
      return [localDay(y, m, monday), localDay(y, m, monday + 7)];
    case 'last week':
      return [localDay(y, m, monday - 7), localDay(y, m, monday)];
    case 'last 7 days':
      return [localDay(y, m, dd - 6), tomorrow];
    case 'this month':
      return [localDay(y, m, 1), localDay(y, m + 1, 1)];
    case 'last month':
      return [localDay(y, m - 1, 1), localDay(y, m, 1)];
    case 'last 30 days':
      return [localDay(y, m, dd - 29), tomorrow];
    case 'this year':
      return [localDay(y, 0, 1), localDay(y + 1, 0, 1)];
    case 'last year':
      return [localDay(y - 1, 0, 1), localDay(y, 0, 1)];
  }
  const day = writtenDay(value.trim());
  if (day !== undefined) {
    const t = new Date(day);
    return [day, localDay(t.getFullYear(), t.getMonth(), t.getDate() + 1)];
  }
  throw invalid(
    `mtime ${JSON.stringify(value.slice(0, 100))} is neither a day (YYYY-MM-DD) nor one of ${MTIME_KEYWORDS.join(', ')}`,
  );
}

/** A point in time for `mtime>...`: a day (local midnight) or an ISO 8601 time. */
function instant(value: string): number {
  const v = value.trim();
  const day = writtenDay(v);
  if (day !== undefined) return day;
  const t = /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t))
    throw invalid(`mtime ${JSON.stringify(v.slice(0, 100))} is not a date (YYYY-MM-DD or ISO 8601)`);
  return t;
}

function compare(rel: Relation, a: number, b: number): boolean {
  switch (rel) {
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    default:
      return a === b;
  }
}

/** Properties that are known to OpenCloud's search but not answered here. */
const NOT_HERE = new Set(['content', 'hidden', 'id', 'type', 'title', 'keywords']);
/** Properties answered here. */
const KNOWN = ['name', 'is', 'mediatype', 'mtime', 'size', 'tag', 'tags', 'scope'];

interface Node {
  test: Test;
  /** The property of a term (`name`, `mtime`, ...). */
  field?: string;
  /** Set on a `scope:` term. */
  scope?: string;
  /** Set on an `is:favorite` term. */
  favorite?: boolean;
  /** A parenthesised conjunction's terms (spliced into the conjunction around it). */
  parts?: Node[];
}

/** Whether a node is or holds a `scope:` term. */
function scoped(n: Node): boolean {
  return n.scope !== undefined || !!n.parts?.some(scoped);
}

/** A node's test, refusing a `scope:` where it is not a condition of the whole query. */
function plain(n: Node): Test {
  if (scoped(n)) throw invalid('scope: can only limit the whole search (joined with AND)');
  return n.test;
}

const isOp = (t: Token | undefined, op: 'AND' | 'OR' | 'NOT') => t?.kind === 'op' && t.text === op;

class Parser {
  private pos = 0;
  private depth = 0;
  readonly fields = new Set<Field>();
  readonly metadataKeys = new Set<string>();

  constructor(
    private readonly tokens: Token[],
    private readonly now: number,
  ) {}

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private nest<T>(f: () => T): T {
    if (++this.depth > MAX_NESTING) throw invalid(`the search nests deeper than ${MAX_NESTING}`);
    try {
      return f();
    } finally {
      this.depth--;
    }
  }

  /** The whole query, as the terms of its top-level AND (each with its test). */
  top(): Node[] {
    const nodes = this.disjunction();
    if (this.pos < this.tokens.length) throw invalid('the search has a ")" that was not opened');
    return nodes;
  }

  /** Conjunctions joined by OR: the terms of the one conjunction, or one node for them all. */
  private disjunction(): Node[] {
    const parts = [this.conjunction()];
    while (isOp(this.peek(), 'OR')) {
      this.pos++;
      parts.push(this.conjunction());
    }
    if (parts.length === 1) return parts[0]!;
    const tests = parts.map((nodes) => {
      const ts = nodes.map(plain);
      return (i: ResourceInfo) => ts.every((t) => t(i));
    });
    return [{ test: (i) => tests.some((t) => t(i)) }];
  }

  /**
   * Terms joined by AND (or nothing), up to an OR, a ")" or the end. Terms of one property side
   * by side with nothing between them are alternatives (`name:a name:b`), as KQL joins them.
   */
  private conjunction(): Node[] {
    const nodes: Node[] = [];
    let said = false; // an AND was written before the next term
    for (;;) {
      const t = this.peek();
      if (!t || t.kind === ')' || isOp(t, 'OR')) break;
      if (isOp(t, 'AND')) {
        if (!nodes.length) throw invalid('the search has an AND with nothing before it');
        this.pos++;
        const next = this.peek();
        if (!next || next.kind === ')' || isOp(next, 'AND') || isOp(next, 'OR'))
          throw invalid('the search has an AND with nothing after it');
        said = true;
        continue;
      }
      const n = this.unary();
      const last = nodes[nodes.length - 1];
      if (n.parts) nodes.push(...n.parts);
      else if (!said && last?.field && last.field === n.field && n.field !== 'scope') {
        const [a, b] = [last.test, n.test];
        nodes[nodes.length - 1] = { test: (i) => a(i) || b(i), field: n.field };
      } else nodes.push(n);
      said = false;
    }
    if (!nodes.length) {
      const before = this.tokens[this.pos - 1];
      const t = this.peek();
      throw invalid(
        isOp(before, 'OR')
          ? 'the search has an OR with nothing after it'
          : isOp(t, 'OR')
            ? 'the search has an OR with nothing before it'
            : t?.kind === ')'
              ? 'the search has empty parentheses'
              : 'the search is empty',
      );
    }
    return nodes;
  }

  private unary(): Node {
    const t = this.peek()!;
    if (isOp(t, 'NOT')) {
      this.pos++;
      const next = this.peek();
      if (!next || next.kind === ')' || isOp(next, 'AND') || isOp(next, 'OR'))
        throw invalid('the search has a NOT with nothing after it');
      const inner = plain(this.nest(() => this.unary()));
      return { test: (i) => !inner(i) };
    }
    if (t.kind === '(') {
      this.pos++;
      const parts = this.nest(() => this.disjunction());
      if (this.peek()?.kind !== ')') throw invalid('the search has a "(" that is not closed');
      this.pos++;
      return { test: (i) => parts.every((p) => p.test(i)), parts };
    }
    this.pos++;
    if (t.kind === 'string') return { test: this.free(t.text) };
    if (t.kind !== 'word') throw invalid('the search has a ")" that was not opened');
    const m = /^([A-Za-z][A-Za-z0-9_.-]*)(:|>=|<=|=|>|<)(.*)$/s.exec(t.text);
    if (!m) return { test: this.free(t.text) };
    const field = m[1]!.toLowerCase();
    const rel = m[2] as Relation;
    return { ...this.term(field, rel, m[3]!), field };
  }

  /** Text without a property: names containing it. */
  private free(text: string): Test {
    if (!text) throw invalid('the search has an empty term');
    return nameTest(`*${text}*`);
  }

  /** `field<rel>value`, the value inline or following (a string, a word or a group). */
  private term(field: string, rel: Relation, inline: string): Node {
    if (NOT_HERE.has(field))
      throw new StorageError(
        'UNIMPLEMENTED',
        `searching by ${field} is not available here (no index of it is kept)`,
      );
    if (!KNOWN.includes(field))
      throw new StorageError(
        'UNIMPLEMENTED',
        `searching by ${JSON.stringify(field.slice(0, 50))} is not available here (only ${KNOWN.join(', ')})`,
      );
    if (rel !== ':' && rel !== '=' && field !== 'mtime' && field !== 'size')
      throw invalid(`${field} takes ":" (${rel} compares times and sizes)`);
    const one = (value: string) => this.valueTest(field, rel, value);
    if (inline) return this.leaf(field, this.keyword(field, rel, inline), one);
    const next = this.peek();
    if (next?.kind === 'string') {
      this.pos++;
      return this.leaf(field, next.text, one);
    }
    if (next?.kind === 'word') {
      this.pos++;
      return this.leaf(field, this.keyword(field, rel, next.text), one);
    }
    if (next?.kind === '(' && ['mediatype', 'name', 'mtime', 'tag', 'tags'].includes(field)) {
      this.pos++;
      const test = this.nest(() => this.group(one));
      if (this.peek()?.kind !== ')') throw invalid('the search has a "(" that is not closed');
      this.pos++;
      return { test };
    }
    throw invalid(`${field}${rel} has no value`);
  }

  /**
   * An unquoted value, with the words after it when they make an `mtime:` keyword of several
   * (`mtime:last 7 days`, as OpenCloud's web UI writes it).
   */
  private keyword(field: string, rel: Relation, first: string): string {
    if (field !== 'mtime' || (rel !== ':' && rel !== '=')) return first;
    let value = first.toLowerCase();
    let taken = 0;
    for (let k = this.pos; ; k++) {
      const t = this.tokens[k];
      if (t?.kind !== 'word') break;
      const longer = `${value} ${t.text.toLowerCase()}`;
      if (!MTIME_KEYWORDS.some((w) => w === longer || w.startsWith(`${longer} `))) break;
      value = longer;
      taken = k - this.pos + 1;
    }
    if (!taken || !(MTIME_KEYWORDS as readonly string[]).includes(value)) return first;
    this.pos += taken;
    return value;
  }

  private leaf(field: string, value: string, one: (v: string) => Test): Node {
    if (field === 'scope') {
      if (!value.trim()) throw invalid('scope: needs the id of a folder');
      return { test: () => true, scope: value.trim() };
    }
    if (field === 'is') {
      if (!/^favou?rite$/i.test(value.trim()))
        throw new StorageError(
          'UNIMPLEMENTED',
          `is:${value.slice(0, 50)} is not available here (only is:favorite)`,
        );
      this.fields.add('favorite');
      return { test: (i) => i.favorite === true, favorite: true };
    }
    return { test: one(value) };
  }

  /** `field:("a" OR "b")`: values of one property (side by side with nothing between: OR). */
  private group(one: (v: string) => Test): Test {
    const ors: Test[][] = [];
    let op: 'AND' | 'OR' | undefined = 'OR';
    for (;;) {
      const t = this.peek();
      if (!t || t.kind === ')') break;
      this.pos++;
      if (isOp(t, 'OR') || isOp(t, 'AND')) {
        if (op) throw invalid('a group of values has an empty part');
        op = (t as { text: 'AND' | 'OR' }).text;
        continue;
      }
      if (t.kind !== 'string' && t.kind !== 'word')
        throw invalid('a group of values holds only values, AND and OR');
      const test = one(t.text);
      if (op === 'AND') ors[ors.length - 1]!.push(test);
      else ors.push([test]);
      op = undefined;
    }
    if (op || !ors.length) throw invalid('a group of values has an empty part');
    return (i) => ors.some((and) => and.every((t) => t(i)));
  }

  private valueTest(field: string, rel: Relation, value: string): Test {
    switch (field) {
      case 'name':
        if (!value) throw invalid('name: needs a pattern');
        return nameTest(value);
      case 'mediatype':
        this.fields.add('mimeType');
        return mediaTypeTest(value);
      case 'mtime': {
        if (rel === ':' || rel === '=') {
          const [from, to] = mtimeRange(value, this.now);
          return (i) => i.mtime >= from && i.mtime < to;
        }
        const at = instant(value);
        return (i) => compare(rel, i.mtime, at);
      }
      case 'tag':
      case 'tags': {
        // OpenCloud's tags: the comma-separated `tags` metadata (`oc:tags`), each matched whole,
        // ignoring case.
        const want = value.trim().toLowerCase();
        if (!want) throw invalid('tag: needs a tag');
        this.metadataKeys.add('tags');
        return (i) => i.metadata?.tags?.split(',').some((t) => t.trim().toLowerCase() === want) ?? false;
      }
      case 'size': {
        if (!/^\d{1,16}$/.test(value.trim()))
          throw invalid(`size takes a number of bytes, not ${JSON.stringify(value.slice(0, 50))}`);
        const n = Number(value.trim());
        return (i) => compare(rel, i.size, n);
      }
    }
    throw invalid(`${field} cannot be searched here`);
  }
}

/**
 * Compile a search query. `now` (ms) anchors relative times (`mtime:today`). Throws
 * INVALID_ARGUMENT for a query that does not parse, UNIMPLEMENTED for a property not searchable here.
 */
export function parseQuery(query: string, now = Date.now()): SearchQuery {
  if (query.length > MAX_QUERY) throw invalid(`the search is longer than ${MAX_QUERY} characters`);
  if (query.includes('\0')) throw invalid('the search holds a NUL character');
  const parser = new Parser(lex(query), now);
  const nodes = parser.top();
  const scopes = nodes.filter((n) => n.scope !== undefined);
  if (scopes.length > 1) throw invalid('the search has more than one scope:');
  const tests = nodes.filter((n) => n.scope === undefined).map((n) => n.test);
  return {
    test: (i) => tests.every((t) => t(i)),
    ...(scopes[0] && { scope: scopes[0].scope }),
    favoritesOnly: nodes.some((n) => n.favorite),
    fields: [...parser.fields],
    metadataKeys: [...parser.metadataKeys],
  };
}
