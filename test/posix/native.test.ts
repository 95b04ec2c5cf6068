/**
 * The xattr binding against another process rewriting the same record: `fs-xattr` reads a value
 * in two calls (its size, then its bytes), so a value made longer in between gives ERANGE, and its
 * synchronous read of a value made shorter keeps the old size, with stray bytes after the value.
 * Records of busy folders are rewritten by every commit of every process: a read must never fail
 * for that, nor give a record that was never written.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { loadNative, type Native, onThisThread } from '../../src/drivers/posix/native.js';
import { decodeRecord } from '../../src/drivers/posix/record.js';
import { tempRoot } from '../helpers/tmp.js';

describe('posix: xattr reads while another process rewrites the value', () => {
  it('never fail, and never give a record that was not written', async () => {
    const native = await loadNative();
    const file = path.join(await tempRoot('native'), 'busy');
    fs.writeFileSync(file, '');
    const short = JSON.stringify({ id: 'a', ts: 1 });
    const long = JSON.stringify({ id: 'a', ts: 123456789, tm: 1700000000000000, p: 'b'.repeat(300) });
    native.setxattrSync(file, 'user.test', short);
    // The writer alternates the short and the long record while we read, about 40,000 times a
    // second (a commit of another process takes longer than the 20 µs it pauses between writes).
    // (Without any pause, a synchronous two-call read can lose the race a hundred times in a row.)
    const writer = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const x = await import('fs-xattr'); const v = [${JSON.stringify(short)}, ${JSON.stringify(long)}];
         const pause = new Int32Array(new SharedArrayBuffer(4));
         for (let i = 0; ; i++) {
           x.setAttributeSync(${JSON.stringify(file)}, 'user.test', v[i % 2]);
           Atomics.wait(pause, 0, 0, 0.02);
         }`,
      ],
      { cwd: process.cwd(), stdio: 'ignore' },
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      const records = [decodeRecord(Buffer.from(short)), decodeRecord(Buffer.from(long))];
      let reads = 0;
      let unreadable = 0;
      const end = Date.now() + 1500;
      while (Date.now() < end) {
        for (let i = 0; i < 200; i++, reads++) {
          const rec = decodeRecord(native.getxattrSync(file, 'user.test'));
          if (rec === undefined) unreadable++;
          else expect(records).toContainEqual(rec);
        }
        // The asynchronous read is exact.
        const v = (await native.getxattr(file, 'user.test'))!.toString();
        expect([short, long]).toContain(v);
      }
      expect(reads).toBeGreaterThan(1000);
      expect(writer.exitCode).toBeNull(); // it was writing all along
      // (a synchronous read whose stray bytes happen to be text is not a record: the caller reads
      // again under the commit lock; it stays rare)
      expect(unreadable / reads).toBeLessThan(0.05);
    } finally {
      writer.kill();
    }
  });
});

describe('posix: asynchronous xattr calls', () => {
  // fs-xattr's own asynchronous calls (0.4.0) never free their N-API work: ~55 bytes of heap
  // (and ~460 of RSS) kept for good per call. Ours run its synchronous calls, on worker threads
  // or, for a local filesystem, on this one.
  it('keep no memory per call, on worker threads and on this thread', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const native = await loadNative();
    const file = path.join(await tempRoot('native-leak'), 'f');
    fs.writeFileSync(file, '');
    native.setxattrSync(file, 'user.test', JSON.stringify({ id: 'a' }));
    const heap = () => {
      gc();
      gc();
      return v8.getHeapStatistics().used_heap_size;
    };
    const run = async (n: Native, calls: number) => {
      for (let i = 0; i < calls; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, k) =>
            k % 2 ? n.getxattr(file, 'user.test') : n.getxattr(file, 'user.none'),
          ),
        );
      }
    };
    for (const n of [native, onThisThread(native)]) {
      await run(n, 2_000); // (warm)
      const before = heap();
      await run(n, 40_000);
      const grown = heap() - before;
      // (fs-xattr's own calls: ~2 MiB for these 40,000)
      expect(grown).toBeLessThan(512 * 1024);
      expect((await n.getxattr(file, 'user.test'))?.toString()).toBe('{"id":"a"}');
      expect(await n.getxattr(file, 'user.none')).toBeUndefined();
      await n.setxattr(file, 'user.other', 'x');
      expect(n.getxattrSync(file, 'user.other')?.toString()).toBe('x');
      await n.removexattr(file, 'user.other');
      await n.removexattr(file, 'user.other'); // (gone already: fine)
      await expect(n.getxattr(path.join(file, 'nope'), 'user.test')).rejects.toMatchObject({
        code: 'ENOTDIR',
      });
    }
  });
});
