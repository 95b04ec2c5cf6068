import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import * as xattr from 'fs-xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { collect, fromLetters, ROLES, type Space, StorageProvider } from '../../src/index.js';
import { treeSizeErrors, walkSpace } from '../helpers/disk.js';
import { tempRoot } from '../helpers/tmp.js';

let driver: PosixDriver;
let s: StorageProvider;
let n = 0;

beforeAll(async () => {
  // scanIntervalMs 0: every id miss may rescan, so each test sees a fresh scan.
  driver = await createPosixDriver({ root: await tempRoot('around'), scanIntervalMs: 0 });
  s = new StorageProvider({ drivers: driver });
});
afterAll(() => s.close());

async function space(): Promise<{
  sp: Space;
  dir: string;
  at: (p: string) => { space: string; path: string };
}> {
  const sp = await s.createSpace({ type: 'project', name: `around ${++n}` });
  return { sp, dir: await driver.spacePath(sp.id), at: (p: string) => ({ space: sp.id, path: p }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha1 = (b: string) => createHash('sha1').update(b).digest('hex');

const text = async (ref: Parameters<StorageProvider['read']>[0]) =>
  (await collect((await s.read(ref)).body!)).toString();

/** Run `fn` on a fresh driver whose checksums turn suspect 100 ms (not 2 s) after a change. */
async function withShortSlack(name: string, fn: (d: PosixDriver, p: StorageProvider) => Promise<void>) {
  const d = await createPosixDriver({ root: await tempRoot(name), ctimeSlackMs: 100 });
  const p = new StorageProvider({ drivers: d });
  try {
    await fn(d, p);
  } finally {
    await p.close();
  }
}

describe('posix: changes made on disk around Stowage', () => {
  it('keeps the id of a file renamed with mv in its folder (found by id and by path)', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('d'));
    const f = await s.write(at('d/before.txt'), 'content');
    execFileSync('mv', [path.join(dir, 'd/before.txt'), path.join(dir, 'd/after.txt')]);
    const byId = await s.stat({ resourceId: f.id });
    expect(byId.path).toBe('/d/after.txt');
    expect((await s.stat(at('d/after.txt'))).id).toEqual(f.id);
    expect(await text({ resourceId: f.id })).toBe('content');
  });

  it('keeps ids of files and folders moved with mv across folders, and fixes their parent ids', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('a/sub'), { parents: true });
    await s.mkdir(at('b'));
    const sub = await s.stat(at('a/sub'));
    const f = await s.write(at('a/sub/f.txt'), 'x');
    const g = await s.write(at('a/g.txt'), 'y');
    const b = await s.stat(at('b'));
    execFileSync('mv', [path.join(dir, 'a/sub'), path.join(dir, 'b/moved')]);
    execFileSync('mv', [path.join(dir, 'a/g.txt'), path.join(dir, 'b/g.txt')]);
    // By path: same ids, parent ids follow the new place.
    const g2 = await s.stat(at('b/g.txt'));
    expect(g2.id).toEqual(g.id);
    expect(g2.parentId?.opaqueId).toBe(b.id.opaqueId);
    // By id: found where they are now, including a child of the moved folder.
    expect((await s.stat({ resourceId: sub.id })).path).toBe('/b/moved');
    expect((await s.stat({ resourceId: f.id })).path).toBe('/b/moved/f.txt');
    expect(await text({ resourceId: f.id, path: '' })).toBe('x');
    // A listing reports the new parent.
    for await (const e of s.list(at('b'))) expect(e.parentId?.opaqueId).toBe(b.id.opaqueId);
  });

  it('finds a folder moved on disk by id even through a deeper chain of moves', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('x/y/z'), { parents: true });
    const z = await s.write(at('x/y/z/leaf'), 'leaf');
    execFileSync('mv', [path.join(dir, 'x'), path.join(dir, 'renamed-x')]);
    execFileSync('mv', [path.join(dir, 'renamed-x/y'), path.join(dir, 'y-on-top')]);
    expect((await s.stat({ resourceId: z.id })).path).toBe('/y-on-top/z/leaf');
  });

  it('gives a cp -a copy of a folder moved on disk before its own ids, and leaves the moved original its ids', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('v1/deep'), { parents: true });
    const doc = await s.write(at('v1/deep/doc.txt'), 'doc');
    await s.write(at('v1/deep/doc.txt'), 'doc v2'); // a version goes with the id
    execFileSync('mv', [path.join(dir, 'v1'), path.join(dir, 'v1-moved')]);
    // Seen moved (the folder's index entry follows; its files' entries still name v1/...).
    for await (const _ of s.list(at(''))) void _;
    execFileSync('cp', ['-a', path.join(dir, 'v1-moved'), path.join(dir, 'v1-copy')]);
    const copy = await s.stat(at('v1-copy/deep/doc.txt'));
    expect(copy.id).not.toEqual(doc.id);
    const original = await s.stat(at('v1-moved/deep/doc.txt'));
    expect(original.id).toEqual(doc.id);
    expect((await s.stat({ resourceId: doc.id })).path).toBe('/v1-moved/deep/doc.txt');
    expect(await s.listVersions({ resourceId: doc.id })).toHaveLength(1);
  });

  it('gives a copy made with cp -a (xattrs copied) its own id and leaves the original alone', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('orig.txt'), 'o');
    await s.mkdir(at('folder'));
    const inner = await s.write(at('folder/inner.txt'), 'i');
    const folder = await s.stat(at('folder'));
    await sleep(30);
    const t0 = Date.now() - 20; // (the kernel's file times run up to a tick behind)
    execFileSync('cp', ['-a', path.join(dir, 'orig.txt'), path.join(dir, 'copy.txt')]);
    execFileSync('cp', ['-a', path.join(dir, 'folder'), path.join(dir, 'folder-copy')]);
    const t1 = Date.now();
    await sleep(60);
    expect(
      JSON.parse((await xattr.getAttribute(path.join(dir, 'copy.txt'), 'user.stowage.n')).toString()).id,
    ).toBe(f.id.opaqueId);
    const ids = new Map<string, string>();
    for await (const e of s.list(at(''))) ids.set(e.name, e.id.opaqueId);
    expect(ids.get('orig.txt')).toBe(f.id.opaqueId);
    expect(ids.get('copy.txt')).not.toBe(f.id.opaqueId);
    expect(ids.get('folder')).toBe(folder.id.opaqueId);
    expect(ids.get('folder-copy')).not.toBe(folder.id.opaqueId);
    const innerCopy = await s.stat(at('folder-copy/inner.txt'));
    expect(innerCopy.id).not.toEqual(inner.id);
    expect(innerCopy.parentId?.opaqueId).toBe(ids.get('folder-copy'));
    expect((await s.stat({ resourceId: inner.id })).path).toBe('/folder/inner.txt');
    expect((await s.stat({ resourceId: f.id })).path).toBe('/orig.txt');
    // The copies are new resources, made when cp made them (not the originals' time, nor when
    // Stowage first met them); the originals keep theirs.
    for (const p of ['copy.txt', 'folder-copy', 'folder-copy/inner.txt']) {
      const c = (await s.stat(at(p))).created!;
      expect(c, p).toBeGreaterThanOrEqual(t0);
      expect(c, p).toBeLessThanOrEqual(t1);
    }
    expect((await s.stat(at('orig.txt'))).created).toBe(f.created);
    expect((await s.stat(at('folder'))).created).toBe(folder.created);
    const nodes = await walkSpace(dir);
    expect(new Set(nodes.map((x) => x.rec?.id)).size).toBe(nodes.length);
  });

  it('gives a file renamed over another a new id when no observer watches (a removal and a new file are not told apart)', async () => {
    // (With an observer, the replaced file's id carries over: see test/observer/posix-watch.test.ts.)
    const { dir, at } = await space();
    const f = await s.write(at('notes.md'), 'first');
    await s.setGrant(at('notes.md'), {
      grantee: { type: 'user', id: 'u-eve' },
      permissions: fromLetters('R'),
    });
    await s.setMetadata(at('notes.md'), { big: 'b'.repeat(5000) });
    await fs.rm(path.join(dir, 'notes.md'));
    await fs.writeFile(path.join(dir, '.notes.md.swp'), 'someone else’s file');
    await fs.rename(path.join(dir, '.notes.md.swp'), path.join(dir, 'notes.md'));
    const info = await s.stat(at('notes.md'), { metadataKeys: ['big'], fields: ['grants'] });
    expect(info.id).not.toEqual(f.id);
    expect(info.metadata).toEqual({});
    expect(info.grants ?? []).toEqual([]);
  });

  it('gives files and folders created around Stowage ids on first sight, and accounts their size', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('inbox'));
    await fs.mkdir(path.join(dir, 'inbox/scan-001/raw'), { recursive: true });
    await fs.writeFile(path.join(dir, 'inbox/scan-001/raw/img.tif'), Buffer.alloc(5000));
    await fs.writeFile(path.join(dir, 'inbox/notes.txt'), 'abc');
    const seen = new Map<string, string>();
    for await (const e of s.list(at('inbox'))) seen.set(e.name, e.id.opaqueId);
    expect([...seen.keys()].sort()).toEqual(['notes.txt', 'scan-001']);
    expect((await s.stat(at('inbox/scan-001'))).size).toBe(5000);
    const img = await s.stat(at('inbox/scan-001/raw/img.tif'));
    expect((await s.stat({ resourceId: img.id })).path).toBe('/inbox/scan-001/raw/img.tif');
    expect(
      (
        await s.stat({
          resourceId: { storageId: '', spaceId: img.id.spaceId, opaqueId: seen.get('notes.txt')! },
        })
      ).name,
    ).toBe('notes.txt');
    // After a listing the folder's size counts what was written around us, up to the root.
    for await (const _ of s.list(at('inbox'))) void _;
    expect((await s.stat(at('inbox'))).size).toBe(5003);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('dates what it finds made around Stowage by when it came to be on disk, not by its mtime', async () => {
    const { dir, at } = await space();
    // The kernel's file times run on a coarse clock, up to a tick behind Date.now().
    const t0 = Date.now() - 20;
    await fs.mkdir(path.join(dir, 'copied'));
    await fs.writeFile(path.join(dir, 'copied/old.dat'), 'from 2001');
    const then = new Date(Date.UTC(2001, 0, 1));
    await fs.utimes(path.join(dir, 'copied/old.dat'), then, then); // rsync -t, cp -p
    const t1 = Date.now();
    const f = await s.stat(at('copied/old.dat'));
    const d = await s.stat(at('copied'));
    expect(f.mtime).toBe(then.getTime());
    for (const info of [f, d]) {
      expect(info.created, info.path).toBeGreaterThanOrEqual(t0);
      expect(info.created, info.path).toBeLessThanOrEqual(t1);
    }
    // Recorded once: the same later, and after Stowage rewrites the file.
    await sleep(30);
    expect((await s.stat(at('copied/old.dat'))).created).toBe(f.created);
    expect((await s.write(at('copied/old.dat'), 'rewritten')).created).toBe(f.created);
  });

  it('repairs tree sizes after rm and in-place edits on disk when the folder is listed', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('p/q'), { parents: true });
    await s.write(at('p/q/a.bin'), Buffer.alloc(1000));
    await s.write(at('p/q/b.bin'), Buffer.alloc(2000));
    const etag = (await s.stat(at(''))).etag;
    await fs.rm(path.join(dir, 'p/q/a.bin'));
    await fs.appendFile(path.join(dir, 'p/q/b.bin'), Buffer.alloc(500));
    expect((await s.getSpace(at('').space)).used).toBe(3000); // not noticed yet
    const names: string[] = [];
    for await (const e of s.list(at('p/q'))) names.push(e.name);
    expect(names).toEqual(['b.bin']);
    expect((await s.stat(at('p/q'))).size).toBe(2500);
    expect((await s.stat(at('p'))).size).toBe(2500);
    expect((await s.getSpace(at('').space)).used).toBe(2500);
    expect((await s.stat(at(''))).etag).not.toBe(etag);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });

  it('never reports checksums for content changed behind its back', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('c.txt'), 'hello');
    expect(f.checksums?.sha1).toBeTruthy();
    await fs.writeFile(path.join(dir, 'c.txt'), 'HELLO, changed');
    const after = await s.stat(at('c.txt'));
    expect(after.id).toEqual(f.id);
    expect(after.checksums).toBeUndefined();
    expect(after.etag).not.toBe(f.etag);
  });

  it('never reports checksums for a same-size rewrite whose mtime was put back, and fsck --checksums finds and mends it', async () => {
    await withShortSlack('around-ctime', async (d, p) => {
      const sp = await p.createSpace({ type: 'project', name: 'ctime' });
      const at = (x: string) => ({ space: sp.id, path: x });
      const abs = path.join(await d.spacePath(sp.id), 'c.txt');
      const f = await p.write(at('c.txt'), 'hello');
      const ref = path.join(await tempRoot('around-ctime-ref'), 'ref');
      execFileSync('cp', ['-p', abs, ref]); // keeps the mtime to the nanosecond
      await sleep(250);
      await fs.writeFile(abs, 'HELLO'); // then the mtime put back, as `rsync -t` or `cp -p` leave it
      execFileSync('touch', ['-r', ref, abs]);
      const after = await p.stat(at('c.txt'));
      expect(after.size).toBe(5);
      expect(after.mtime).toBe(f.mtime);
      expect(after.checksums).toBeUndefined();
      const [check] = await d.fsck({ space: sp.id, checksums: true });
      expect(check!.problems['stale-checksums']).toBe(1);
      expect(check!.examples[0]).toMatchObject({ kind: 'stale-checksums', path: '/c.txt' });
      await d.fsck({ space: sp.id, checksums: true, repair: true });
      const mended = await p.stat(at('c.txt'));
      expect(mended.checksums?.sha1).toBe(sha1('HELLO'));
      expect(mended.etag).not.toBe(f.etag);
      const [clean] = await d.fsck({ space: sp.id, checksums: true });
      expect(clean!.problems['stale-checksums']).toBeUndefined();

      // Only touched (a chmod moves the ctime alone): hidden until read again, then the same etag.
      const g = await p.write(at('g.txt'), 'gee');
      await sleep(250);
      await fs.chmod(path.join(await d.spacePath(sp.id), 'g.txt'), 0o600);
      expect((await p.stat(at('g.txt'))).checksums).toBeUndefined();
      const [touched] = await d.fsck({ space: sp.id, checksums: true, repair: true });
      expect(touched!.problems['stale-checksums']).toBeUndefined();
      const back = await p.stat(at('g.txt'));
      expect(back.checksums?.sha1).toBe(sha1('gee'));
      expect(back.etag).toBe(g.etag);
    });
  });

  it('fsck --verify reads every file: it finds a same-size rewrite with mtime put back made at once after a write (within the ctime slack), and leaves the mending to a person', async () => {
    const { dir, at } = await space();
    const d = driver;
    const spaceId = at('').space;
    const f = await s.write(at('v.txt'), 'hello');
    const same = await s.write(at('same.txt'), 'stays');
    const abs = path.join(dir, 'v.txt');
    const ref = path.join(await tempRoot('around-verify-ref'), 'ref');
    execFileSync('cp', ['-p', abs, ref]);
    await fs.writeFile(abs, 'HELLO');
    execFileSync('touch', ['-r', ref, abs]);
    // Within the slack: nothing tells the rewrite from Stowage's own commit.
    expect((await s.stat(at('v.txt'))).checksums?.sha1).toBe(sha1('hello'));
    const [quick] = await d.fsck({ space: spaceId, checksums: true });
    expect(quick!.problems['stale-checksums']).toBeUndefined();
    const [found] = await d.fsck({ space: spaceId, verify: true });
    expect(found!.problems['stale-checksums']).toBe(1);
    expect(found!.examples).toEqual([expect.objectContaining({ kind: 'stale-checksums', path: '/v.txt' })]);
    // A person decides whether bytes or checksums are right: --repair leaves them as they are.
    await d.fsck({ space: spaceId, verify: true, repair: true });
    expect((await s.stat(at('v.txt'))).checksums?.sha1).toBe(sha1('hello'));
    const [still] = await d.fsck({ space: spaceId, verify: true });
    expect(still!.problems['stale-checksums']).toBe(1);
    // The bytes are right (a rewrite): touched, they are hashed again.
    await fs.utimes(abs, new Date(), new Date());
    await d.fsck({ space: spaceId, checksums: true, repair: true });
    const mended = await s.stat(at('v.txt'));
    expect(mended.id).toEqual(f.id);
    expect(mended.checksums?.sha1).toBe(sha1('HELLO'));
    expect(mended.etag).not.toBe(f.etag);
    expect((await s.stat(at('same.txt'))).etag).toBe(same.etag);
    const [clean] = await d.fsck({ space: spaceId, verify: true });
    expect(clean!.problems['stale-checksums']).toBeUndefined();
  });

  it('keeps showing checksums after its own changes of a file, however long after its write (rename, move, metadata, lock, trash)', async () => {
    await withShortSlack('around-ctime-own', async (_d, p) => {
      const sp = await p.createSpace({ type: 'project', name: 'ctime own' });
      const at = (x: string) => ({ space: sp.id, path: x });
      await p.mkdir(at('sub'));
      const f = await p.write(at('a.txt'), 'content');
      const sum = sha1('content');
      const shown = async (x: string) => {
        const info = await p.stat(at(x));
        expect(info.checksums?.sha1, x).toBe(sum);
        expect(info.etag, x).toBe(f.etag); // id, mtime, size and sha1 all kept
      };
      const steps: [() => Promise<unknown>, string | undefined][] = [
        [() => p.move(at('a.txt'), at('b.txt')), 'b.txt'],
        [() => p.move(at('b.txt'), at('sub/b.txt')), 'sub/b.txt'],
        [() => p.setMetadata(at('sub/b.txt'), { k: 'v' }), 'sub/b.txt'],
        [
          () => p.setLock(at('sub/b.txt'), { lockId: 'l1', type: 'exclusive', expires: Date.now() + 60_000 }),
          'sub/b.txt',
        ],
        [() => p.unlock(at('sub/b.txt'), 'l1'), 'sub/b.txt'],
        [() => p.delete(at('sub/b.txt')), undefined],
      ];
      for (const [step, where] of steps) {
        await sleep(250);
        await step();
        if (where) await shown(where);
      }
      await sleep(250);
      let key = '';
      for await (const item of p.listTrash(sp.id)) key = item.key;
      await p.restoreTrash(sp.id, key);
      await shown('sub/b.txt');
    });
  });

  it('rebuilds the id index when it is lost', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('k'));
    const f = await s.write(at('k/f'), 'indexed');
    // Another process (a fresh driver) with no memory of the ids, and the index folder gone.
    await fs.rm(path.join(dir, '.stowage/ids'), { recursive: true, force: true });
    const other = await createPosixDriver({ root: driver.root, scanIntervalMs: 0 });
    try {
      const o = new StorageProvider({ drivers: other });
      expect((await o.stat({ resourceId: f.id })).path).toBe('/k/f');
      const entries = await fs.readdir(path.join(dir, '.stowage/ids'), { recursive: true });
      expect(entries.some((e) => e.endsWith(f.id.opaqueId))).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('answers NOT_FOUND for unknown ids without rescanning more than once per interval', async () => {
    const root = await tempRoot('scan-limit');
    const d = await createPosixDriver({ root, scanIntervalMs: 60_000 });
    const p = new StorageProvider({ drivers: d });
    try {
      const sp = await p.createSpace({ type: 'project', name: 'limit' });
      for (let i = 0; i < 50; i++) await p.write({ space: sp.id, path: `f${i}` }, 'x');
      const t0 = performance.now();
      await expect(
        p.stat({ resourceId: { storageId: '', spaceId: sp.id, opaqueId: 'deadbeef-0000' } }),
      ).rejects.toThrow();
      const first = performance.now() - t0;
      const t1 = performance.now();
      for (let i = 0; i < 200; i++) {
        await expect(
          p.stat({ resourceId: { storageId: '', spaceId: sp.id, opaqueId: `deadbeef-${i}` } }),
        ).rejects.toThrow();
      }
      const perMiss = (performance.now() - t1) / 200;
      expect(perMiss).toBeLessThan(Math.max(first, 1)); // later misses skip the scan
    } finally {
      await p.close();
    }
  });
});

describe('posix: metadata and the xattr budget', () => {
  it('keeps small metadata inline and large metadata in an id-keyed sidecar that follows moves', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('m.txt'), 'x');
    await s.setMetadata(at('m.txt'), { small: 'v' });
    expect((await xattr.listAttributes(path.join(dir, 'm.txt'))).sort()).toEqual([
      'user.stowage.m',
      'user.stowage.n',
    ]);
    await s.setMetadata(at('m.txt'), { big: 'b'.repeat(5000) });
    expect(await xattr.listAttributes(path.join(dir, 'm.txt'))).toEqual(['user.stowage.n']);
    const sidecar = path.join(dir, '.stowage/meta', f.id.opaqueId.slice(0, 2), `${f.id.opaqueId}.json`);
    expect(JSON.parse(await fs.readFile(sidecar, 'utf8'))).toEqual({ small: 'v', big: 'b'.repeat(5000) });
    await s.mkdir(at('elsewhere'));
    await s.move(at('m.txt'), at('elsewhere/m.txt'));
    expect((await s.stat(at('elsewhere/m.txt'), { metadataKeys: ['small'] })).metadata).toEqual({
      small: 'v',
    });
    await s.unsetMetadata(at('elsewhere/m.txt'), ['big']);
    await expect(fs.access(sidecar)).rejects.toThrow();
    expect((await xattr.listAttributes(path.join(dir, 'elsewhere/m.txt'))).sort()).toEqual([
      'user.stowage.m',
      'user.stowage.n',
    ]);
    await s.delete(at('elsewhere/m.txt'));
  });

  it('falls back to the sidecar when the filesystem has no xattr room left (ENOSPC on ext4)', async () => {
    const root = await tempRoot('xattr-room');
    const d = await createPosixDriver({ root, inlineMetadataBytes: 1_000_000 });
    const p = new StorageProvider({ drivers: d });
    try {
      const sp = await p.createSpace({ type: 'project', name: 'room' });
      const f = await p.write({ space: sp.id, path: 'f' }, 'x');
      const values = { a: 'a'.repeat(6000) }; // more than one ext4 xattr block
      await p.setMetadata({ space: sp.id, path: 'f' }, values);
      expect((await p.stat({ space: sp.id, path: 'f' }, { metadataKeys: '*' })).metadata).toEqual(values);
      const file = path.join(await d.spacePath(sp.id), 'f');
      expect(await xattr.listAttributes(file)).toEqual(['user.stowage.n']);
      expect(f.id.opaqueId).toBeTruthy();
    } finally {
      await p.close();
    }
  });

  it('keeps a node record far below the ~3.5 KiB ext4 gives all xattrs of an inode', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('a-rather-long-folder-name-for-good-measure'));
    await s.write(at('a-rather-long-folder-name-for-good-measure/file.bin'), 'x', { mtime: Date.now() });
    for (const p of [
      '',
      'a-rather-long-folder-name-for-good-measure',
      'a-rather-long-folder-name-for-good-measure/file.bin',
    ]) {
      const bytes = (await xattr.getAttribute(path.join(dir, p), 'user.stowage.n')).length;
      expect(bytes).toBeLessThan(400);
    }
  });
});

describe('posix: the hidden folder of a space removed on disk', () => {
  it('recreates what it needs and keeps working', async () => {
    const { dir, at } = await space();
    await s.write(at('before.txt'), 'x');
    const fresh = await createPosixDriver({ root: driver.root });
    try {
      await fs.rm(path.join(dir, '.stowage'), { recursive: true, force: true });
      const p = new StorageProvider({ drivers: fresh });
      await p.write(at('after.txt'), 'y');
      expect((await p.stat(at('before.txt'))).size).toBe(1);
      expect(await treeSizeErrors(dir)).toEqual([]);
    } finally {
      await fresh.close();
    }
  });
});

describe('posix: hard links made on disk', () => {
  it('shares one id between the links without flip-flopping, and moving one onto the other unlinks it', async () => {
    const { dir, at, sp } = await space();
    await s.mkdir(at('a'));
    await s.mkdir(at('b'));
    const f = await s.write(at('a/f.bin'), Buffer.alloc(100));
    execFileSync('ln', [path.join(dir, 'a/f.bin'), path.join(dir, 'b/link.bin')]);
    for (let i = 0; i < 3; i++) {
      expect((await s.stat(at('a/f.bin'))).id).toEqual(f.id);
      expect((await s.stat(at('b/link.bin'))).id).toEqual(f.id);
    }
    expect((await s.stat({ resourceId: f.id })).path).toBe('/a/f.bin');
    // Listing both folders settles sizes: the link counts where it is, as du --apparent-size does per path.
    for await (const _ of s.list(at('b'))) void _;
    expect((await s.getSpace(sp.id)).used).toBe(200);
    await s.move(at('a/f.bin'), at('b/link.bin'), { overwrite: true });
    await expect(fs.access(path.join(dir, 'a/f.bin'))).rejects.toThrow();
    expect((await s.stat(at('b/link.bin'))).id).toEqual(f.id);
    expect((await s.getSpace(sp.id)).used).toBe(100);
    expect(await treeSizeErrors(dir)).toEqual([]);
  });
});

describe('posix: concurrent changes while listing', () => {
  it('does not fail a listing when entries vanish under it', async () => {
    const { dir, at } = await space();
    await s.mkdir(at('busy'));
    for (let i = 0; i < 400; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => fs.writeFile(path.join(dir, 'busy', `f${i + j}`), 'x')),
      );
    }
    let seen = 0;
    let removed = 0;
    for await (const _ of s.list(at('busy'))) {
      seen++;
      // Remove entries the listing has not reached yet, as another process might.
      for (let k = 0; k < 3 && removed < 300; k++)
        await fs.rm(path.join(dir, 'busy', `f${399 - removed++}`), { force: true });
    }
    expect(seen).toBeGreaterThan(50);
    expect(seen).toBeLessThanOrEqual(400);
  });
});

describe('posix: a crash whose repair fails', () => {
  it('keeps serving reads, refuses commits with a pointer to fsck, and fsck --repair clears it', async () => {
    const root = await tempRoot('stuck');
    let d = await createPosixDriver({ root });
    let p = new StorageProvider({ drivers: d });
    const sp = await p.createSpace({ type: 'project', name: 'stuck' });
    await p.write({ space: sp.id, path: 'keep.txt' }, 'still readable');
    const dir = await d.spacePath(sp.id);
    await p.close();
    // A dead commit's intent naming a node whose record cannot be read (a symlink loop: ELOOP).
    await fs.symlink('loop', path.join(dir, 'loop'));
    await fs.writeFile(
      path.join(dir, '.stowage/lock'),
      `${JSON.stringify({ dirs: [[]], nodes: [{ id: 'x', at: ['loop'] }] })}\n`,
    );
    const logged: string[] = [];
    d = await createPosixDriver({ root, log: (m) => logged.push(m) });
    p = new StorageProvider({ drivers: d });
    try {
      expect(await text2(p, { space: sp.id, path: 'keep.txt' })).toBe('still readable');
      expect(logged.some((m) => m.includes('crash repair failed'))).toBe(true);
      await expect(p.write({ space: sp.id, path: 'new.txt' }, 'x')).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: expect.stringContaining('fsck'),
      });
      const [check] = await d.fsck({ space: sp.id });
      expect(check!.problems['pending-intent']).toBe(1);
      const [fixed] = await d.fsck({ space: sp.id, repair: true });
      expect(fixed!.problems['pending-intent']).toBe(1);
      await p.write({ space: sp.id, path: 'new.txt' }, 'x');
      const [clean] = await d.fsck({ space: sp.id });
      expect(clean!.problems['pending-intent']).toBeUndefined();
    } finally {
      await p.close();
    }
  });
});

async function text2(p: StorageProvider, ref: Parameters<StorageProvider['read']>[0]): Promise<string> {
  return (await collect((await p.read(ref)).body!)).toString();
}

describe('posix: ids of nodes in the trash', () => {
  it('keeps them through a full scan, so children of a restored folder are found by id', async () => {
    const { at, sp } = await space();
    await s.mkdir(at('box/inner'), { parents: true });
    const child = await s.write(at('box/inner/c.txt'), 'c');
    const box = await s.stat(at('box'));
    await s.delete(at('box'));
    // An unknown id forces a full scan of the space (scanIntervalMs is 0 here).
    await expect(
      s.stat({ resourceId: { storageId: '', spaceId: sp.id, opaqueId: 'deadbeef-1' } }),
    ).rejects.toThrow();
    const [check] = await driver.fsck({ space: sp.id });
    expect(check!.problems).toEqual({});
    await s.restoreTrash(sp.id, box.id.opaqueId);
    expect((await s.stat({ resourceId: child.id })).path).toBe('/box/inner/c.txt');
  });
});

describe('posix: grants changed by another process', () => {
  it('are seen by this process at once (within its 1 ms version check)', async () => {
    const root = await tempRoot('gv');
    const a = new StorageProvider({ drivers: await createPosixDriver({ root }) });
    const b = new StorageProvider({ drivers: await createPosixDriver({ root }) });
    try {
      const sp = await a.createSpace({ type: 'project', name: 'gv' });
      const at = (p: string) => ({ space: sp.id, path: p });
      await a.mkdir(at('x/y'), { parents: true });
      await a.write(at('x/y/f.txt'), 'f');
      await b.setGrant(at('x'), {
        grantee: { type: 'user', id: 'u' },
        permissions: fromLetters(ROLES.viewer),
      });
      const ua = await a.as({ userId: 'u', groups: [] });
      expect((await ua.stat(at('x/y/f.txt'))).permissions?.initiateFileDownload).toBe(true);
      // Revoked in the other driver (another process, as far as caches go).
      await b.setGrant(at('x'), {
        grantee: { type: 'user', id: 'u' },
        permissions: fromLetters(''),
        deny: true,
      });
      await new Promise((r) => setTimeout(r, 5));
      await expect(ua.stat(at('x/y/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
      // And moving a folder in the other process re-evaluates inherited grants here too.
      await b.removeGrant(at('x'), { type: 'user', id: 'u' });
      await b.mkdir(at('open'));
      await b.setGrant(at('open'), {
        grantee: { type: 'user', id: 'u' },
        permissions: fromLetters(ROLES.viewer),
      });
      await new Promise((r) => setTimeout(r, 5));
      await expect(ua.stat(at('x/y/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await b.move(at('x'), at('open/x'));
      await new Promise((r) => setTimeout(r, 5));
      expect((await ua.stat(at('open/x/y/f.txt'))).name).toBe('f.txt');
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('posix: grants damaged on disk', () => {
  it('fail closed (a deny may be lost otherwise), and fsck reports them without touching them', async () => {
    const { sp, dir, at } = await space();
    await s.mkdir(at('team'));
    await s.write(at('team/f.txt'), 'f');
    await s.setGrant(at(''), { grantee: { type: 'user', id: 'u' }, permissions: fromLetters(ROLES.viewer) });
    await s.setGrant(at('team'), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(''),
      deny: true,
    });
    const u = await s.as({ userId: 'u', groups: [] });
    await expect(u.stat(at('team/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    for (const damage of ['{not json', '{"k":"u"}', '[{"k":"u","id":"u","p":"","d":1},{"broken":true}]']) {
      await xattr.setAttribute(path.join(dir, 'team'), 'user.stowage.g', damage);
      // Changing any grant bumps the version, so no cached chain hides the damage.
      await s.setGrant(at(''), { grantee: { type: 'user', id: 'other' }, permissions: fromLetters('s') });
      await expect(u.stat(at('team/f.txt'))).rejects.toMatchObject({ code: 'INTERNAL' });
      const [report] = await driver.fsck({ space: sp.id, repair: true });
      expect(report!.problems['unreadable-grants']).toBe(1);
      expect((await xattr.getAttribute(path.join(dir, 'team'), 'user.stowage.g')).toString()).toBe(damage);
    }
  });

  it('sees a record changed around Stowage after it was cached (an xattr change moves the ctime)', async () => {
    const { dir, at } = await space();
    const f = await s.write(at('cached.txt'), 'hello');
    await new Promise((r) => setTimeout(r, 1100)); // old enough to be cached (SETTLED_MS)
    const sums = async () => {
      const out: string[] = [];
      for await (const i of s.list(at(''))) out.push(`${i.name}:${i.checksums?.md5}`);
      return out;
    };
    expect(await sums()).toEqual([`cached.txt:${f.checksums?.md5}`]);
    expect((await s.stat(at('cached.txt'))).checksums?.md5).toBe(f.checksums?.md5);
    // A tool rewrites the record (here: a different md5, as a migration that re-hashed might).
    const file = path.join(dir, 'cached.txt');
    const rec = JSON.parse((await xattr.getAttribute(file, 'user.stowage.n')).toString());
    await xattr.setAttribute(
      file,
      'user.stowage.n',
      JSON.stringify({ ...rec, ck: { ...rec.ck, md5: 'f'.repeat(32) } }),
    );
    expect(await sums()).toEqual([`cached.txt:${'f'.repeat(32)}`]);
    expect((await s.stat(at('cached.txt'))).checksums?.md5).toBe('f'.repeat(32));
    expect((await s.stat(at('cached.txt'))).id).toEqual(f.id);
  });
});
