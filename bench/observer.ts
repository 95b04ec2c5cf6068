/**
 * The observer (files written around Stowage):
 * - latency from an external write (file closed) to its event, p50/p99 over 1,000 files written at
 *   a steady pace, at the default debounce and settle times;
 * - assimilation throughput: N files written while nobody watched, assimilated by the start-up
 *   scan (ids, checksums, tree sizes), against a raw walk + hash (the same three checksums) of the
 *   same tree in the same run;
 * - the start-up scan of the same N files when nothing changed, against a raw walk (readdir + lstat);
 * - memory and time to watch M folders.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ChecksumAccumulator } from '../src/core/checksums.js';
import type { StorageEvent } from '../src/core/events.js';
import { StorageProvider } from '../src/core/provider.js';
import { createPosixDriver } from '../src/drivers/posix/index.js';
import { row, timed } from './lib.js';

async function fresh(base: string, label: string) {
  await fsp.mkdir(base, { recursive: true });
  const root = await fsp.mkdtemp(path.join(base, `${label}-`));
  const driver = await createPosixDriver({ root, durable: false });
  const storage = new StorageProvider({ drivers: driver });
  const space = await storage.createSpace({ type: 'project', name: label });
  return { root, driver, storage, space, dir: await driver.spacePath(space.id) };
}

/** Write `files` files of 1 KiB in folders of 100 with a separate process (fast, and not us). */
function writeTree(dir: string, files: number): void {
  execFileSync('python3', [
    '-c',
    `import os,sys\nd=sys.argv[1]\nn=int(sys.argv[2])\nb=os.urandom(1024)\nfor i in range(n):\n  f=os.path.join(d,'g%04d'%(i//100))\n  if i%100==0: os.makedirs(f,exist_ok=True)\n  open(os.path.join(f,'f%06d.dat'%i),'wb').write(b)\n`,
    dir,
    String(files),
  ]);
}

function rawWalk(dir: string, hash: boolean): number {
  let n = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (d === dir && e.name === '.stowage') continue;
      const p = `${d}/${e.name}`;
      const st = fs.lstatSync(p);
      if (st.isDirectory()) stack.push(p);
      else if (st.isFile()) {
        n++;
        if (hash) {
          const acc = new ChecksumAccumulator();
          acc.update(fs.readFileSync(p));
          acc.digest();
        }
      }
    }
  }
  return n;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export async function benchObserver(
  base: string,
  opts: { files: number; folders: number; parts: string[] },
): Promise<void> {
  // ------------------------------------------------------------ latency
  if (opts.parts.includes('latency')) {
    const { root, storage, dir } = await fresh(base, 'obs-latency');
    fs.mkdirSync(`${dir}/incoming`);
    const closed = new Map<string, number>();
    const lat: number[] = [];
    storage.events.on((e: StorageEvent) => {
      if (e.origin !== 'external' || e.type !== 'created' || !e.path) return;
      const t = closed.get(e.path);
      if (t !== undefined) lat.push(performance.now() - t);
    });
    const obs = storage.watch({ rescanIntervalMs: 0 });
    await obs.ready;
    const n = 1000;
    for (let i = 0; i < n; i++) {
      const name = `/incoming/f${i}.dat`;
      fs.writeFileSync(`${dir}${name}`, `file ${i}`);
      closed.set(name, performance.now());
      await new Promise((r) => setTimeout(r, 5));
    }
    const end = Date.now() + 30_000;
    while (lat.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    await obs.close();
    await storage.close();
    await fsp.rm(root, { recursive: true, force: true });
    lat.sort((a, b) => a - b);
    const p50 = pct(lat, 0.5);
    const p99 = pct(lat, 0.99);
    console.log(
      `observer latency over ${lat.length}/${n} files (one every ~5 ms): p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms`,
    );
    row(
      'external write -> event, p50 / p99 (ms, 1,000 files)',
      '-',
      `${p50.toFixed(0)} / ${p99.toFixed(0)}`,
      p99 / 250,
      'p99 <= 250 ms',
      lat.length === n && p99 <= 250,
    );
  }

  // ------------------------------------------------------------ assimilation throughput + start-up scan
  if (opts.parts.includes('assimilate')) {
    const { root, driver, storage, dir } = await fresh(base, 'obs-assimilate');
    const t0 = performance.now();
    writeTree(dir, opts.files);
    console.log(
      `wrote ${opts.files.toLocaleString('en')} files in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    // Drop the page cache's advantage for neither side: both read the tree warm (it was just written).
    const rawHash = await timed(async () => {
      rawWalk(dir, true);
    });
    let created = 0;
    storage.events.on((e) => {
      if (e.origin === 'external' && e.type === 'created') created++;
    });
    let obs = storage.watch({ rescanIntervalMs: 0 });
    const assimilate = await timed(async () => {
      await obs.ready;
      await obs.idle();
    });
    await obs.close();
    const folders = Math.ceil(opts.files / 100);
    console.log(
      `assimilated ${created.toLocaleString('en')} new nodes in ${(assimilate / 1000).toFixed(1)} s; raw walk + hash ${(rawHash / 1000).toFixed(1)} s`,
    );
    row(
      `assimilate ${opts.files.toLocaleString('en')} external files (files/s)`,
      (opts.files / (rawHash / 1000)).toFixed(0),
      (opts.files / (assimilate / 1000)).toFixed(0),
      rawHash / assimilate,
      'measure',
      created === opts.files + folders,
    );
    // Start-up scan when nothing changed (after the scan above recorded its start).
    await new Promise((r) => setTimeout(r, 2500));
    const rawStat = await timed(async () => {
      rawWalk(dir, false);
    });
    created = 0;
    obs = storage.watch({ rescanIntervalMs: 0 });
    const rescan = await timed(async () => {
      await obs.ready;
      await obs.idle();
    });
    await obs.close();
    row(
      `start-up scan, ${opts.files.toLocaleString('en')} unchanged files (ms)`,
      rawStat.toFixed(0),
      rescan.toFixed(0),
      rawStat / rescan,
      'measure',
      created === 0,
    );
    // One file in a hundred changed while nobody watched.
    for (let i = 0; i < opts.files; i += 100)
      fs.appendFileSync(
        `${dir}/g${String(i / 100).padStart(4, '0')}/f${String(i).padStart(6, '0')}.dat`,
        'x',
      );
    let updated = 0;
    storage.events.on((e) => {
      if (e.origin === 'external' && e.type === 'updated') updated++;
    });
    obs = storage.watch({ rescanIntervalMs: 0 });
    const changed = await timed(async () => {
      await obs.ready;
      await obs.idle();
    });
    await obs.close();
    row(
      `start-up scan, ${opts.files.toLocaleString('en')} files, 1% edited (ms)`,
      rawStat.toFixed(0),
      changed.toFixed(0),
      rawStat / changed,
      'measure',
      updated === opts.files / 100,
    );
    await storage.close();
    await fsp.rm(root, { recursive: true, force: true });
    void driver;
  }

  // ------------------------------------------------------------ memory watching M folders
  if (opts.parts.includes('folders')) {
    const { root, storage, dir } = await fresh(base, 'obs-folders');
    execFileSync('python3', [
      '-c',
      `import os,sys\nd=sys.argv[1]\nn=int(sys.argv[2])\nfor i in range(n):\n  os.makedirs(os.path.join(d,'a%03d'%(i//1000),'b%05d'%i))\n`,
      dir,
      String(opts.folders),
    ]);
    const obs0 = storage.watch({ rescanIntervalMs: 0 });
    await obs0.ready; // assimilate the folders first (ids), so the second start measures watching
    await obs0.idle();
    await obs0.close();
    global.gc?.();
    const before = process.memoryUsage();
    const obs = storage.watch({ rescanIntervalMs: 0 });
    const start = await timed(() => obs.ready);
    global.gc?.();
    const after = process.memoryUsage();
    const watched = obs.stats().watchedFolders;
    await obs.close();
    await storage.close();
    await fsp.rm(root, { recursive: true, force: true });
    const mib = (after.rss - before.rss) / 2 ** 20;
    console.log(
      `watching ${watched.toLocaleString('en')} folders: +${mib.toFixed(0)} MiB RSS (heap +${((after.heapUsed - before.heapUsed) / 2 ** 20).toFixed(0)} MiB), ready in ${(start / 1000).toFixed(1)} s`,
    );
    row(
      `watch ${opts.folders.toLocaleString('en')} folders: RSS MiB / s to ready`,
      '-',
      `${mib.toFixed(0)} / ${(start / 1000).toFixed(1)}`,
      1,
      'measure',
      watched >= opts.folders,
    );
  }
}
