/**
 * The WebDAV `If` header (RFC 4918 §10.4): lists of state tokens and etags, optionally tagged with
 * the resource they apply to.
 *
 * @module
 */
import { StorageError } from '../core/errors.js';

/** One condition of a list: a state token or an entity tag, possibly negated. */
export interface IfCondition {
  not: boolean;
  token?: string;
  etag?: string;
}

/** A list of conditions (all must hold), for the request URI or a tagged resource. */
export interface IfList {
  /** The tagged resource (a URL or path as sent), or undefined for the request URI. */
  resource?: string;
  conditions: IfCondition[];
}

/** Parse an `If` header; malformed headers are INVALID_ARGUMENT (400). */
export function parseIf(value: string): IfList[] {
  const lists: IfList[] = [];
  let i = 0;
  let resource: string | undefined;
  const bad = () => new StorageError('INVALID_ARGUMENT', 'malformed If header');
  const skip = () => {
    while (i < value.length && /\s/.test(value[i]!)) i++;
  };
  const until = (end: string) => {
    const j = value.indexOf(end, i);
    if (j < 0) throw bad();
    const s = value.slice(i, j);
    i = j + 1;
    return s;
  };
  skip();
  while (i < value.length) {
    if (value[i] === '<') {
      i++;
      resource = until('>');
      skip();
      continue;
    }
    if (value[i] !== '(') throw bad();
    i++;
    const conditions: IfCondition[] = [];
    for (;;) {
      skip();
      if (value[i] === ')') {
        i++;
        break;
      }
      let not = false;
      if (value.slice(i, i + 3).toLowerCase() === 'not') {
        not = true;
        i += 3;
        skip();
      }
      if (value[i] === '<') {
        i++;
        conditions.push({ not, token: until('>') });
      } else if (value[i] === '[') {
        i++;
        conditions.push({ not, etag: until(']').trim() });
      } else throw bad();
    }
    if (!conditions.length) throw bad();
    lists.push({ ...(resource !== undefined && { resource }), conditions });
    skip();
  }
  if (!lists.length) throw bad();
  return lists;
}

/**
 * Every state token the header names, negated or not, in lists that hold or not: RFC 4918 §10.4.1
 * counts a token as submitted wherever it appears (whether the header as a whole holds is checked
 * apart, as a 412).
 */
export function submittedTokens(lists: readonly IfList[]): Set<string> {
  const out = new Set<string>();
  for (const l of lists) for (const c of l.conditions) if (c.token) out.add(c.token);
  return out;
}
