import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CommitLock, type Intent } from '../../src/drivers/posix/lock.js';
import { loadNative } from '../../src/drivers/posix/native.js';
import { tempRoot } from '../helpers/tmp.js';

const native = await loadNative();

describe('posix commit lock', () => {
  it('serialises runs in order and repairs a leftover intent once', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    await fs.writeFile(file, `${JSON.stringify({ dirs: [['a']] })}\n`);
    const repaired: Intent[] = [];
    const lock = new CommitLock(native, file, async (i) => void repaired.push(i));
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((n) => lock.run(async () => void order.push(n))));
    expect(order).toEqual([1, 2, 3]);
    expect(repaired).toEqual([{ dirs: [['a']] }]);
    expect((await fs.readFile(file, 'utf8')).startsWith('\n')).toBe(true);
  });

  it('keeps an intent whose repair fails, and says to run fsck', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    const lock = new CommitLock(native, file, async () => {
      throw new Error('disk on fire');
    });
    await expect(
      lock.run(async (j) => {
        j.begin({ dirs: [['x']] });
        throw new Error('commit failed');
      }),
    ).rejects.toThrow('commit failed');
    expect(await fs.readFile(file, 'utf8')).toContain('"x"');
    await expect(lock.run(async () => 1)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('fsck'),
    });
    expect(await fs.readFile(file, 'utf8')).toContain('"x"');
    // fsck's way in: the leftover is handed over instead of repaired, and cleared when handled.
    await lock.run(
      async (j) => {
        expect(j.leftover).toEqual({ dirs: [['x']] });
        j.clearLeftover();
      },
      { recover: false },
    );
    await expect(lock.run(async () => 2)).resolves.toBe(2);
  });

  it('gives up waiting after its timeout, also in the in-process queue, and keeps the queue usable', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    const lock = new CommitLock(native, file, async () => {}, 200);
    let release!: () => void;
    const long = lock.run(() => new Promise<void>((r) => (release = r)));
    const t0 = Date.now();
    await expect(lock.run(async () => 'late')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(Date.now() - t0).toBeLessThan(2000);
    release();
    await long;
    await expect(lock.run(async () => 'next')).resolves.toBe('next');
  });

  it('excludes another holder of the same file (flock), then gets it when released', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    const a = new CommitLock(native, file, async () => {}, 5000);
    const b = new CommitLock(native, file, async () => {}, 5000);
    const events: string[] = [];
    let release!: () => void;
    const first = a.run(async () => {
      events.push('a-in');
      await new Promise<void>((r) => (release = r));
      events.push('a-out');
    });
    await new Promise((r) => setTimeout(r, 20));
    const second = b.run(async () => void events.push('b-in'));
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual(['a-in']);
    release();
    await Promise.all([first, second]);
    expect(events).toEqual(['a-in', 'a-out', 'b-in']);
  });

  it('lets a waiting holder in while another has commits back to back, and tidies up after', async () => {
    // Two instances on one file exclude each other as two processes do (flock is per open file).
    const file = path.join(await tempRoot('lock'), 'lock');
    const busy = new CommitLock(native, file, async () => {}, 10_000);
    const other = new CommitLock(native, file, async () => {}, 10_000);
    let stop = false;
    let runs = 0;
    // Four commits always queued, each holding the lock for a moment (as a busy server's do).
    const hold = () => new Promise<void>((r) => setTimeout(r, 1));
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        await busy.run(async () => {
          runs++;
          await hold();
        });
      }
    });
    await new Promise((r) => setTimeout(r, 50));
    const waited: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await other.run(async () => {});
      waited.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
    const during = runs;
    stop = true;
    await Promise.all(loops);
    // Before, the busy one took the lock again at each release and the other waited until it
    // stopped (seconds, or its timeout); now within the busy one's burst and a few commits.
    expect(Math.max(...waited)).toBeLessThan(500);
    expect(during).toBeGreaterThan(5);
    // The wait file that said someone waited goes with the last waiter; one left behind by a
    // waiter that died (its flock gone with it) goes at the next release.
    const waitFile = `${file}-wait`;
    await expect(fs.stat(waitFile)).rejects.toMatchObject({ code: 'ENOENT' });
    await fs.writeFile(waitFile, '');
    await busy.run(async () => {});
    await expect(fs.stat(waitFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('does not wait for a waiter that leaves the lock free (stopped, stalled) more than once in a while', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    const lock = new CommitLock(native, file, async () => {}, 10_000);
    await lock.run(async () => {});
    // A waiter that announced itself and stopped (SIGSTOP, a debugger): its shared flock stays.
    const stopped = fsSync.openSync(
      `${file}-wait`,
      fsSync.constants.O_RDWR | fsSync.constants.O_CREAT,
      0o600,
    );
    try {
      expect(native.tryLock(stopped, false)).toBe(true);
      // 100 commits back to back, 1 ms each: yielding 200 ms after each 10 ms burst would take
      // seconds; the stopped waiter costs one grace of 10 ms, then is not waited for.
      const t = performance.now();
      await Promise.all(
        Array.from({ length: 100 }, () => lock.run(() => new Promise<void>((r) => setTimeout(r, 1)))),
      );
      expect(performance.now() - t).toBeLessThan(1000);
    } finally {
      fsSync.closeSync(stopped);
    }
  });

  it('answers a commit that ran and goes on when waking waiters fails (flock refused on the wait file)', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    // As NFS's emulation of flock refuses some: every flock on the wait file fails.
    const refusing = {
      ...native,
      tryLock(fd: number, exclusive: boolean) {
        if (fsSync.readlinkSync(`/proc/self/fd/${fd}`).endsWith('-wait'))
          throw Object.assign(new Error('EBADF: bad file descriptor'), { code: 'EBADF' });
        return native.tryLock(fd, exclusive);
      },
    };
    const lock = new CommitLock(refusing, file, async () => {}, 2000);
    await fs.writeFile(`${file}-wait`, ''); // (someone waited once)
    expect(await lock.run(async () => 'first')).toBe('first');
    expect(await Promise.all([1, 2, 3].map((n) => lock.run(async () => n)))).toEqual([1, 2, 3]);
    await lock.close();
  });

  it("gives the wait file the lock file's mode, so that every process that may commit may wait", async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    await fs.writeFile(file, '\n', { mode: 0o660 });
    await fs.chmod(file, 0o660); // (whatever the umask)
    const a = new CommitLock(native, file, async () => {}, 5000);
    const b = new CommitLock(native, file, async () => {}, 5000);
    let release!: () => void;
    const held = a.run(() => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 20));
    const waiting = b.run(async () => {});
    await expect.poll(async () => (await fs.stat(`${file}-wait`).catch(() => undefined))?.mode).toBeDefined();
    expect((await fs.stat(`${file}-wait`)).mode & 0o777).toBe(0o660);
    release();
    await Promise.all([held, waiting]);
  });

  it('closes without waiting for another process to let go: a commit still waiting fails', async () => {
    const file = path.join(await tempRoot('lock'), 'lock');
    const other = new CommitLock(native, file, async () => {}, 30_000);
    const lock = new CommitLock(native, file, async () => {}, 30_000);
    let release!: () => void;
    const held = other.run(() => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 20));
    const waiting = lock.run(async () => 'ran');
    waiting.catch(() => {});
    await new Promise((r) => setTimeout(r, 20));
    const t = performance.now();
    await lock.close();
    expect(performance.now() - t).toBeLessThan(1000);
    await expect(waiting).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    release();
    await held;
  });
});
