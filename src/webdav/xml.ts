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
import { TextDecoder } from 'node:util';
import { SaxesParser } from 'saxes';
import { StorageError } from '../core/errors.js';

/** An element: namespace URI, local name, children, text, and the raw XML it came from. */
export interface XmlElement {
  ns: string;
  local: string;
  children: XmlElement[];
  text: string;
  /** Text and child elements in document order (mixed content, as a dead property keeps it). */
  content: (string | XmlElement)[];
  /** The `xml:lang` in scope (its own or inherited), which a dead property keeps (RFC 4918 §4.3). */
  lang?: string;
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

/**
 * What the request bodies read into memory may take, all connections together: `maxBytes` held
 * at once (past that, a body is answered 503 and the client asked to retry), and `deadlineMs` to
 * send a body whole (past that, 408 and the connection is closed). Without them a thousand
 * connections each trickling a body just under the 1 MiB limit would hold a GiB for as long as
 * they kept trickling.
 */
export class BodyBudget {
  private held = 0;
  constructor(
    readonly maxBytes = 64 * 1024 * 1024,
    readonly deadlineMs = 30_000,
  ) {}

  /** Bytes held by bodies being read now. */
  get bytes(): number {
    return this.held;
  }

  /** Take `n` bytes, if there is room. */
  take(n: number): boolean {
    if (this.held + n > this.maxBytes) return false;
    this.held += n;
    return true;
  }

  give(n: number): void {
    this.held -= n;
  }
}

/** What a part of a body held in memory costs besides its bytes (its Buffer object, its backing store). */
const PART_COST = 256;

/**
 * Read a request body whole, at most `limit` bytes (larger: 413), within `budget` (its bytes:
 * 503; its deadline: 408).
 */
export function readBody(req: IncomingMessage, budget: BodyBudget, limit = MAX_XML_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(
      new StorageError('INVALID_ARGUMENT', `request body over ${limit} bytes`, { reason: 'too-large' }),
    );
  }
  if (req.destroyed) return Promise.reject(new StorageError('CANCELLED', 'the client went away'));
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0)); // (read before: nothing is left)
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    let held = 0; // taken from the budget: the bytes and what each part costs besides
    const finish = (err: Error | undefined) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      clearTimeout(timer);
      budget.give(held);
      if (err) reject(err);
      else resolve(Buffer.concat(parts, n));
    };
    const onData = (chunk: Buffer) => {
      if (n + chunk.length > limit)
        return finish(
          new StorageError('INVALID_ARGUMENT', `request body over ${limit} bytes`, { reason: 'too-large' }),
        );
      // (a body trickled a few bytes per packet is many small parts: each costs more than its bytes)
      if (!budget.take(chunk.length + PART_COST))
        return finish(
          new StorageError('UNAVAILABLE', 'too many request bodies being read at once: try again shortly'),
        );
      held += chunk.length + PART_COST;
      n += chunk.length;
      parts.push(chunk);
    };
    const onEnd = () => finish(undefined);
    const onError = (err: Error) =>
      finish(new StorageError('CANCELLED', 'the request body was cut', { cause: err }));
    // (after 'end' nothing listens any more: a close before it is a body cut short)
    const onClose = () => finish(new StorageError('CANCELLED', 'the client went away'));
    const timer =
      budget.deadlineMs === Number.POSITIVE_INFINITY
        ? undefined
        : setTimeout(
            () =>
              finish(
                new StorageError('CANCELLED', `the request body took over ${budget.deadlineMs / 1000} s`, {
                  reason: 'body-timeout',
                }),
              ),
            budget.deadlineMs,
          );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** The namespace of `xml:lang` and `xml:space`, bound to the prefix `xml` and never declared. */
export const XML_NS = 'http://www.w3.org/XML/1998/namespace';

/**
 * A body's text, decoded as its sender says (RFC 7303 §3): a byte order mark first, then the
 * charset of the Content-Type, then the XML declaration's encoding, else UTF-8. Bytes that are
 * not valid in that encoding, and encodings not known here, are refused (INVALID_ARGUMENT): a
 * property value is never stored with characters guessed.
 */
export function decodeXml(body: Buffer, contentType?: string): string {
  let label: string | undefined;
  let start = 0;
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) [label, start] = ['utf-8', 3];
  else if (body[0] === 0xff && body[1] === 0xfe) [label, start] = ['utf-16le', 2];
  else if (body[0] === 0xfe && body[1] === 0xff) [label, start] = ['utf-16be', 2];
  else {
    label = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '')?.[1];
    if (!label) {
      // The declaration is ASCII in every encoding it may name (UTF-16 comes with its mark).
      const head = body.subarray(0, 256).toString('latin1');
      label = /^<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']/.exec(head)?.[1];
    }
  }
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label ?? 'utf-8', { fatal: true, ignoreBOM: true });
  } catch {
    throw new StorageError(
      'INVALID_ARGUMENT',
      `the body is in ${label}, an encoding this server does not read`,
      {
        reason: 'body',
      },
    );
  }
  try {
    return decoder.decode(start ? body.subarray(start) : body);
  } catch {
    throw new StorageError('INVALID_ARGUMENT', `the body is not valid ${decoder.encoding}`, {
      reason: 'body',
    });
  }
}

/**
 * Parse an XML document into its root element (INVALID_ARGUMENT when it is not well-formed XML).
 * A body given as bytes is decoded by {@link decodeXml} (`contentType` names its charset, if any).
 */
export function parseXml(body: Buffer | string, contentType?: string): XmlElement {
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
    const lang = attrs[`{${XML_NS}}lang`] ?? parent?.lang;
    const el: XmlElement = {
      ns: tag.uri ?? '',
      local: tag.local ?? tag.name,
      children: [],
      text: '',
      content: [],
      attrs,
      scope,
      ...(lang !== undefined && { lang }),
    };
    if (parent) {
      parent.children.push(el);
      parent.content.push(el);
    } else if (root) return fail('more than one root element');
    else root = el;
    stack.push(el);
  });
  const onText = (t: string) => {
    const top = stack.at(-1);
    if (!top) return;
    if (top.text.length < 64 * 1024) top.text += t;
    // In order, for mixed content (bounded by the body's own limit).
    const last = top.content.length - 1;
    if (typeof top.content[last] === 'string') top.content[last] += t;
    else top.content.push(t);
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('closetag', () => {
    stack.pop();
  });
  const text = typeof body === 'string' ? body : decodeXml(body, contentType);
  try {
    parser.write(text).close();
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
 * Serialise an element again (a dead property's value), declaring the namespaces it uses so it
 * stands alone: its text and children in order (mixed content), and the `xml:lang` in scope
 * where it was sent (RFC 4918 §4.3), even when declared on an element above it.
 */
export function serialise(el: XmlElement): string {
  return serialiseContent([el], el.lang);
}

/**
 * Serialise text and elements (a lock owner's content), declaring the namespaces they use on each
 * top element, so each stands alone. `lang`: the `xml:lang` in scope, set on top elements that
 * carry none of their own.
 */
export function serialiseContent(content: readonly (string | XmlElement)[], lang?: string): string {
  return content.map((c) => (typeof c === 'string' ? esc(c) : standalone(c, lang))).join('');
}

function standalone(el: XmlElement, lang: string | undefined): string {
  const prefixes = new Map<string, string>();
  const prefixOf = (ns: string): string => {
    if (!ns) return '';
    if (ns === XML_NS) return 'xml:';
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
    const body = e.content.map((c) => (typeof c === 'string' ? esc(c) : inner(c))).join('');
    return `<${name}${attrs}>${body}</${name}>`;
  };
  const out = inner(el);
  let decls = [...prefixes].map(([ns, p]) => ` xmlns:${p}="${esc(ns)}"`).join('');
  if (lang !== undefined && el.attrs[`{${XML_NS}}lang`] === undefined) decls += ` xml:lang="${esc(lang)}"`;
  // Declarations go on the outermost element.
  return out.replace(/^<([^\s>]+)/, `<$1${decls}`);
}
