/**
 * XML of WebDAV request bodies, read safely, and the escaping of what we write.
 *
 * Request bodies are small documents (propfind, proppatch, lockinfo). They are read whole, within
 * a byte limit, into a namespace-resolved element tree. A DOCTYPE is refused outright, so no
 * entity (internal or external) is ever declared, let alone expanded; nesting and element counts
 * are bounded. Text between elements is kept but never required (clients send stray text).
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { SaxesParser } from 'saxes';
import { StorageError } from '../core/errors.js';

/** An element: namespace URI, local name, children, text, and the raw XML it came from. */
export interface XmlElement {
  ns: string;
  local: string;
  children: XmlElement[];
  text: string;
  /** Attributes by `{ns}local` (ns empty for unprefixed). */
  attrs: Record<string, string>;
  /** Namespace declarations in scope (prefix → URI), for re-serialising dead properties. */
  scope: Record<string, string>;
}

export const DAV = 'DAV:';
export const OC = 'http://owncloud.org/ns';
export const NC = 'http://nextcloud.org/ns';
/** Stowage's own properties and error details. */
export const ST = 'urn:stowage';

/** Limits of a request body. */
export const MAX_XML_BYTES = 1024 * 1024;
const MAX_DEPTH = 32;
const MAX_ELEMENTS = 20_000;

/** Read a request body whole, at most `limit` bytes (larger: 413). */
export async function readBody(req: IncomingMessage, limit = MAX_XML_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new StorageError('INVALID_ARGUMENT', `request body over ${limit} bytes`, { reason: 'too-large' });
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      req.resume();
      throw new StorageError('INVALID_ARGUMENT', `request body over ${limit} bytes`, { reason: 'too-large' });
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

/** Parse an XML document into its root element (INVALID_ARGUMENT when it is not well-formed XML). */
export function parseXml(body: Buffer | string): XmlElement {
  const parser = new SaxesParser({ xmlns: true, position: false });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let count = 0;
  let failure: Error | undefined;
  const fail = (message: string) => {
    failure ??= new StorageError('INVALID_ARGUMENT', message);
  };
  parser.on('doctype', () => fail('a DOCTYPE is not accepted'));
  parser.on('error', (err) => fail(`malformed XML: ${err.message}`));
  parser.on('opentag', (tag) => {
    if (failure) return;
    if (++count > MAX_ELEMENTS) return fail('too many XML elements');
    if (stack.length >= MAX_DEPTH) return fail('XML nested too deeply');
    const attrs: Record<string, string> = {};
    for (const a of Object.values(tag.attributes)) {
      if (typeof a === 'string') continue;
      if (a.prefix === 'xmlns' || a.name === 'xmlns') continue;
      attrs[`{${a.uri}}${a.local}`] = a.value;
    }
    const parent = stack.at(-1);
    const scope = { ...(parent?.scope ?? {}), ...(tag.ns ?? {}) };
    const el: XmlElement = {
      ns: tag.uri ?? '',
      local: tag.local ?? tag.name,
      children: [],
      text: '',
      attrs,
      scope,
    };
    if (parent) parent.children.push(el);
    else if (root) return fail('more than one root element');
    else root = el;
    stack.push(el);
  });
  parser.on('text', (t) => {
    const top = stack.at(-1);
    if (top && top.text.length < 64 * 1024) top.text += t;
  });
  parser.on('cdata', (t) => {
    const top = stack.at(-1);
    if (top && top.text.length < 64 * 1024) top.text += t;
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  try {
    parser.write(typeof body === 'string' ? body : body.toString('utf8')).close();
  } catch (err) {
    fail(`malformed XML: ${(err as Error).message}`);
  }
  if (failure) throw failure;
  if (!root) throw new StorageError('INVALID_ARGUMENT', 'no XML document');
  return root;
}

/** The first child with this namespace and name. */
export function child(el: XmlElement | undefined, ns: string, local: string): XmlElement | undefined {
  return el?.children.find((c) => c.ns === ns && c.local === local);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 cannot carry these characters
const TEXT_UNSAFE = /[<>&\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/**
 * Escape text for XML element content only (quotes need no escaping there). Most values (names,
 * ids, etags, numbers) have nothing to escape and are returned as they are, after one scan.
 */
export function escText(s: string): string {
  return TEXT_UNSAFE.test(s) ? esc(s) : s;
}

/** Escape text for XML content or a double-quoted attribute. */
export function esc(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 cannot carry these characters
  return s.replace(/[<>&"'\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, (c) => {
    switch (c) {
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '&':
        return '&amp;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      default:
        // Not representable in XML 1.0, in any form: shown as the replacement character (the
        // href, percent-encoded, still names the resource exactly).
        return '\ufffd';
    }
  });
}

/**
 * Serialise an element again (a dead property's value, a lock owner), declaring the namespaces it
 * uses so it stands alone.
 */
export function serialise(el: XmlElement): string {
  const prefixes = new Map<string, string>();
  const prefixOf = (ns: string): string => {
    if (!ns) return '';
    let p = prefixes.get(ns);
    if (!p) {
      p = `x${prefixes.size}`;
      prefixes.set(ns, p);
    }
    return `${p}:`;
  };
  const inner = (e: XmlElement): string => {
    const name = `${prefixOf(e.ns)}${e.local}`;
    const attrs = Object.entries(e.attrs)
      .map(([k, v]) => {
        const m = /^\{(.*)\}(.*)$/.exec(k)!;
        return ` ${prefixOf(m[1]!)}${m[2]}="${esc(v)}"`;
      })
      .join('');
    const body = e.children.length ? e.children.map(inner).join('') : esc(e.text);
    return `<${name}${attrs}>${body}</${name}>`;
  };
  const out = inner(el);
  const decls = [...prefixes].map(([ns, p]) => ` xmlns:${p}="${esc(ns)}"`).join('');
  // Declarations go on the outermost element.
  return out.replace(/^<([^\s>]+)/, `<$1${decls}`);
}
