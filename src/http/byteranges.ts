/**
 * GETs of several ranges of a file at once (RFC 9110 §14.6): one `multipart/byteranges` answer,
 * each part read from where the driver holds the file. Vector reads (davix, ROOT over HTTP) ask
 * dozens of small ranges of a big file this way; the whole file instead would cost them the file.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resolveRange } from '../core/conditions.js';
import { StorageError } from '../core/errors.js';
import type { ByteRange, ReadResult } from '../core/types.js';

/** More ranges than this in one header and it is ignored: the whole file is sent (Apache's `MaxRanges` default). */
export const MAX_RANGES = 200;
/** Ranges closer than this are sent as one part (a part's own header costs about as much). */
const MERGE_GAP = 80;
/**
 * Most bytes read and dropped between the parts taken from a stream: past it the whole file is
 * sent instead, at the pace the client takes it, rather than read ahead of nobody.
 */
export const MAX_SKIPPED = 1024 * 1024;
/** Bytes per read of a local file. */
const READ_CHUNK = 1024 * 1024;

/** An inclusive byte span. */
export interface Span {
  start: number;
  end: number;
}

/**
 * The parts to send for `ranges` of a file of `size` bytes, in the order they were asked, each
 * merged into the part before it when the two overlap or nearly touch (§14.6 allows it). `null`
 * when none can be satisfied (416). `undefined` when the whole file is the answer (200, as §14.2
 * allows): parts that would add up to more than the file (overlapping ranges, a way to make a
 * server send a file many times over); when the bytes can only be read front to back
 * (`sequential`), parts out of order, or more than {@link MAX_SKIPPED} bytes to read and drop
 * before the last one.
 */
export function planParts(
  ranges: readonly ByteRange[],
  size: number,
  sequential: boolean,
): Span[] | null | undefined {
  const parts: Span[] = [];
  let bytes = 0;
  for (const range of ranges) {
    const s = resolveRange(range, size);
    if (!s) continue;
    const last = parts.at(-1);
    if (last && s.start <= last.end + MERGE_GAP && s.end + MERGE_GAP >= last.start) {
      bytes -= last.end - last.start + 1;
      last.start = Math.min(last.start, s.start);
      last.end = Math.max(last.end, s.end);
    } else parts.push({ ...s });
    const p = parts.at(-1)!;
    bytes += p.end - p.start + 1;
  }
  if (!parts.length) return null;
  if (bytes > size) return undefined;
  if (sequential) {
    if (parts.some((p, i) => i > 0 && p.start <= parts[i - 1]!.end)) return undefined;
    if (parts.at(-1)!.end + 1 - bytes > MAX_SKIPPED) return undefined;
  }
  return parts;
}

/** Where a read's bytes can be taken from, a span at a time. */
type Reader = (span: Span) => AsyncGenerator<Uint8Array>;

/** Whether the bytes of `r` can only be read front to back (a stream, no local file or bytes at hand). */
export function readsInOrder(r: ReadResult): boolean {
  return !r.bytes && !r.file;
}

function readerOf(r: ReadResult): Reader {
  const origin = r.range?.start ?? 0;
  if (r.bytes) {
    const bytes = r.bytes;
    return async function* (s) {
      yield bytes.subarray(s.start - origin, s.end - origin + 1);
    };
  }
  if (r.file) {
    const { handle } = r.file;
    return async function* (s) {
      for (let pos = s.start; pos <= s.end; ) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, s.end - pos + 1));
        const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) throw new StorageError('ABORTED', 'the file got shorter while it was sent');
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    };
  }
  // A stream from `origin`: spans are taken in order, what lies between them read and dropped.
  const it = (r.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  let pos = origin;
  let pending: Uint8Array | undefined;
  return async function* (s) {
    while (pos <= s.end) {
      let chunk = pending;
      if (!chunk?.length) {
        const next = await it.next();
        if (next.done) throw new StorageError('ABORTED', 'the file got shorter while it was sent');
        chunk = next.value;
      }
      const from = Math.max(0, s.start - pos);
      const to = Math.min(chunk.length, s.end - pos + 1);
      if (from < to) yield chunk.subarray(from, to);
      const used = Math.min(chunk.length, Math.max(from, to));
      pending = chunk.subarray(used);
      pos += used;
    }
  };
}

/**
 * Send `parts` of a file a read opened (a 206 whose body starts at `r.range.start`): one part as a
 * plain 206 with its Content-Range, more as `multipart/byteranges`. `headers` are the answer's
 * other headers (its validators, Content-Type of the file); `release` lets the file go, which the
 * answer waits for before it ends.
 */
export async function sendParts(
  res: ServerResponse,
  r: ReadResult,
  parts: Span[],
  head: boolean,
  headers: Record<string, string>,
  release: () => Promise<void>,
): Promise<void> {
  const size = r.info.size;
  let heads: string[] = [];
  let tail = '';
  let length = parts.reduce((n, p) => n + p.end - p.start + 1, 0);
  const out = { ...headers };
  if (parts.length === 1) {
    out['content-range'] = `bytes ${parts[0]!.start}-${parts[0]!.end}/${size}`;
  } else {
    const boundary = randomBytes(12).toString('hex');
    const type = /^[\x20-\x7e]+$/.test(out['content-type'] ?? '')
      ? out['content-type']
      : 'application/octet-stream';
    heads = parts.map(
      (p, i) =>
        `${i ? '\r\n' : ''}--${boundary}\r\ncontent-type: ${type}\r\ncontent-range: bytes ${p.start}-${p.end}/${size}\r\n\r\n`,
    );
    tail = `\r\n--${boundary}--\r\n`;
    length += heads.reduce((n, h) => n + h.length, 0) + tail.length;
    out['content-type'] = `multipart/byteranges; boundary=${boundary}`;
  }
  out['content-length'] = String(length);
  res.writeHead(206, out);
  if (head) {
    await release();
    res.end();
    return;
  }
  const read = readerOf(r);
  async function* body() {
    for (const [i, part] of parts.entries()) {
      if (heads[i]) yield Buffer.from(heads[i]!, 'latin1');
      yield* read(part);
    }
    await release(); // before the answer ends: a client that has it finds the file let go of
    if (tail) yield Buffer.from(tail, 'latin1');
  }
  try {
    await pipeline(Readable.from(body(), { objectMode: false }), res);
  } catch (err) {
    await release();
    if (err instanceof StorageError) throw err;
    throw new StorageError('CANCELLED', 'the client went away', { cause: err });
  }
}
