/**
 * Two processes writing into one space of a POSIX root: one with commits back to back (an import
 * next to a server: 4 writes of 4 KiB in flight, as fast as they go), the other one write at a
 * time, 20 ms apart (a user's saves). What the saves wait for the space's commit lock, against
 * the same saves with nobody else writing, interleaved A B A B; and what the saves cost the busy
 * writer.
 *
 * Each writer is this file run as a child process: `node contention.js busy|saves ROOT SPACE MS`.
 */
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPosixDriver } from '../src/drivers/posix/index.js';
import { median, row } from './lib.js';

const BODY = Buffer.alloc(4096, 1);

/**
 * A writer (this file run as a child): `busy` makes 4 writes in flight for `ms` and prints how
 * many; `saves` writes one at a time, 20 ms apart, and prints the latency of each (JSON).
 */
async function writer(role: 'busy' | 'saves', root: string, spaceId: string, ms: number): Promise<void> {
  const driver = await createPosixDriver({ root, durable: false });
  await driver.mkdir({ spaceId, segments: [role] }).catch(() => {});
  const write = (name: string) => driver.write({ spaceId, segments: [role, name] }, BODY);
  process.stdout.write('ready\n');
  const end = Date.now() + ms;
  let result: unknown;
  if (role === 'busy') {
    let n = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < end) await write(`f${n++ % 2000}`);
      }),
    );
    result = n;
  } else {
    const lat: number[] = [];
    for (let i = 0; Date.now() < end; i++) {
      const t = performance.now();
      await write(`s${i % 200}`);
      lat.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
    result = lat;
  }
  await driver.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function benchContention(base: string, o: { seconds: number; rounds: number }): Promise<void> {
  await fsp.mkdir(base, { recursive: true });
  const root = await fsp.mkdtemp(path.join(base, 'contention-'));
  const driver = await createPosixDriver({ root, durable: false });
  const space = await driver.features.spaces!.create({ type: 'project', name: 'shared' });
  await driver.close();
  const ms = o.seconds * 1000;
  /** A writer in a child process for `forMs`: once it is ready, `done`, the promise of its last line. */
  const start = async (role: 'busy' | 'saves', forMs: number) => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(import.meta.url), role, root, space.id, String(forMs)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.setEncoding('utf8');
    const ready = new Promise<void>((resolve) => {
      child.stdout.on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) resolve();
      });
    });
    const done = new Promise<string>((resolve, reject) =>
      child.on('exit', (code) =>
        code === 0
          ? resolve(out.trim().split('\n').pop()!)
          : reject(new Error(`${role} writer: exit ${code}`)),
      ),
    );
    await ready;
    return { done };
  };
  const latencies = async (w: { done: Promise<string> }) =>
    (JSON.parse(await w.done) as number[]).sort((a, b) => a - b);
  try {
    const alone: number[][] = [];
    const shared: number[][] = [];
    const busyAlone: number[] = [];
    const busyShared: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      alone.push(await latencies(await start('saves', ms)));
      const lone = await start('busy', ms);
      busyAlone.push(Number(await lone.done) / o.seconds);
      // The busy writer starts a second before the saves and ends a second after them.
      const other = await start('busy', ms + 2000);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      shared.push(await latencies(await start('saves', ms)));
      busyShared.push(Number(await other.done) / (o.seconds + 2));
    }
    // (pooled over the rounds: a round in which the busy writer keeps the lock is what counts)
    const pooled = (sets: number[][], q: number) =>
      quantile(
        sets.flat().sort((x, y) => x - y),
        q,
      );
    for (const [what, q] of [
      ['median', 0.5],
      ['99th percentile', 0.99],
      ['longest', 1],
    ] as const) {
      const a = pooled(alone, q);
      const s = pooled(shared, q);
      row(
        `a single write's ${what}, ms (alone vs another process writing back to back into the same space)`,
        a.toFixed(1),
        s.toFixed(1),
        s / a,
        'measure',
        true,
      );
    }
    const a = median(busyAlone);
    const s = median(busyShared);
    row(
      "the busy writer's writes/s (alone vs with those single writes beside it)",
      a.toFixed(0),
      s.toFixed(0),
      a / s,
      'measure',
      true,
    );
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [role, root, spaceId, ms] = process.argv.slice(2);
  if (role === 'busy' || role === 'saves') await writer(role, root!, spaceId!, Number(ms));
}
