/**
 * Checksums of big bodies on two cores: sha1 (1.9 GB/s here) on the caller's thread; md5, the
 * slowest (about 0.8 GB/s), on a worker thread, which also has zlib compute adler32 on the thread
 * pool (as the trailer of a level-0 deflate: ~6 GB/s, against 1.2 GB/s in JavaScript). (One
 * worker per algorithm was slower on a 2-core machine: one more copy of every chunk, and one more
 * thread to schedule.) At most {@link MAX_BACKLOG} bytes wait for the worker before
 * {@link ParallelChecksums.drain} makes the caller wait.
 *
 * The worker is started on first use, shared by all uploads, and keeps the process alive only
 * while it has work.
 *
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { StorageError } from './errors.js';
import type { Checksums } from './types.js';

/** Bytes a worker may have queued before the caller waits. */
export const MAX_BACKLOG = 8 * 1024 * 1024;
/** Bytes per message to the worker. */
const BLOCK_BYTES = 256 * 1024;

// CommonJS, evaluated in the worker: no file to find next to the compiled one (tests run sources).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const zlib = require('node:zlib');
const jobs = new Map();
// adler32 is the trailer of a zlib stream: deflate at level 0 (stored blocks, a copy) computes it
// natively, on the thread pool, several times faster than adler32 in JavaScript.
function start() {
  const j = { md5: createHash('md5'), z: zlib.createDeflate({ level: 0, chunkSize: 1 << 20 }), tail: Buffer.alloc(0) };
  j.z.on('data', (c) => { j.tail = c.length >= 4 ? c : Buffer.concat([j.tail, c]); });
  return j;
}
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let j = jobs.get(m.id);
    if (!j) { j = start(); jobs.set(m.id, j); }
    const block = new Uint8Array(m.block);
    j.md5.update(block);
    // Once zlib has it too, the block goes back to be filled again (no fresh memory per block).
    j.z.write(block, () => parentPort.postMessage({ id: m.id, done: m.block.byteLength, block: m.block }, [m.block]));
  } else if (m.op === 'digest') {
    const j = jobs.get(m.id) ?? start();
    jobs.delete(m.id);
    const md5 = j.md5.digest('hex');
    j.z.on('end', () => parentPort.postMessage({ id: m.id, digest: { md5, adler32: j.tail.subarray(j.tail.length - 4).toString('hex') } }));
    j.z.on('error', (err) => parentPort.postMessage({ id: m.id, failed: String(err) }));
    j.z.end();
  } else if (m.op === 'cancel') {
    jobs.get(m.id)?.z.destroy();
    jobs.delete(m.id);
  }
});
`;

interface Pending {
  backlog: number;
  /** Set when the job can no longer finish (its worker stopped); every later call throws it. */
  error?: StorageError;
  waiting?: () => void;
  result?: (digest: { md5: string; adler32: string }) => void;
  fail?: (err: unknown) => void;
}

/**
 * The md5 worker, shared by all bodies. A job belongs to the worker that saw its first block: if
 * that worker stops, the job fails (a new worker would only see the rest of the body), and the
 * next body starts a new worker.
 */
class HashWorker {
  private worker: Worker | undefined;
  private readonly jobs = new Map<number, Pending>();

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true });
    if (this.jobs.size === 0) w.unref(); // idle: let the process exit
    w.on(
      'message',
      (m: {
        id: number;
        done?: number;
        block?: ArrayBuffer;
        digest?: { md5: string; adler32: string };
        failed?: string;
      }) => {
        if (m.block?.byteLength === BLOCK_BYTES && freeBlocks.length < MAX_BACKLOG / BLOCK_BYTES)
          freeBlocks.push(m.block);
        const job = this.jobs.get(m.id);
        if (!job) return;
        if (m.done !== undefined) {
          job.backlog -= m.done;
          if (job.waiting && job.backlog <= MAX_BACKLOG) this.wake(job);
        } else if (m.digest !== undefined) {
          this.end(m.id);
          job.result?.(m.digest);
        } else if (m.failed !== undefined) {
          this.end(m.id);
          job.fail?.(new StorageError('INTERNAL', `checksums failed: ${m.failed}`));
        }
      },
    );
    const down = (err: unknown) => {
      if (this.worker !== w) return; // 'error' then 'exit': the first one did it
      this.worker = undefined;
      const jobs = [...this.jobs.values()];
      this.jobs.clear();
      for (const job of jobs) {
        job.error = new StorageError('INTERNAL', 'the md5 worker stopped', { cause: err });
        job.fail?.(job.error);
        this.wake(job);
      }
    };
    w.on('error', down);
    w.on('exit', (code) => down(new Error(`exit ${code}`)));
    this.worker = w;
    return w;
  }

  private wake(job: Pending): void {
    const go = job.waiting;
    job.waiting = undefined;
    go?.();
  }

  begin(id: number): Pending {
    const job: Pending = { backlog: 0 };
    const w = this.start();
    if (this.jobs.size === 0) w.ref(); // work to do: keep the process alive
    this.jobs.set(id, job);
    return job;
  }

  private end(id: number): void {
    this.jobs.delete(id);
    if (this.jobs.size === 0) this.worker?.unref();
  }

  private live(id: number, job: Pending): Worker {
    if (job.error) throw job.error;
    if (!this.jobs.has(id) || !this.worker) throw new StorageError('INTERNAL', 'checksum job is over');
    return this.worker;
  }

  /** Hand `block` over (transferred, not copied: the caller must not touch it again). */
  update(id: number, job: Pending, block: ArrayBuffer): void {
    const w = this.live(id, job);
    job.backlog += block.byteLength;
    w.postMessage({ op: 'update', id, block }, [block]);
  }

  /** Wait while the worker is more than {@link MAX_BACKLOG} behind. */
  async drain(job: Pending): Promise<void> {
    if (job.error) throw job.error;
    if (job.backlog > MAX_BACKLOG) await new Promise<void>((resolve) => (job.waiting = resolve));
    if (job.error) throw job.error;
  }

  digest(id: number, job: Pending): Promise<{ md5: string; adler32: string }> {
    return new Promise((resolve, reject) => {
      const w = this.live(id, job);
      job.result = resolve;
      job.fail = reject;
      w.postMessage({ op: 'digest', id });
    });
  }

  cancel(id: number): void {
    if (!this.jobs.has(id)) return;
    this.end(id);
    this.worker?.postMessage({ op: 'cancel', id });
  }

  /** For tests: stop the worker as if it had crashed. */
  async crashForTest(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    const exited = new Promise((resolve) => w.once('exit', resolve)); // after our own 'exit' handler
    await w.terminate();
    await exited;
  }
}

/** Blocks the worker is done with, filled again by the next bodies (fewer page faults). */
const freeBlocks: ArrayBuffer[] = [];

const md5Worker = new HashWorker();
let nextId = 1;

/** sha1, md5 and adler32 of a body, computed on two threads. */
export class ParallelChecksums {
  private readonly sha1: Hash = createHash('sha1');
  private readonly id = nextId++;
  private readonly md5 = md5Worker.begin(this.id);
  private settled = false;
  // Chunks are copied into a block of their own, which is then transferred to the worker. Posting
  // a chunk itself would copy its whole ArrayBuffer, which may be far bigger than the chunk (a
  // slice of a pooled or caller-owned buffer).
  private block: Buffer | undefined;
  private filled = 0;
  bytes = 0;

  update(chunk: Uint8Array): void {
    if (this.settled) throw new StorageError('INTERNAL', 'checksums already taken or cancelled');
    this.sha1.update(chunk);
    this.bytes += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      // Its own ArrayBuffer, never Node's shared pool: it is transferred to the worker and back.
      if (!this.block) {
        const ab = freeBlocks.pop();
        this.block = ab ? Buffer.from(ab) : Buffer.allocUnsafeSlow(BLOCK_BYTES);
      }
      const n = Math.min(chunk.length - at, BLOCK_BYTES - this.filled);
      this.block.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === BLOCK_BYTES) this.send();
    }
  }

  private send(): void {
    if (!this.block || !this.filled) return;
    const ab = this.block.buffer as ArrayBuffer;
    md5Worker.update(this.id, this.md5, this.filled === BLOCK_BYTES ? ab : ab.slice(0, this.filled));
    this.block = undefined;
    this.filled = 0;
  }

  /** Wait while the worker is more than {@link MAX_BACKLOG} behind. */
  drain(): Promise<void> {
    return md5Worker.drain(this.md5);
  }

  async digest(): Promise<Required<Checksums>> {
    if (this.settled) throw new StorageError('INTERNAL', 'checksums already taken or cancelled');
    this.settled = true;
    this.send();
    const { md5, adler32 } = await md5Worker.digest(this.id, this.md5);
    return { sha1: this.sha1.digest('hex'), md5, adler32 };
  }

  /** Drop the work (a failed upload). */
  cancel(): void {
    if (this.settled) return;
    this.settled = true;
    md5Worker.cancel(this.id);
  }
}

/** @internal Stop the md5 worker as if it had crashed (tests). */
export function crashWorkerForTests(): Promise<void> {
  return md5Worker.crashForTest();
}
