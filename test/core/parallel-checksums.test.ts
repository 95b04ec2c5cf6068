import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChecksumAccumulator } from '../../src/core/checksums.js';
import { crashWorkerForTests, MAX_BACKLOG, ParallelChecksums } from '../../src/core/parallel-checksums.js';

/** Feed the same bytes to both, in uneven chunks, waiting on drain as the driver does. */
async function both(total: number, chunk: () => number) {
  const serial = new ChecksumAccumulator();
  const parallel = new ParallelChecksums();
  let left = total;
  while (left > 0) {
    const c = randomBytes(Math.min(left, chunk()));
    serial.update(c);
    parallel.update(c);
    left -= c.length;
    await parallel.drain();
  }
  return { serial: serial.digest(), parallel: await parallel.digest(), bytes: parallel.bytes };
}

describe('ParallelChecksums', () => {
  it('agrees with the single-thread checksums for odd chunkings', async () => {
    for (const [total, size] of [
      [0, 1],
      [1, 1],
      [70_001, 13],
      [1_000_003, 65_537],
    ] as const) {
      const r = await both(total, () => size);
      expect(r.parallel).toEqual(r.serial);
      expect(r.bytes).toBe(total);
    }
  });

  it('agrees past the backlog limit, with many bodies at once', async () => {
    const runs = await Promise.all(
      [0, 1, 2].map(() => both(MAX_BACKLOG * 2 + 12_345, () => 1 + Math.floor(Math.random() * 300_000))),
    );
    for (const r of runs) expect(r.parallel).toEqual(r.serial);
  });

  it('agrees for slices of one big buffer (each chunk copied alone, not its whole buffer)', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 7);
    const serial = new ChecksumAccumulator();
    const parallel = new ParallelChecksums();
    for (let at = 0; at < data.length; at += 100_000) {
      const c = data.subarray(at, at + 100_000);
      serial.update(c);
      parallel.update(c);
      await parallel.drain();
    }
    expect(await parallel.digest()).toEqual(serial.digest());
    expect(data.length).toBe(3 * 1024 * 1024 + 7); // the caller's buffer is left whole
  });

  it('forgets a cancelled body and goes on with the next', async () => {
    const dropped = new ParallelChecksums();
    dropped.update(randomBytes(600_000));
    dropped.cancel();
    const r = await both(300_000, () => 4096);
    expect(r.parallel).toEqual(r.serial);
  });

  it('fails, never hangs, the bodies of a worker that dies, and the next body gets a new one', async () => {
    const a = new ParallelChecksums();
    const b = new ParallelChecksums();
    a.update(randomBytes(600_000));
    b.update(randomBytes(300_000));
    // Waiting for its digest when the worker goes: the digest may have come back first; either
    // way the promise settles.
    const bDigest = b.digest().then(
      () => 'digest',
      (e: Error) => e.message,
    );
    await crashWorkerForTests();
    expect(await bDigest).toMatch(/^digest$|md5 worker stopped/);
    // Still streaming: the next block, a drain and the digest all fail at once.
    expect(() => a.update(randomBytes(300_000))).toThrow(/md5 worker stopped/);
    await expect(a.drain()).rejects.toThrow(/md5 worker stopped/);
    await expect(a.digest()).rejects.toThrow(/md5 worker stopped/);
    const r = await both(700_000, () => 65_536);
    expect(r.parallel).toEqual(r.serial);
  });

  it('refuses to be used after its digest or a cancel', async () => {
    const done = new ParallelChecksums();
    done.update(Buffer.from('x'));
    await done.digest();
    expect(() => done.update(Buffer.from('y'))).toThrow(/already taken/);
    await expect(done.digest()).rejects.toThrow(/already taken/);
    const dropped = new ParallelChecksums();
    dropped.cancel();
    expect(() => dropped.update(Buffer.from('y'))).toThrow(/already taken or cancelled/);
  });
});
