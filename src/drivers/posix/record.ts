/**
 * The on-disk metadata format of the POSIX driver: one compact JSON record per node in the xattr
 * `user.stowage.n`, arbitrary metadata in `user.stowage.m` (or a sidecar when large).
 *
 * Record fields (short keys keep it well under ext4's ~3.5 KiB per inode):
 * - `id`   node id (UUID); a space root's id is the space id
 * - `p`    parent id (absent on a space root)
 * - `ck`   checksums `{sha1, md5, adler32}` (hex), valid only while the file's mtime and size are
 *          still `ckm` (ms) and `cks` (bytes): a file changed behind our back never shows stale sums
 * - `ts`   tree size in bytes (folders); absent = not accounted yet, computed on first need
 * - `tm`   tree time in microseconds (folders), strictly increasing with every change below
 * - `md`   1 = arbitrary metadata inline in `user.stowage.m`, 2 = in the sidecar
 *          `<space>/.stowage/meta/<id:2>/<id>.json`
 * - `sp`   space properties (space roots only)
 *
 * @module
 */
import type { Checksums, SpaceType, UserRef } from '../../core/types.js';

/** Prefix of every xattr Stowage writes. */
export const XATTR_PREFIX = 'user.stowage.';
/** The node record. */
export const XATTR_NODE = `${XATTR_PREFIX}n`;
/** Inline arbitrary metadata. */
export const XATTR_META = `${XATTR_PREFIX}m`;

/** Space properties kept on a space root. */
export interface SpaceProps {
  type: SpaceType;
  name: string;
  alias: string;
  owner?: UserRef;
  desc?: string;
  quota?: number;
  disabled?: boolean;
}

/** The node record, as stored. */
export interface NodeRecord {
  id: string;
  p?: string;
  ck?: Required<Checksums>;
  ckm?: number;
  cks?: number;
  ts?: number;
  tm?: number;
  md?: 1 | 2;
  sp?: SpaceProps;
}

const UUIDISH = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Parse a record; undefined when absent or unusable (it is then treated as a node never seen). */
export function decodeRecord(buf: Buffer | undefined): NodeRecord | undefined {
  if (!buf || buf.length === 0) return undefined;
  let r: unknown;
  try {
    r = JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!r || typeof r !== 'object') return undefined;
  const rec = r as NodeRecord;
  if (typeof rec.id !== 'string' || !UUIDISH.test(rec.id)) return undefined;
  if (rec.p !== undefined && (typeof rec.p !== 'string' || !UUIDISH.test(rec.p))) delete rec.p;
  if (rec.ts !== undefined && !(Number.isSafeInteger(rec.ts) && rec.ts >= 0)) delete rec.ts;
  if (rec.tm !== undefined && !Number.isSafeInteger(rec.tm)) delete rec.tm;
  return rec;
}

/** Serialise a record. */
export function encodeRecord(rec: NodeRecord): string {
  return JSON.stringify(rec);
}

/** Valid node and space ids (what we mint and what we accept back from disk and clients). */
export function isValidId(id: string): boolean {
  return UUIDISH.test(id);
}
