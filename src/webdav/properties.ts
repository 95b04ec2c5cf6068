/**
 * Dead WebDAV properties as metadata keys, one convention for the door and the WebDAV client
 * driver, and the one Reva's ocdav uses (so a property set through a Reva gateway in front of the
 * CS3 door is the same property through the WebDAV door): `{ns}name` is kept under
 * `<ns>/<name>`, and OpenCloud's `oc:tags` under `tags`, where OpenCloud keeps a resource's tags.
 *
 * @module
 */
import { OC, parseXml, serialise, type XmlElement } from './xml.js';

/** A property's name: namespace URI and local name. */
export interface PropertyName {
  ns: string;
  local: string;
}

/** An XML name without a colon (a property's local name). */
export const LOCAL_NAME = /^[\p{L}_][\p{L}\p{M}\p{N}._\-\u00B7\u203F\u2040]*$/u;

/** The metadata key of a dead property. */
export function propertyKey(p: PropertyName): string {
  return p.ns === OC && p.local === 'tags' ? 'tags' : `${p.ns}/${p.local}`;
}

/**
 * The property a metadata key names (see {@link propertyKey}); undefined for a key that names
 * none: no `/`, or a local name that is no XML name. Keys come from every door (an API call, CS3,
 * the CLI), not only from PROPPATCH: one that is no XML name is never written into a multistatus,
 * where it could forge markup.
 */
export function propertyOfKey(k: string): PropertyName | undefined {
  if (k === 'tags') return { ns: OC, local: 'tags' };
  const slash = k.lastIndexOf('/');
  if (slash < 0) return undefined;
  const p = { ns: k.slice(0, slash), local: k.slice(slash + 1) };
  // (`oc:tags` has its own key: this one would be a second copy of it)
  return LOCAL_NAME.test(p.local) && !(p.ns === OC && p.local === 'tags') ? p : undefined;
}

/**
 * Whether `value` is one element named as `p`, with nothing that may stand only at a document's
 * start (an XML declaration; processing instructions, to be plain): a structured value, which may
 * be copied into a multistatus (or a PROPPATCH) as it is.
 */
export function isElementOf(p: PropertyName, value: string): boolean {
  if (!value.startsWith('<') || value.includes('<?')) return false;
  try {
    const el = parseXml(value);
    return el.ns === p.ns && el.local === p.local;
  } catch {
    return false;
  }
}

/**
 * A dead property's value as it is kept: the text of one that holds only text (no children,
 * attributes or `xml:lang`), else the whole element, standing alone.
 */
export function keptValue(el: XmlElement): string {
  return holdsTextOnly(el) ? el.content.join('') : serialise(el);
}

/** Whether a property's element holds only text: no children, attributes or `xml:lang`. */
export function holdsTextOnly(el: XmlElement): boolean {
  return el.lang === undefined && !Object.keys(el.attrs).length && el.children.length === 0;
}
