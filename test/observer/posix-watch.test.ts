/**
 * The observer of the POSIX driver against real files and real inotify: changes made with the
 * shell's own tools around Stowage become first-class (ids, checksums, sizes, etags, events).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import {
  fromLetters,
  type Observation,
  ROLES,
  type Space,
  StorageError,
  type StorageEvent,
  StorageProvider,
} from '../../src/index.js';
import { treeSizeErrors, walkSpace } from '../helpers/disk.js';
import { tempRoot } from '../helpers/tmp.js';

let driver: PosixDriver;
let s: StorageProvider;
let obs: Observation | undefined;
let events: StorageEvent[] = [];
let n = 0;

let root: string;

beforeAll(async () => {
  root = await tempRoot('observe');
  driver = await createPosixDriver({ root });
  s = new StorageProvider({ drivers: driver });
  s.events.on((e) => events.push(e));
});
afterEach(async () => {
  await obs?.close();
  obs = undefined;
});
afterAll(() => s.close());

async function space(): Promise<{
  sp: Space;
  dir: string;
  at: (p: string) => { space: string; path: string };
}> {
  const sp = await s.createSpace({ type: 'project', name: `observed ${++n}` });
  return { sp, dir: await driver.spacePath(sp.id), at: (p: string) => ({ space: sp.id, path: p }) };
}

async function watching(opts: Parameters<StorageProvider['watch']>[0] = {}): Promise<Observation> {
  obs = s.watch({ rescanIntervalMs: 0, ...opts });
  await obs.ready;
  events = [];
  return obs;
}

/** Watch until a first scan is done, then stop: what changes next, nobody watches. */
async function scannedThenStopped(): Promise<void> {
  await watching();
  await obs!.close();
  obs = undefined;
  await new Promise((r) => setTimeout(r, 50));
}

async function until<T>(what: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = what();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const external = (type: string, p: string) => () =>
  events.find((e) => e.origin === 'external' && e.type === type && e.path === p);

const sha1 = (b: string | Buffer) => createHash('sha1').update(b).digest('hex');

describe('observer (posix, real inotify)', () => {
  it('assimilates a file written around Stowage: id, checksums, tree size and etag, one event', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('in'));
    await watching();
    const before = await s.stat(at('in'));
    fs.writeFileSync(path.join(dir, 'in/scan-001.tif'), 'pixels');
    const e = await until(external('created', '/in/scan-001.tif'));
    expect(e.kind).toBe('file');
    expect(e.size).toBe(6);
    expect(e.resourceId?.spaceId).toBe(before.id.spaceId);
    const info = await s.stat(at('in/scan-001.tif'));
    expect(info.id).toEqual(e.resourceId);
    expect(info.checksums?.sha1).toBe(sha1('pixels'));
    expect(info.etag).toBe(e.etag);
    const after = await s.stat(at('in'));
    expect(after.size).toBe(6);
    expect(after.etag).not.toBe(before.etag);
    expect(await treeSizeErrors(dir)).toEqual([]);
    await obs!.idle();
    expect(events.filter((x) => x.path === '/in/scan-001.tif')).toHaveLength(1);
  });

  it('assimilates a file whose modification time is in the future, without spinning', async () => {
    // rsync -t or cp -p from a machine whose clock is ahead, touch -d: the mtime says nothing of
    // whether the file is still being written (its ctime does).
    const { dir, at } = await space();
    await watching();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const file = path.join(dir, 'from-the-future.txt');
      const t0 = Date.now() - 20; // the kernel's file times run up to a tick behind
      fs.writeFileSync(file, 'ahead');
      const later = new Date(Date.UTC(2100, 0, 1));
      fs.utimesSync(file, later, later);
      const t1 = Date.now();
      const e = await until(external('created', '/from-the-future.txt'), 5000);
      expect(e.size).toBe(5);
      const info = await s.stat(at('from-the-future.txt'));
      expect(info.mtime).toBe(later.getTime());
      // Dated by when it came to be on disk, not by its mtime.
      expect(info.created).toBeGreaterThanOrEqual(t0);
      expect(info.created).toBeLessThanOrEqual(t1);
      await obs!.idle();
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  });

  it('misses no file written right after its folder was created (new folders are read once watched)', async () => {
    const { dir, at } = await space();
    await watching();
    for (let i = 0; i < 20; i++) {
      fs.mkdirSync(path.join(dir, `run-${i}/a/b`), { recursive: true });
      fs.writeFileSync(path.join(dir, `run-${i}/a/b/data.bin`), `run ${i}`);
    }
    for (let i = 0; i < 20; i++) await until(external('created', `/run-${i}/a/b/data.bin`));
    await obs!.idle();
    // Folders are announced before what is in them, each once.
    const created = events.filter((e) => e.type === 'created').map((e) => e.path);
    expect(new Set(created).size).toBe(created.length);
    expect(created.indexOf('/run-3/a')).toBeLessThan(created.indexOf('/run-3/a/b/data.bin'));
    expect((await s.stat(at('run-7/a/b/data.bin'))).checksums?.sha1).toBe(sha1('run 7'));
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('announces an in-place edit as updated, with new checksums and sizes up the tree', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('d/e'), { parents: true });
    const f = await s.write(at('d/e/f.txt'), 'short');
    await watching();
    fs.appendFileSync(path.join(dir, 'd/e/f.txt'), ' and longer');
    const e = await until(external('updated', '/d/e/f.txt'));
    expect(e.resourceId).toEqual(f.id);
    const info = await s.stat(at('d/e/f.txt'));
    expect(info.checksums?.sha1).toBe(sha1('short and longer'));
    expect(info.id).toEqual(f.id);
    expect((await s.stat(at('d'))).size).toBe(16);
  });

  it('changes a file’s etag once for an edit around Stowage: the one shown before it was hashed stays', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('big.dat'), 'first content');
    await watching();
    // A file rewritten (a new size, a new mtime), and a new one: looked at before the observer
    // hashed them, and again after.
    fs.writeFileSync(path.join(dir, 'big.dat'), 'second content, longer');
    fs.writeFileSync(path.join(dir, 'new.dat'), 'fresh');
    const early = await s.stat(at('big.dat'));
    const earlyNew = await s.stat(at('new.dat'));
    expect(early.etag).not.toBe(f.etag);
    expect(early.checksums).toBeUndefined();
    await until(external('updated', '/big.dat'));
    await until(external('created', '/new.dat'));
    await obs!.idle();
    const late = await s.stat(at('big.dat'));
    expect(late.checksums?.sha1).toBe(sha1('second content, longer'));
    expect(late.etag).toBe(early.etag);
    expect((await s.stat(at('new.dat'))).etag).toBe(earlyNew.etag);
    // A rewrite that keeps size and mtime shows only once hashed: then its etag moves.
    const st = fs.statSync(path.join(dir, 'big.dat'));
    fs.writeFileSync(path.join(dir, 'big.dat'), 'SECOND CONTENT, LONGER');
    fs.utimesSync(path.join(dir, 'big.dat'), st.atime, st.mtime);
    await until(
      () => events.filter((e) => e.type === 'updated' && e.path === '/big.dat').length === 2 || undefined,
    );
    await obs!.idle();
    const again = await s.stat(at('big.dat'));
    expect(again.checksums?.sha1).toBe(sha1('SECOND CONTENT, LONGER'));
    expect(again.etag).not.toBe(late.etag);
    // And a write through Stowage makes its etag as always (with the sha1).
    const through = await s.write(at('big.dat'), 'third');
    expect((await s.stat(at('big.dat'))).etag).toBe(through.etag);
    expect(through.etag).not.toBe(again.etag);
  });

  it('announces a same-size rewrite whose mtime was put back (touch -r), and not a chmod', async () => {
    // Its own driver, with a short slack between a change through Stowage and one around it.
    const d = await createPosixDriver({ root: await tempRoot('observe-ctime'), ctimeSlackMs: 100 });
    const p = new StorageProvider({ drivers: d });
    const seen: StorageEvent[] = [];
    p.events.on((e) => seen.push(e));
    const o = p.watch({ rescanIntervalMs: 0 });
    try {
      await o.ready;
      const sp = await p.createSpace({ type: 'project', name: 'ctime' });
      const at = (x: string) => ({ space: sp.id, path: x });
      const dir = await d.spacePath(sp.id);
      const f = await p.write(at('same.txt'), 'hello');
      const g = await p.write(at('mode.txt'), 'mode');
      execFileSync('cp', ['-p', path.join(dir, 'same.txt'), path.join(dir, '..', 'ref')]);
      await o.idle();
      await new Promise((r) => setTimeout(r, 250));
      fs.writeFileSync(path.join(dir, 'same.txt'), 'HELLO');
      execFileSync('touch', ['-r', path.join(dir, '..', 'ref'), path.join(dir, 'same.txt')]);
      fs.chmodSync(path.join(dir, 'mode.txt'), 0o600);
      const e = await until(() =>
        seen.find((x) => x.origin === 'external' && x.type === 'updated' && x.path === '/same.txt'),
      );
      expect(e.resourceId).toEqual(f.id);
      const info = await p.stat(at('same.txt'));
      expect(info.checksums?.sha1).toBe(sha1('HELLO'));
      expect(info.mtime).toBe(f.mtime);
      expect(info.etag).not.toBe(f.etag);
      // The chmod: looked at, hashed, found unchanged: checksums back, same etag, no event.
      let mode = await p.stat(at('mode.txt'));
      for (let i = 0; i < 500 && !mode.checksums; i++) {
        await new Promise((r) => setTimeout(r, 20));
        mode = await p.stat(at('mode.txt'));
      }
      await o.idle();
      expect(mode.checksums?.sha1).toBe(sha1('mode'));
      expect(mode.etag).toBe(g.etag);
      expect(seen.filter((x) => x.origin === 'external' && x.path === '/mode.txt')).toEqual([]);
    } finally {
      await o.close();
      await p.close();
    }
  });

  it('recognises mv as a move: same id, the share on it kept, sizes moved', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('a'));
    await s.mkdir(at('b'));
    const f = await s.write(at('a/report.pdf'), 'report');
    await s.setGrant(at('a/report.pdf'), {
      grantee: { type: 'user', id: 'u-bob' },
      permissions: fromLetters(ROLES.viewer),
    });
    await watching();
    execFileSync('mv', [path.join(dir, 'a/report.pdf'), path.join(dir, 'b/final.pdf')]);
    const e = await until(external('moved', '/b/final.pdf'));
    expect(e.resourceId).toEqual(f.id);
    expect(e.from?.path).toBe('/a/report.pdf');
    await obs!.idle();
    expect(events.filter((x) => x.type === 'deleted')).toEqual([]);
    const moved = await s.stat({ resourceId: f.id }, { fields: ['grants'] });
    expect(moved.path).toBe('/b/final.pdf');
    expect(moved.grants?.map((g) => g.grantee)).toEqual([{ type: 'user', id: 'u-bob' }]);
    expect((await s.stat(at('a'))).size).toBe(0);
    expect((await s.stat(at('b'))).size).toBe(6);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('keeps the ids below a folder moved with mv, announcing the folder once', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('proj/raw'), { parents: true });
    const raw = await s.stat(at('proj/raw'));
    const f = await s.write(at('proj/raw/1.dat'), 'one');
    await watching();
    execFileSync('mv', [path.join(dir, 'proj'), path.join(dir, 'archive')]);
    await until(external('moved', '/archive'));
    await obs!.idle();
    expect(events.filter((e) => e.origin === 'external').map((e) => `${e.type} ${e.path}`)).toEqual([
      'moved /archive',
    ]);
    expect((await s.stat({ resourceId: f.id })).path).toBe('/archive/raw/1.dat');
    expect((await s.stat(at('archive/raw'))).id).toEqual(raw.id);
    // and the new place is watched
    fs.writeFileSync(path.join(dir, 'archive/raw/2.dat'), 'two');
    await until(external('created', '/archive/raw/2.dat'));
  });

  it('announces rm as deleted with the id it had, and the sizes above shrink', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('d'));
    const f = await s.write(at('d/old.log'), 'x'.repeat(100));
    const g = await s.write(at('d/keep.log'), 'y'.repeat(10));
    const sub = await s.mkdir(at('d/sub'));
    await s.write(at('d/sub/inner.txt'), 'z');
    await watching();
    fs.rmSync(path.join(dir, 'd/old.log'));
    fs.rmSync(path.join(dir, 'd/sub'), { recursive: true });
    const e = await until(external('deleted', '/d/old.log'));
    expect(e.resourceId).toEqual(f.id);
    const e2 = await until(external('deleted', '/d/sub'));
    expect(e2.resourceId).toEqual(sub.id);
    await obs!.idle();
    expect(events.filter((x) => x.origin === 'external').map((x) => `${x.type} ${x.path}`)).toEqual([
      'deleted /d/old.log',
      'deleted /d/sub',
    ]);
    expect((await s.stat(at('d'))).size).toBe(10);
    await expect(s.stat({ resourceId: f.id })).rejects.toThrow(StorageError);
    expect((await s.stat({ resourceId: g.id })).path).toBe('/d/keep.log');
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('announces rm inside a folder moved before (by Stowage, or with mv), and the sizes above shrink', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('a/in'), { parents: true });
    const f = await s.write(at('a/in/f.txt'), 'x'.repeat(40));
    await s.write(at('a/in/k.txt'), 'y'.repeat(5));
    const g = await s.write(at('a/g.txt'), 'z'.repeat(7));
    await s.move(at('a'), at('b'));
    await watching();
    // The ids below the moved folder are found by their parents: the index still names their
    // old paths, which only the moved folder's own entry was rewritten from.
    fs.rmSync(path.join(dir, 'b/in/f.txt'));
    expect((await until(external('deleted', '/b/in/f.txt'))).resourceId).toEqual(f.id);
    await obs!.idle();
    expect((await s.stat(at('b/in'))).size).toBe(5);
    expect((await s.stat(at(''))).size).toBe(12);
    // The same after a move made around Stowage.
    execFileSync('mv', [path.join(dir, 'b'), path.join(dir, 'c')]);
    await until(external('moved', '/c'));
    await obs!.idle();
    fs.rmSync(path.join(dir, 'c/g.txt'));
    expect((await until(external('deleted', '/c/g.txt'))).resourceId).toEqual(g.id);
    await obs!.idle();
    expect((await s.stat(at(''))).size).toBe(5);
    expect(await treeSizeErrors(dir)).toEqual([]);
    const [report] = await driver.fsck({ space: (await s.stat(at(''))).id.spaceId });
    expect(report!.problems).toEqual({});
  });

  it('leaves no index entries behind for what was below a folder removed with rm -rf', async () => {
    const { sp, dir, at } = await space();
    await s.mkdir(at('gone/x/y'), { parents: true });
    const deep = await s.write(at('gone/x/y/g.txt'), 'deep');
    await s.write(at('gone/x/h.txt'), 'h');
    await s.write(at('stays.txt'), 'stays');
    await watching();
    execFileSync('rm', ['-rf', path.join(dir, 'gone')]);
    await until(external('deleted', '/gone'));
    await obs!.idle();
    // (before any lookup by id: one that misses scans the space, which drops stale entries too)
    const [report] = await driver.fsck({ space: sp.id });
    expect(report!.problems).toEqual({});
    await expect(s.stat({ resourceId: deep.id })).rejects.toThrow(StorageError);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('waits for a file still being written, and announces it once, complete', async () => {
    const { dir } = await space();
    await watching({ settleMs: 150 });
    const file = path.join(dir, 'slow.raw');
    const fd = fs.openSync(file, 'w');
    let body = '';
    for (let i = 0; i < 12; i++) {
      const chunk = `chunk ${i};`;
      fs.writeSync(fd, chunk);
      body += chunk;
      await new Promise((r) => setTimeout(r, 40));
    }
    fs.closeSync(fd);
    const e = await until(external('created', '/slow.raw'));
    await obs!.idle();
    expect(e.size).toBe(body.length);
    expect(events.filter((x) => x.path === '/slow.raw').map((x) => x.type)).toEqual(['created']);
    const info = await s.stat({ resourceId: e.resourceId! });
    expect(info.checksums?.sha1).toBe(sha1(body));
  });

  it('gives a copy made with cp -a (its xattrs copied) a new id, and leaves the original alone', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('src/deep'), { parents: true });
    const f = await s.write(at('src/deep/a.txt'), 'original');
    const folder = await s.stat(at('src'));
    await watching();
    await new Promise((r) => setTimeout(r, 30));
    const t0 = Date.now() - 20; // (the kernel's file times run up to a tick behind)
    execFileSync('cp', ['-a', path.join(dir, 'src'), path.join(dir, 'copy')]);
    execFileSync('cp', ['-a', path.join(dir, 'src/deep/a.txt'), path.join(dir, 'a-copy.txt')]);
    const t1 = Date.now();
    const top = await until(external('created', '/copy'));
    expect(top.resourceId?.opaqueId).not.toBe(folder.id.opaqueId);
    expect(top.copiedFrom).toEqual(folder.id);
    const file = await until(external('created', '/copy/deep/a.txt'));
    expect(file.resourceId?.opaqueId).not.toBe(f.id.opaqueId);
    const single = await until(external('created', '/a-copy.txt'));
    expect(single.copiedFrom).toEqual(f.id);
    await obs!.idle();
    expect((await s.stat({ resourceId: f.id })).path).toBe('/src/deep/a.txt');
    expect((await s.stat(at('copy/deep/a.txt'))).id).toEqual(file.resourceId);
    // Copies are new resources, made when cp made them (not when the observer got to them).
    for (const p of ['copy', 'copy/deep/a.txt', 'a-copy.txt']) {
      const c = (await s.stat(at(p))).created!;
      expect(c, p).toBeGreaterThanOrEqual(t0);
      expect(c, p).toBeLessThanOrEqual(t1);
    }
    expect((await s.stat({ resourceId: f.id })).created).toBe(f.created);
    const ids = (await walkSpace(dir)).map((node) => node.rec?.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('keeps the id and versions of a file replaced by one renamed over it (rsync without --inplace, vim), announced as updated', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('d'));
    const f = await s.write(at('d/doc.txt'), 'v1');
    await new Promise((r) => setTimeout(r, 30));
    await s.write(at('d/doc.txt'), 'v2'); // (v1 becomes a version)
    expect(await s.listVersions({ resourceId: f.id })).toHaveLength(1);
    const outside = path.join(dir, '..', `rsync-src-${n}`);
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'doc.txt'), 'v3 from rsync');
    await watching();
    // rsync writes .doc.txt.XXXXXX next to the file, then renames it over the file.
    execFileSync('rsync', [path.join(outside, 'doc.txt'), path.join(dir, 'd/doc.txt')]);
    const e = await until(external('updated', '/d/doc.txt'));
    expect(e.resourceId).toEqual(f.id);
    let info = await s.stat({ resourceId: f.id });
    expect(info.path).toBe('/d/doc.txt');
    expect(info.checksums?.sha1).toBe(sha1('v3 from rsync'));
    expect(info.created).toBe(f.created); // it is the same resource, however it was saved
    expect(await s.listVersions({ resourceId: f.id })).toHaveLength(1);
    // vim saving with backupcopy=no: the file is renamed to doc.txt~, a new one written, the backup removed.
    execFileSync('vim', [
      ...['-u', 'NONE', '-i', 'NONE', '-n', '-Es'],
      ...['-c', 'set backupcopy=no writebackup nobackup', '-c', '%s/v3/v4/', '-c', 'wq'],
      path.join(dir, 'd/doc.txt'),
    ]);
    await until(() =>
      events.find(
        (x) => x.type === 'updated' && x.path === '/d/doc.txt' && x !== e && x.origin === 'external',
      ),
    );
    await obs!.idle();
    info = await s.stat({ resourceId: f.id });
    expect(info.checksums?.sha1).toBe(sha1('v4 from rsync\n'));
    expect(info.created).toBe(f.created);
    const external_ = events.filter((x) => x.origin === 'external');
    expect(external_.map((x) => `${x.type} ${x.path} ${x.resourceId?.opaqueId}`)).toEqual([
      `updated /d/doc.txt ${f.id.opaqueId}`,
      `updated /d/doc.txt ${f.id.opaqueId}`,
    ]);
    expect((await s.stat(at('d'))).size).toBe(info.size);
    expect(await treeSizeErrors(dir)).toEqual([]);
    const ids = (await walkSpace(dir)).map((node) => node.rec?.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('keeps the id of a file whose replacement was seen while it was written (a slow rsync), retiring the temp file’s', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('big.dat'), 'v1');
    await s.write(at('big.dat'), 'v2');
    const o = await watching();
    await new Promise((r) => setTimeout(r, 30));
    const tmp = path.join(dir, '.big.dat.Qx81Zp');
    fs.writeFileSync(tmp, 'v3, first half');
    const temp = await until(external('created', '/.big.dat.Qx81Zp')); // (the transfer stalled)
    fs.appendFileSync(tmp, ', second half');
    fs.renameSync(tmp, path.join(dir, 'big.dat'));
    await until(external('updated', '/big.dat'));
    await o.idle();
    expect(
      events
        .filter((x) => x.origin === 'external')
        .map((x) => `${x.type} ${x.path} ${x.resourceId?.opaqueId}`),
    ).toEqual([
      `created /.big.dat.Qx81Zp ${temp.resourceId?.opaqueId}`,
      `deleted /.big.dat.Qx81Zp ${temp.resourceId?.opaqueId}`,
      `updated /big.dat ${f.id.opaqueId}`,
    ]);
    const now = await s.stat({ resourceId: f.id });
    expect(now.checksums?.sha1).toBe(sha1('v3, first half, second half'));
    expect(now.created).toBe(f.created); // not the temp file's
    expect(await s.listVersions({ resourceId: f.id })).toHaveLength(1);
    await expect(s.stat({ resourceId: temp.resourceId! })).rejects.toThrow(StorageError);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('takes no id over from a hard link, a folder, or a file still being written elsewhere', async () => {
    const { dir, at } = await space();
    const a = await s.write(at('a.txt'), 'linked');
    const d = await s.mkdir(at('d'));
    const log = await s.write(at('app.log'), 'old lines\n');
    const o = await watching();
    fs.linkSync(path.join(dir, 'a.txt'), path.join(dir, 'b.txt'));
    await new Promise((r) => setTimeout(r, 300));
    await o.idle();
    expect((await s.stat(at('b.txt'))).id).toEqual(a.id); // (a second name of the same file)
    // Replacing one name of a hard-linked file leaves the other name the file, with the id.
    fs.writeFileSync(path.join(dir, '.b.tmp'), 'replaced');
    fs.renameSync(path.join(dir, '.b.tmp'), path.join(dir, 'b.txt'));
    // A folder replaced by a file.
    fs.rmdirSync(path.join(dir, 'd'));
    fs.writeFileSync(path.join(dir, 'd'), 'now a file');
    // A log moved aside that its writer keeps appending to, and a new log at its name.
    fs.renameSync(path.join(dir, 'app.log'), path.join(dir, 'app.log.1'));
    fs.writeFileSync(path.join(dir, 'app.log'), '');
    const writer = setInterval(() => fs.appendFileSync(path.join(dir, 'app.log.1'), 'more\n'), 30);
    try {
      const b = await until(external('created', '/b.txt'));
      const made = await until(() =>
        events.find((x) => x.origin === 'external' && x.path === '/app.log' && x.type !== 'moved'),
      );
      expect(b.resourceId?.opaqueId).not.toBe(a.id.opaqueId);
      expect(made.type).toBe('created');
      expect(made.resourceId?.opaqueId).not.toBe(log.id.opaqueId);
    } finally {
      clearInterval(writer);
    }
    await until(external('moved', '/app.log.1'));
    await o.idle();
    expect((await s.stat({ resourceId: a.id })).path).toBe('/a.txt');
    expect((await s.stat({ resourceId: log.id })).path).toBe('/app.log.1');
    expect((await s.stat(at('d'))).id).not.toEqual(d.id);
    const ids = (await walkSpace(dir)).map((node) => node.rec?.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('retires the id of a node replaced by one of another kind, or by a folder made anew (deleted, then created)', async () => {
    const { dir, at } = await space();
    const d = await s.mkdir(at('d'));
    const inner = await s.write(at('d/inner.txt'), 'inside');
    const f = await s.write(at('f.txt'), 'a file');
    const e = await s.mkdir(at('e'));
    const kept = await s.mkdir(at('kept'));
    await watching();
    fs.rmSync(path.join(dir, 'd'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'd'), 'now a file');
    fs.rmSync(path.join(dir, 'f.txt'));
    fs.mkdirSync(path.join(dir, 'f.txt'));
    fs.rmdirSync(path.join(dir, 'e'));
    fs.mkdirSync(path.join(dir, 'e'));
    // A folder moved away and another made at its name: the moved one keeps its id.
    fs.renameSync(path.join(dir, 'kept'), path.join(dir, 'kept.old'));
    fs.mkdirSync(path.join(dir, 'kept'));
    await until(external('created', '/d'));
    await until(external('created', '/f.txt'));
    await until(external('created', '/e'));
    await until(external('created', '/kept'));
    await obs!.idle();
    const ext = events.filter((x) => x.origin === 'external');
    const said = (type: string, p: string) => ext.filter((x) => x.type === type && x.path === p);
    for (const [p, old, kind] of [
      ['/d', d, 'folder'],
      ['/f.txt', f, 'file'],
      ['/e', e, 'folder'],
    ] as const) {
      const [gone] = said('deleted', p);
      const [made] = said('created', p);
      expect(gone?.resourceId, p).toEqual(old.id);
      expect(gone?.kind, p).toBe(kind);
      expect(made?.resourceId?.opaqueId, p).not.toBe(old.id.opaqueId);
      expect(ext.indexOf(gone!), p).toBeLessThan(ext.indexOf(made!));
      await expect(s.stat({ resourceId: old.id }), p).rejects.toThrow(/not found/i);
    }
    // What was inside the folder went with it, as with rm -r (above): only the folder is announced.
    expect(said('deleted', '/d/inner.txt')).toEqual([]);
    await expect(s.stat({ resourceId: inner.id })).rejects.toThrow(/not found/i);
    expect(said('deleted', '/kept')).toEqual([]);
    expect((await s.stat({ resourceId: kept.id })).path).toBe('/kept.old');
    expect(said('created', '/kept')[0]?.resourceId?.opaqueId).not.toBe(kept.id.opaqueId);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('retires the id of a folder replaced by a file also when a request met the file first', async () => {
    const { dir, at } = await space();
    const d = await s.mkdir(at('d'));
    await watching();
    fs.rmdirSync(path.join(dir, 'd'));
    fs.writeFileSync(path.join(dir, 'd'), 'now a file');
    const now = await s.stat(at('d')); // before the observer looked
    expect(now.id.opaqueId).not.toBe(d.id.opaqueId);
    const gone = await until(external('deleted', '/d'));
    expect(gone.resourceId).toEqual(d.id);
    const made = await until(external('created', '/d'));
    expect(made.resourceId).toEqual(now.id);
    await obs!.idle();
    expect(events.filter((x) => x.origin === 'external').map((x) => `${x.type} ${x.path}`)).toEqual([
      'deleted /d',
      'created /d',
    ]);
  });

  it('announces a replaced file as updated also when a request saw it first', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('seen.txt'), 'before');
    await watching();
    fs.writeFileSync(path.join(dir, '.seen.txt.tmp'), 'after');
    fs.renameSync(path.join(dir, '.seen.txt.tmp'), path.join(dir, 'seen.txt'));
    expect((await s.stat(at('seen.txt'))).id).toEqual(f.id); // before the observer looked
    const e = await until(external('updated', '/seen.txt'));
    expect(e.resourceId).toEqual(f.id);
    await obs!.idle();
    expect(events.filter((x) => x.origin === 'external').map((x) => `${x.type} ${x.path}`)).toEqual([
      'updated /seen.txt',
    ]);
    expect((await s.stat(at('seen.txt'))).checksums?.sha1).toBe(sha1('after'));
  });

  it('keeps up with a burst of saves that replace hundreds of files of one folder (temp file renamed over each)', async () => {
    // Each replaced file asks whether its old id lives on at another path of its folder that is
    // pending or in the batch: with 300 of them, that once made every file wait for the next
    // batch, which was the same, for ever (the observer spun, the files kept no record).
    const { dir, at } = await space();
    const count = 300;
    fs.mkdirSync(path.join(dir, 'big'));
    await watching();
    for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, `big/f${i}.txt`), `first ${i}`);
    await until(
      () => events.filter((e) => e.type === 'created' && e.path?.startsWith('/big/f')).length === count,
      30_000,
    );
    await obs!.idle();
    const ids = new Map<string, string>();
    for (let i = 0; i < count; i++) ids.set(`f${i}.txt`, (await s.stat(at(`big/f${i}.txt`))).id.opaqueId);
    events = [];
    for (let round = 0; round < 2; round++)
      for (let i = 0; i < count; i++) {
        const tmp = path.join(dir, `big/.f${i}.txt.tmp`);
        fs.writeFileSync(tmp, `saved ${round} ${i}`);
        fs.renameSync(tmp, path.join(dir, `big/f${i}.txt`));
      }
    const updated = () => new Set(events.filter((e) => e.type === 'updated').map((e) => e.path));
    await until(() => updated().size === count, 30_000);
    await obs!.idle();
    for (let i = 0; i < count; i++) {
      const info = await s.stat(at(`big/f${i}.txt`));
      expect(info.id.opaqueId).toBe(ids.get(`f${i}.txt`));
      expect(info.checksums?.sha1).toBe(sha1(`saved 1 ${i}`));
    }
    expect(events.filter((e) => e.type === 'created' && !e.path?.includes('.tmp'))).toEqual([]);
    expect(await treeSizeErrors(dir)).toEqual([]);
  }, 90_000);

  it('gives a file made where another was moved away a new id, and the moved one keeps its own (log rotation)', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('app.log'), 'old lines');
    await watching();
    execFileSync('sh', ['-c', 'mv app.log app.log.1 && printf fresh > app.log'], { cwd: dir });
    const moved = await until(external('moved', '/app.log.1'));
    expect(moved.resourceId).toEqual(f.id);
    const made = await until(external('created', '/app.log'));
    expect(made.resourceId?.opaqueId).not.toBe(f.id.opaqueId);
    await obs!.idle();
    expect((await s.stat({ resourceId: f.id })).path).toBe('/app.log.1');
    expect((await s.stat(at('app.log'))).id).toEqual(made.resourceId);
    expect(events.filter((x) => x.origin === 'external' && x.type === 'updated')).toEqual([]);
  });

  it('announces nothing as external for changes made through Stowage itself', async () => {
    const { at } = await space();
    await watching();
    await s.mkdir(at('x/y'), { parents: true });
    await s.write(at('x/y/f.txt'), 'one');
    await s.write(at('x/y/f.txt'), 'two');
    await s.move(at('x/y/f.txt'), at('x/g.txt'));
    await s.copy(at('x/g.txt'), at('x/h.txt'));
    await s.move(at('x/y'), at('z'));
    await s.delete(at('x/h.txt'));
    await s.delete(at('z'));
    await new Promise((r) => setTimeout(r, 400));
    await obs!.idle();
    expect(events.filter((e) => e.origin === 'external')).toEqual([]);
    expect(events.filter((e) => e.origin === 'api').length).toBeGreaterThan(5);
  });

  it('leaves the etags above a delete made through Stowage as Stowage left them', async () => {
    const { at } = await space();
    await s.mkdir(at('p/q/r'), { parents: true });
    await s.write(at('p/q/f.txt'), 'one');
    await s.write(at('p/q/r/g.txt'), 'two');
    await watching();
    await s.delete(at('p/q/f.txt')); // a file
    await s.delete(at('p/q/r')); // and a folder
    const etags = async () => Promise.all(['', 'p', 'p/q'].map(async (x) => (await s.stat(at(x))).etag));
    const before = await etags();
    await new Promise((r) => setTimeout(r, 400));
    await obs!.idle(); // the observer has seen both deletions (its own writes would move the etags)
    expect(await etags()).toEqual(before);
  });

  it('rescans after the inotify queue overflowed: nothing is lost', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('burst'));
    const o = await watching();
    const lostBefore = o.stats().lost;
    // A child process creates many files while this process does not read its inotify queue.
    const child = spawn(
      'python3',
      [
        '-c',
        `import os\nfor i in range(12000):\n  open(os.path.join(${JSON.stringify(path.join(dir, 'burst'))}, 'f%05d' % i), 'w').write('x')\n`,
      ],
      { stdio: 'ignore' },
    );
    const done = new Promise((r) => child.on('exit', r));
    // Busy until the child is done (its 12,000 files make ~36,000 events, over the kernel's 16,384),
    // however slow a loaded machine makes it: the event loop does not run, the queue fills up.
    // (exitCode is only set by the event loop: the child's end is seen by its last file.)
    const last = path.join(dir, 'burst', 'f11999');
    const end = Date.now() + 30_000;
    while (Date.now() < end && !fs.existsSync(last)) {
      // busy
    }
    await done;
    await until(() => o.stats().lost > lostBefore || undefined);
    await until(
      () => (events.filter((e) => e.type === 'created').length >= 12000 ? true : undefined),
      60_000,
    );
    await o.idle();
    expect((await s.stat(at('burst'))).size).toBe(12000);
    // (its own waits allow 30 s for the child and 60 s for the events: 12,000 files take 20-40 s
    // alone on a slow 2-core machine, more beside other test files)
  }, 150_000);

  it('finds on start what changed while nobody watched: new, edited, moved and deleted', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('keep'));
    const moved = await s.write(at('keep/m.txt'), 'moving');
    const edited = await s.write(at('keep/e.txt'), 'v1');
    const gone = await s.write(at('keep/gone.txt'), 'bye');
    await scannedThenStopped();
    fs.writeFileSync(path.join(dir, 'keep/new.txt'), 'new');
    fs.writeFileSync(path.join(dir, 'keep/e.txt'), 'version 2');
    fs.mkdirSync(path.join(dir, 'elsewhere'));
    fs.renameSync(path.join(dir, 'keep/m.txt'), path.join(dir, 'elsewhere/m.txt'));
    fs.rmSync(path.join(dir, 'keep/gone.txt'));
    events = [];
    obs = s.watch({ rescanIntervalMs: 0 });
    await obs.ready;
    await obs.idle();
    const seen = events.filter((e) => e.origin === 'external').map((e) => `${e.type} ${e.path}`);
    expect(seen.sort()).toEqual(
      [
        'created /elsewhere',
        'created /keep/new.txt',
        'deleted /keep/gone.txt',
        'moved /elsewhere/m.txt',
        'updated /keep/e.txt',
      ].sort(),
    );
    expect(events.find((e) => e.type === 'deleted')?.resourceId).toEqual(gone.id);
    expect(events.find((e) => e.type === 'moved')?.resourceId).toEqual(moved.id);
    expect((await s.stat({ resourceId: edited.id })).checksums?.sha1).toBe(sha1('version 2'));
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('finds on start a file deleted, while nobody watched, inside a folder moved before', async () => {
    const { sp, dir, at } = await space();
    await s.mkdir(at('a/in'), { parents: true });
    const f = await s.write(at('a/in/f.txt'), 'x'.repeat(40));
    await s.write(at('a/in/k.txt'), 'y'.repeat(5));
    await s.move(at('a'), at('b'));
    await scannedThenStopped();
    fs.rmSync(path.join(dir, 'b/in/f.txt'));
    events = [];
    obs = s.watch({ rescanIntervalMs: 0 });
    await obs.ready;
    await obs.idle();
    const seen = events.filter((e) => e.origin === 'external');
    expect(seen.map((e) => `${e.type} ${e.path}`)).toEqual(['deleted /b/in/f.txt']);
    expect(seen[0]!.resourceId).toEqual(f.id);
    expect((await s.stat(at(''))).size).toBe(5);
    const [report] = await driver.fsck({ space: sp.id });
    expect(report!.problems).toEqual({});
  });

  it('reports nothing below a moved folder deleted when a folder is made again at its old name', async () => {
    const { sp, dir, at } = await space();
    await s.mkdir(at('a/in'), { parents: true });
    const f = await s.write(at('a/in/f.txt'), 'kept');
    const g = await s.write(at('a/g.txt'), 'kept too');
    await s.move(at('a'), at('b'));
    await scannedThenStopped();
    // The index still names a/in/f.txt and a/g.txt (the paths before the move): a folder made
    // at a, with a g.txt of its own removed again, must not make them look deleted.
    fs.mkdirSync(path.join(dir, 'a/in'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a/g.txt'), 'new');
    events = [];
    obs = s.watch({ rescanIntervalMs: 0 });
    await obs.ready;
    await obs.idle();
    fs.rmSync(path.join(dir, 'a/g.txt'));
    fs.writeFileSync(path.join(dir, 'a/in/f.txt'), 'briefly');
    fs.rmSync(path.join(dir, 'a/in/f.txt'));
    await until(external('deleted', '/a/g.txt'));
    await obs.idle();
    const deleted = events.filter((e) => e.origin === 'external' && e.type === 'deleted');
    expect(deleted.map((e) => e.path)).toEqual(['/a/g.txt']);
    expect(deleted[0]!.resourceId?.opaqueId).not.toBe(g.id.opaqueId);
    expect((await s.stat({ resourceId: f.id })).path).toBe('/b/in/f.txt');
    expect((await s.stat({ resourceId: g.id })).path).toBe('/b/g.txt');
    const [report] = await driver.fsck({ space: sp.id });
    expect(report!.problems).toEqual({});
  });

  it('retires on start the id of a file replaced while nobody watched, leaving no index entry behind', async () => {
    const { sp, dir, at } = await space();
    await s.mkdir(at('d'));
    const b = await s.write(at('d/b.txt'), 'b v1');
    await scannedThenStopped();
    // An editor's save (a temp file renamed over it) while no process runs: the next one has
    // no sighting in memory that says a plain file was there, and gives the new file its own id.
    fs.writeFileSync(path.join(dir, 'd/.b.tmp'), 'b v2');
    fs.renameSync(path.join(dir, 'd/.b.tmp'), path.join(dir, 'd/b.txt'));
    const d2 = await createPosixDriver({ root });
    const s2 = new StorageProvider({ drivers: d2 });
    const seen: StorageEvent[] = [];
    s2.events.on((e) => void (e.origin === 'external' && seen.push(e)));
    const o2 = s2.watch({ rescanIntervalMs: 0 });
    try {
      await o2.ready;
      await o2.idle();
      const said = (type: string) => seen.filter((e) => e.type === type && e.path === '/d/b.txt');
      expect(said('deleted').map((e) => e.resourceId)).toEqual([b.id]);
      expect(said('created')[0]?.resourceId?.opaqueId).not.toBe(b.id.opaqueId);
      // (the new file is announced first here: the scan's walk finds it before its pass over the
      // index finds the old id gone; while watching, the deletion comes first)
      const [report] = await d2.fsck({ space: sp.id });
      expect(report!.problems).toEqual({});
    } finally {
      await o2.close();
      await s2.close();
    }
  });

  it('keeps the id of a file saved by an editor (temp file renamed over it) below a folder moved before', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('a/in'), { parents: true });
    const f = await s.write(at('a/in/f.txt'), 'v1');
    await s.move(at('a'), at('b'));
    await watching();
    await s.stat(at('b/in/f.txt')); // (seen at its new path)
    fs.writeFileSync(path.join(dir, 'b/in/.f.swp'), 'v2, saved');
    fs.renameSync(path.join(dir, 'b/in/.f.swp'), path.join(dir, 'b/in/f.txt'));
    const e = await until(external('updated', '/b/in/f.txt'));
    expect(e.resourceId).toEqual(f.id);
    await obs!.idle();
    expect(events.filter((x) => x.origin === 'external' && x.type === 'deleted')).toEqual([]);
    expect((await s.stat({ resourceId: f.id })).checksums?.sha1).toBe(sha1('v2, saved'));
  });

  it('lets a before-hook refuse a file (it goes to the trash) or annotate it with metadata', async () => {
    const { dir, at, sp } = await space();
    await s.mkdir(at('inbox'));
    const off = s.events.before((c) => {
      if (c.origin !== 'external' || c.op !== 'write') return;
      if (!c.path?.endsWith('.h5')) throw new StorageError('PERMISSION_DENIED', 'HDF5 files only');
      return { metadata: { validated: 'yes', bytes: String(c.size) } };
    });
    try {
      await watching();
      fs.writeFileSync(path.join(dir, 'inbox/good.h5'), 'hdf5');
      fs.writeFileSync(path.join(dir, 'inbox/bad.txt'), 'text');
      const ok = await until(external('created', '/inbox/good.h5'));
      const refused = await until(external('trashed', '/inbox/bad.txt'));
      expect(refused.reason).toContain('HDF5 files only');
      expect(fs.existsSync(path.join(dir, 'inbox/bad.txt'))).toBe(false);
      const trash = [];
      for await (const item of s.listTrash(sp.id)) trash.push(item.path);
      expect(trash).toContain('/inbox/bad.txt');
      const info = await s.stat({ resourceId: ok.resourceId! }, { metadataKeys: '*' });
      expect(info.metadata).toEqual({ validated: 'yes', bytes: '4' });
      expect((await s.stat(at('inbox'))).size).toBe(4);
    } finally {
      off();
    }
  });

  // (last: its 6,000 files push other tests' paths out of the process's memory of recent sightings)
  it('recounts a folder whose recount was put off (busy), the space root too, before it says it is idle', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('sub'));
    // Enough files that a recount takes a while (the next one waits ten times as long).
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(dir, `f${i}`), 'x');
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(dir, 'sub', `g${i}`), 'y');
    const o = await watching();
    await o.idle();
    for (let round = 0; round < 3; round++) {
      fs.writeFileSync(path.join(dir, `late-${round}`), 'late!');
      fs.writeFileSync(path.join(dir, 'sub', `late-${round}`), 'later!');
      await until(external('created', `/late-${round}`));
      await until(external('created', `/sub/late-${round}`));
      await o.idle();
      expect(await treeSizeErrors(dir), `round ${round}`).toEqual([]);
    }
  });
});
