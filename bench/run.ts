/**
 * Benchmarks of the POSIX driver against raw node:fs + xattr calls doing the same work, in the same
 * process, interleaved (A B A B ...). Ratios are what we track; absolute figures depend on the machine.
 *
 *   npm run bench                          # stat, list, write, ids up to 100,000 files
 *   npm run bench -- ids --max-files 1000000
 *   npm run bench -- stat list auth        # a selection
 *   npm run bench -- cs3                   # the CS3 door: Stat rate, ListContainer, data plane
 *   npm run bench -- cs3 --cs3-parts data --cs3-mib 64   # a part of it, smaller
 *   npm run bench -- webdav                # WebDAV against Apache httpd + mod_dav_fs (apt-get install apache2)
 *     [--dav-parts propfind,busy,web,search,puts,big]
 *   npm run bench -- observer              # files written around Stowage: latency, assimilation, scans, memory
 *   npm run bench -- observer --obs-parts latency --obs-files 10000   # a part of it, smaller
 *   npm run bench -- contention            # a single write beside another process writing back to back
 *
 * Environment: BENCH_DIR (default ./.bench-tmp, must be a real filesystem with user xattrs).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as xattr from 'fs-xattr';
import { Adler32 } from '../src/core/checksums.js';
import { fromLetters, ROLES } from '../src/core/permissions.js';
import { StorageProvider } from '../src/core/provider.js';
import type { ResourceId } from '../src/core/types.js';
import { createPosixDriver, type PosixDriver } from '../src/drivers/posix/index.js';
import { benchContention } from './contention.js';
import { benchCs3 } from './cs3.js';
import { ab, median, row, rows, timed } from './lib.js';
import { benchObserver } from './observer.js';
import { benchWebdav } from './webdav.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const selected = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const want = (name: string) => selected.length === 0 || selected.includes(name);
const base = path.resolve(process.env.BENCH_DIR ?? '.bench-tmp');
async function fresh(label: string, options: { durable?: boolean } = {}) {
  await fsp.mkdir(base, { recursive: true });
  const root = await fsp.mkdtemp(path.join(base, `${label}-`));
  const driver = await createPosixDriver({ root, ...options });
  const storage = new StorageProvider({ drivers: driver });
  const space = await storage.createSpace({ type: 'project', name: label });
  return { root, driver, storage, space, dir: await driver.spacePath(space.id) };
}

async function cleanup(driver: PosixDriver, root: string): Promise<void> {
  await driver.close();
  await fsp.rm(root, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------- stat

async function benchStat(): Promise<void> {
  const { root, driver, storage, space, dir } = await fresh('stat');
  await storage.mkdir({ space: space.id, path: 'projects/2024' }, { parents: true });
  const info = await storage.write({ space: space.id, path: 'projects/2024/report.pdf' }, randomBytes(4096));
  const file = path.join(dir, 'projects/2024/report.pdf');
  const n = 5_000;
  const loop = (fn: () => Promise<unknown>) => () =>
    timed(async () => {
      for (let i = 0; i < n; i++) await fn();
    });
  const raw = loop(async () => {
    await fsp.lstat(file);
    await xattr.getAttribute(file, 'user.stowage.n');
  });
  const byPath = loop(() => storage.stat({ space: space.id, path: 'projects/2024/report.pdf' }));
  const byId = loop(() => storage.stat({ resourceId: info.id }));
  const [r1, p, pr] = await ab(21, raw, byPath);
  row(
    'stat one file by path (depth 3), µs/op',
    ((r1 * 1000) / n).toFixed(1),
    ((p * 1000) / n).toFixed(1),
    pr,
    '<= 1.5x',
    pr <= 1.5,
  );
  const [r2, i, ir] = await ab(21, raw, byId);
  row(
    'stat one file by id, µs/op',
    ((r2 * 1000) / n).toFixed(1),
    ((i * 1000) / n).toFixed(1),
    ir,
    '<= 1.5x',
    ir <= 1.5,
  );
  await cleanup(driver, root);
}

// ---------------------------------------------------------------------------- list

async function benchList(entries: number): Promise<void> {
  const { root, driver, storage, space, dir } = await fresh('list', { durable: false });
  await storage.mkdir({ space: space.id, path: 'big' });
  for (let i = 0; i < entries; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, entries - i) }, (_, j) =>
        storage.write(
          { space: space.id, path: `big/file-${String(i + j).padStart(6, '0')}.dat` },
          `${i + j}`,
        ),
      ),
    );
  }
  const folder = path.join(dir, 'big');
  const concurrency = 16;
  const raw = () =>
    timed(async () => {
      // readdir + lstat + getxattr per entry with the same parallelism the driver uses; id parsed, etag derived
      const names = await fsp.readdir(folder);
      let k = 0;
      let count = 0;
      const worker = async () => {
        while (k < names.length) {
          const name = names[k++]!;
          const st = await fsp.lstat(path.join(folder, name));
          const rec = JSON.parse(
            (await xattr.getAttribute(path.join(folder, name), 'user.stowage.n')).toString(),
          );
          if (rec.id && st.size >= 0) count++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      if (count !== entries) throw new Error(`raw listed ${count}`);
    });
  const ours = () =>
    timed(async () => {
      let count = 0;
      for await (const e of storage.list({ space: space.id, path: 'big' }, { fields: [] })) {
        if (e.id.opaqueId && e.etag) count++;
      }
      if (count !== entries) throw new Error(`listed ${count}`);
    });
  const [r, o, or] = await ab(7, raw, ours);
  row(
    `list a ${entries.toLocaleString('en')}-entry folder with id and etag, ms`,
    r.toFixed(1),
    o.toFixed(1),
    or,
    '<= 1.5x',
    or <= 1.5,
  );
  await cleanup(driver, root);
}

// ---------------------------------------------------------------------------- authorisation

async function benchAuth(entries: number): Promise<void> {
  const { root, driver, storage, space } = await fresh('auth', { durable: false });
  const at = (p: string) => ({ space: space.id, path: p });
  await storage.mkdir(at('a/b/c/big'), { parents: true });
  // Grants on every ancestor, for the user, its group and a few others.
  const grant = (id: string, role: keyof typeof ROLES, type: 'user' | 'group' = 'user') => ({
    grantee: { type, id },
    permissions: fromLetters(ROLES[role]),
  });
  await storage.setGrant(at(''), grant('staff', 'viewer', 'group'));
  await storage.setGrant(at(''), grant('auditor', 'viewer'));
  await storage.setGrant(at('a'), grant('reader', 'editor'));
  await storage.setGrant(at('a'), grant('someone', 'viewer'));
  await storage.setGrant(at('a/b'), grant('other', 'manager'));
  await storage.setGrant(at('a/b/c'), grant('lab', 'editor', 'group'));
  for (let i = 0; i < entries; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, entries - i) }, (_, j) =>
        storage.write(at(`a/b/c/big/file-${String(i + j).padStart(6, '0')}.dat`), `${i + j}`),
      ),
    );
  }
  await storage.setLock(at('a/b/c/big/file-000000.dat'), { lockId: 'bench', type: 'exclusive' });
  const user = await storage.as({ userId: 'reader', groups: ['staff', 'lab'] });
  const n = 5_000;
  const statOf = (p: StorageProvider) => () =>
    timed(async () => {
      for (let i = 0; i < n; i++) await p.stat(at('a/b/c/big/file-000000.dat'));
    });
  const [s0, s1, sr] = await ab(21, statOf(storage), statOf(user));
  const us = (ms: number) => ((ms * 1000) / n).toFixed(1);
  row(
    'stat with grants on 4 ancestors: system vs authorised session, µs/op',
    us(s0),
    us(s1),
    sr,
    '<= 1.2x',
    sr <= 1.2,
  );
  const listOf = (p: StorageProvider) => () =>
    timed(async () => {
      let count = 0;
      for await (const e of p.list(at('a/b/c/big')))
        if (e.permissions === undefined || e.permissions.stat) count++;
      if (count !== entries) throw new Error(`listed ${count}`);
    });
  const [l0, l1, lr] = await ab(9, listOf(storage), listOf(user));
  row(
    `list ${entries.toLocaleString('en')} entries with grants on 4 ancestors: system vs session, ms`,
    l0.toFixed(1),
    l1.toFixed(1),
    lr,
    '<= 1.2x',
    lr <= 1.2,
  );
  await cleanup(driver, root);
}

// ---------------------------------------------------------------------------- write

async function benchWrite(mib: number): Promise<void> {
  const { root, driver, storage, space, dir } = await fresh('write');
  const data = randomBytes(mib * 1024 * 1024);
  const chunk = 256 * 1024;
  const chunks = Array.from({ length: data.length / chunk }, (_, i) =>
    data.subarray(i * chunk, (i + 1) * chunk),
  );
  async function* body() {
    for (const c of chunks) yield c;
  }
  const target = path.join(dir, 'raw.bin');
  const raw = () =>
    timed(async () => {
      // Plain streaming write with the same three checksums, fsync, close.
      const sha1 = createHash('sha1');
      const md5 = createHash('md5');
      const adler = new Adler32();
      const fh = await fsp.open(target, 'w');
      let pos = 0;
      for await (const c of body()) {
        sha1.update(c);
        md5.update(c);
        adler.update(c);
        await fh.write(c, 0, c.length, pos);
        pos += c.length;
      }
      await fh.sync();
      await fh.close();
      sha1.digest('hex');
      md5.digest('hex');
      adler.digest();
    });
  let n = 0;
  const ours = () =>
    timed(async () => void (await storage.write({ space: space.id, path: `ours-${n++ % 2}.bin` }, body())));
  const [r, o, slower] = await ab(5, raw, ours);
  const mbps = (ms: number) => ((mib * 1.048576) / (ms / 1000)).toFixed(0);
  const speed = 1 / slower; // throughput ratio
  row(`write ${mib} MiB with sha1+md5+adler32, MB/s`, mbps(r), mbps(o), speed, '>= 0.8x', speed >= 0.8);
  await cleanup(driver, root);
}

// ---------------------------------------------------------------------------- id lookups

async function benchIds(maxFiles: number): Promise<void> {
  console.log(
    '\n| files in the space | raw readlink+lstat+getxattr (µs) | stowage, fresh process (µs) | ratio | stowage, warm (µs) | build (s) |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|');
  // The first size runs twice; its first pass only warms the JIT and is not reported.
  const sizes = [1_000, 1_000, 10_000, 100_000, 1_000_000].filter((s) => s <= maxFiles);
  const results: { files: number; raw: number; cold: number; ratio: number; warm: number }[] = [];
  for (const [round, files] of sizes.entries()) {
    await fsp.mkdir(base, { recursive: true });
    const root = await fsp.mkdtemp(path.join(base, 'ids-'));
    const t0 = performance.now();
    let driver = await createPosixDriver({ root, durable: false });
    let storage = new StorageProvider({ drivers: driver });
    const space = await storage.createSpace({ type: 'project', name: 'ids' });
    const dir = await driver.spacePath(space.id);
    // Files written around Stowage (1,000 per folder), then given ids by fsck, as an ingest would.
    const perDir = 1000;
    for (let d = 0; d < files / perDir; d++) {
      const sub = path.join(dir, `d${String(d).padStart(4, '0')}`);
      fs.mkdirSync(sub);
      for (let f = 0; f < perDir; f++) fs.writeFileSync(path.join(sub, `f${f}`), '');
    }
    await driver.fsck({ repair: true });
    const build = (performance.now() - t0) / 1000;
    await storage.close();
    // 2,000 ids spread over the whole index.
    const ids: ResourceId[] = [];
    const shards = (await fsp.readdir(path.join(dir, '.stowage/ids'))).sort(() => Math.random() - 0.5);
    for (const shard of shards) {
      const names = await fsp.readdir(path.join(dir, '.stowage/ids', shard));
      for (const n of names.slice(0, 20)) ids.push({ storageId: '', spaceId: space.id, opaqueId: n });
      if (ids.length >= 2000) break;
    }
    // Raw: what any id index on this filesystem costs at least: read the entry, stat and read the node.
    const raw = () =>
      timed(async () => {
        for (const id of ids) {
          const target = await fsp.readlink(
            path.join(dir, '.stowage/ids', id.opaqueId.slice(0, 2), id.opaqueId),
          );
          const p = path.join(dir, target.slice(target.indexOf('/') + 1));
          await fsp.lstat(p);
          await xattr.getAttribute(p, 'user.stowage.n');
        }
      });
    // Stowage in a fresh process-like driver: nothing cached in memory, every lookup reads the index.
    const cold = async () => {
      await storage.close();
      driver = await createPosixDriver({ root, durable: false });
      storage = new StorageProvider({ drivers: driver });
      await storage.getSpace(space.id);
      return timed(async () => {
        for (const id of ids) await storage.stat({ resourceId: id });
      });
    };
    const [r, c, cr] = await ab(round === 0 ? 5 : 3, raw, cold);
    const warmRuns: number[] = [];
    for (let w = 0; w < 3; w++) {
      warmRuns.push(
        await timed(async () => {
          for (const id of ids) await storage.stat({ resourceId: id });
        }),
      );
    }
    await storage.close();
    await fsp.rm(root, { recursive: true, force: true });
    if (round === 0) continue;
    const us = (ms: number) => (ms * 1000) / ids.length;
    const res = { files, raw: us(r), cold: us(c), ratio: cr, warm: us(median(warmRuns)) };
    results.push(res);
    const ratio = res.ratio.toFixed(2);
    console.log(
      `| ${files.toLocaleString('en')} | ${res.raw.toFixed(1)} | ${res.cold.toFixed(1)} | ${ratio}x | ${res.warm.toFixed(1)} | ${build.toFixed(1)} |`,
    );
  }
  const first = results[0]!;
  const last = results[results.length - 1]!;
  const over = (x: { ratio: number }) => x.ratio;
  row(
    `id lookup, stowage/raw at ${first.files.toLocaleString('en')} vs ${last.files.toLocaleString('en')} files`,
    `${over(first).toFixed(2)}x`,
    `${over(last).toFixed(2)}x`,
    over(last) / over(first),
    'flat (<= 1.5x)',
    over(last) / over(first) <= 1.5,
  );
}

console.log(
  `Stowage benchmarks: node ${process.version}, ${os.cpus().length} cpus, ${os.cpus()[0]?.model ?? ''}, dir ${base}`,
);
console.log(
  '| what | baseline (named in the row; raw node:fs + xattr unless said) | stowage | ratio | goal | |',
);
console.log('|---|---:|---:|---:|---|---|');
if (want('stat')) await benchStat();
if (want('list')) await benchList(flag('--entries', 10_000));
if (want('auth')) await benchAuth(flag('--entries', 10_000));
if (want('write')) await benchWrite(flag('--mib', 64));
if (want('ids')) await benchIds(flag('--max-files', 100_000));
if (want('cs3')) {
  const i = args.indexOf('--cs3-parts');
  const parts = i >= 0 ? (args[i + 1] ?? '').split(',') : ['stat', 'list', 'data'];
  await benchCs3(base, { mib: flag('--cs3-mib', 256), entries: flag('--entries', 10_000), parts });
}
if (want('webdav')) {
  const i = args.indexOf('--dav-parts');
  const parts =
    i >= 0 ? (args[i + 1] ?? '').split(',') : ['propfind', 'busy', 'web', 'search', 'puts', 'big'];
  await benchWebdav(base, {
    parts,
    entries: [1_000, 10_000],
    files: flag('--files', 1_000),
    mib: flag('--dav-mib', 64),
  });
}
if (want('observer')) {
  const i = args.indexOf('--obs-parts');
  const parts = i >= 0 ? (args[i + 1] ?? '').split(',') : ['latency', 'assimilate', 'folders'];
  await benchObserver(base, {
    files: flag('--obs-files', 100_000),
    folders: flag('--obs-folders', 100_000),
    parts,
  });
}
if (want('contention'))
  await benchContention(base, { seconds: flag('--seconds', 5), rounds: flag('--rounds', 3) });
if (rows.length > 1) {
  console.log('\nSummary');
  for (const r of rows) console.log(r);
}
await fsp.rm(base, { recursive: true, force: true }).catch(() => {});
