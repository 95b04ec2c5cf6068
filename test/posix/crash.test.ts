import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as xattr from 'fs-xattr';
import { beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { collect, fromLetters, ROLES, StorageProvider } from '../../src/index.js';
import { litter, treeSizeErrors, usageErrors, walkSpace } from '../helpers/disk.js';
import { all } from '../helpers/iter.js';
import { tempRoot } from '../helpers/tmp.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/crash-child.mjs');

function run(
  root: string,
  scenario: string,
  point: string,
): Promise<{ signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, root, scenario, point], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (_code, signal) => resolve({ signal, out }));
  });
}

/** A storage with project/crash: a/b/old.bin (1000 B), a/b/x/deep.txt, c/b/keep.txt. */
async function fixture() {
  const root = await tempRoot('crash');
  const driver = await createPosixDriver({ root });
  const s = new StorageProvider({ drivers: driver });
  const sp = await s.createSpace({ type: 'project', name: 'crash' });
  const at = (p: string) => ({ space: sp.id, path: p });
  await s.mkdir(at('a/b/x'), { parents: true });
  await s.mkdir(at('c/b'), { parents: true });
  await s.write(at('a/b/old.bin'), Buffer.alloc(1000, 1));
  await s.write(at('a/b/x/deep.txt'), 'deep');
  await s.write(at('c/b/keep.txt'), 'keep me');
  // A version of old.bin, a folder in the trash, and a grant, for the restore and grant scenarios.
  await s.write(at('a/b/old.bin'), Buffer.alloc(1000, 2));
  await s.mkdir(at('gone/inner'), { parents: true });
  await s.write(at('gone/inner/g.txt'), 'in the trash');
  await s.delete(at('gone'));
  await s.setGrant(at('a'), {
    grantee: { type: 'user', id: 'first' },
    permissions: fromLetters(ROLES.editor),
  });
  await s.setMetadata(at('a/b/old.bin'), { gone: 'soon' });
  const rootEtag = (await s.stat(at(''))).etag;
  await s.close();
  return { root, spaceRoot: path.join(root, 'spaces/project/crash'), rootEtag };
}

async function reopen(root: string) {
  const driver = await createPosixDriver({ root });
  const s = new StorageProvider({ drivers: driver });
  const sp = await s.getSpace('project/crash');
  const at = (p: string) => ({ space: sp.id, path: p });
  const exists = (p: string) =>
    s.stat(at(p)).then(
      () => true,
      () => false,
    );
  const text = async (p: string) => (await collect((await s.read(at(p))).body!)).toString();
  return { driver, s, at, exists, text };
}

const cases: [string, string, (v: Awaited<ReturnType<typeof reopen>>) => Promise<void>][] = [
  ['write-new', 'stream', async (v) => expect(await v.exists('a/b/new.bin')).toBe(false)],
  ['write-new', 'before:write', async (v) => expect(await v.exists('a/b/new.bin')).toBe(false)],
  [
    'write-new',
    'after:write',
    async (v) => {
      const info = await v.s.stat(v.at('a/b/new.bin'));
      expect(info.size).toBe(3 * 1024 * 1024);
      const want = createHash('sha1')
        .update(Buffer.alloc(3 * 1024 * 1024, 7))
        .digest('hex');
      expect(info.checksums?.sha1).toBe(want);
    },
  ],
  ['write-over', 'stream', async (v) => expect((await v.s.stat(v.at('a/b/old.bin'))).size).toBe(1000)],
  ['write-over', 'before:write', async (v) => expect((await v.s.stat(v.at('a/b/old.bin'))).size).toBe(1000)],
  [
    'write-over',
    'after:write',
    async (v) => expect((await v.s.stat(v.at('a/b/old.bin'))).size).toBe(3 * 1024 * 1024),
  ],
  // The current content got its version's name as a second name; the new one never moved in.
  [
    'write-over',
    'after:write-aside',
    async (v) => {
      expect((await v.s.stat(v.at('a/b/old.bin'))).size).toBe(1000);
      expect((await v.s.listVersions(v.at('a/b/old.bin'))).length).toBe(1);
    },
  ],
  ['delete', 'before:delete', async (v) => expect(await v.text('a/b/x/deep.txt')).toBe('deep')],
  ['delete', 'after:delete', async (v) => expect(await v.exists('a/b')).toBe(false)],
  // Marked for the trash, not moved yet: still in place (and without trash facts, checked below).
  ['delete', 'before:trash', async (v) => expect(await v.text('a/b/x/deep.txt')).toBe('deep')],
  [
    'move-over',
    'before:move',
    async (v) => {
      expect(await v.text('a/b/x/deep.txt')).toBe('deep');
      expect(await v.text('c/b/keep.txt')).toBe('keep me');
    },
  ],
  [
    'move-over',
    'after:move-aside',
    async (v) => {
      // The replaced folder was moved aside, the move itself never happened: undone.
      expect(await v.text('a/b/x/deep.txt')).toBe('deep');
      expect(await v.text('c/b/keep.txt')).toBe('keep me');
    },
  ],
  [
    'move-over',
    'after:move',
    async (v) => {
      expect(await v.exists('a/b')).toBe(false);
      expect(await v.text('c/b/x/deep.txt')).toBe('deep');
      expect(await v.exists('c/b/keep.txt')).toBe(false);
    },
  ],
  [
    'move-file-over',
    'after:move-aside',
    async (v) => {
      // The replaced file got its trash item's name as a second name; the move never happened.
      expect(await v.text('a/b/x/deep.txt')).toBe('deep');
      expect(await v.text('c/b/keep.txt')).toBe('keep me');
      expect((await all(v.s.listTrash(v.at('').space))).map((t) => t.path)).toEqual(['/gone']);
    },
  ],
  [
    'move-file-over',
    'after:move',
    async (v) => {
      expect(await v.exists('a/b/x/deep.txt')).toBe(false);
      expect(await v.text('c/b/keep.txt')).toBe('deep');
      expect((await all(v.s.listTrash(v.at('').space))).map((t) => t.path).sort()).toEqual([
        '/c/b/keep.txt',
        '/gone',
      ]);
    },
  ],
  // A move that sets the file's time where it lands (a WebDAV MOVE with X-OC-Mtime), over a file
  // or to a new name: the time is in the source's record before anything else, so a crash before
  // the rename drops it from the file that stayed...
  ...[
    ['move-timed', 'before:move'],
    ['move-timed', 'after:move-aside'],
    ['move-timed-new', 'before:move'],
  ].map(([scenario, point]): (typeof cases)[number] => [
    scenario!,
    point!,
    async (v) => {
      expect((await v.s.stat(v.at('a/b/old.bin'))).mtime).not.toBe(1_500_000_000_000);
      expect(await v.text('c/b/keep.txt')).toBe('keep me');
      expect(await v.exists('c/b/new.bin')).toBe(false);
    },
  ]),
  // ...and one after it sets it where the file landed.
  ...(['move-timed', 'move-timed-new'] as const).map((scenario): (typeof cases)[number] => [
    scenario,
    'after:move',
    async (v) => {
      expect(await v.exists('a/b/old.bin')).toBe(false);
      const info = await v.s.stat(v.at(scenario === 'move-timed' ? 'c/b/keep.txt' : 'c/b/new.bin'));
      expect(info.mtime).toBe(1_500_000_000_000);
      expect(info.checksums?.sha1).toBe(sha1(Buffer.alloc(1000, 2)));
    },
  ]),
  ['copy', 'before:copy', async (v) => expect(await v.exists('c/a2')).toBe(false)],
  ['restore', 'before:restore', async (v) => expect(await v.exists('gone')).toBe(false)],
  ['restore', 'after:restore', async (v) => expect(await v.text('gone/inner/g.txt')).toBe('in the trash')],
  [
    'restore-version',
    'before:restore-version',
    async (v) =>
      expect((await v.s.stat(v.at('a/b/old.bin'))).checksums?.sha1).toBe(sha1(Buffer.alloc(1000, 2))),
  ],
  [
    'restore-version',
    'after:restore-version-aside',
    // The current content was moved aside, the version never moved in: undone, current is back.
    async (v) => {
      expect((await v.s.stat(v.at('a/b/old.bin'))).checksums?.sha1).toBe(sha1(Buffer.alloc(1000, 2)));
      expect((await v.s.listVersions(v.at('a/b/old.bin'))).length).toBe(1);
    },
  ],
  // Metadata and a time changed as one (a PROPPATCH): none of it before the record is written...
  [
    'properties',
    'before:properties',
    async (v) => {
      const info = await v.s.stat(v.at('a/b/old.bin'), { metadataKeys: '*' });
      expect(info.metadata).toEqual({ gone: 'soon' });
      expect(info.mtime).not.toBe(1_500_000_000_000);
    },
  ],
  // ...all of it after: the record holds the time, and recovery sets it on the file.
  [
    'properties',
    'after:properties',
    async (v) => {
      const info = await v.s.stat(v.at('a/b/old.bin'), { metadataKeys: '*' });
      expect(info.metadata).toEqual({ added: 'yes' });
      expect(info.mtime).toBe(1_500_000_000_000);
      expect(info.checksums?.sha1).toBe(sha1(Buffer.alloc(1000, 2)));
    },
  ],
  [
    'grant',
    'before:grant',
    async (v) => expect((await v.s.listGrants(v.at('a'))).map((g) => g.grantee.id)).toEqual(['first']),
  ],
  [
    'grant',
    'after:grant',
    // The grant list was written whole and the record flag set; the grants version was not bumped
    // yet: recovery bumps it (checked below) so other processes drop their cached chains.
    async (v) =>
      expect((await v.s.listGrants(v.at('a'))).map((g) => g.grantee.id).sort()).toEqual(['first', 'second']),
  ],
];

async function grantsVersion(spaceRoot: string): Promise<number> {
  const raw = await xattr.getAttribute(spaceRoot, 'user.stowage.v').catch(() => undefined);
  return raw ? Number(raw.toString()) : 0;
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}

describe('posix: kill -9 in the middle of an operation', () => {
  beforeAll(() => {
    // The child runs the built package.
    const built = path.join(path.dirname(child), '../../dist/src/drivers/posix/index.js');
    if (!existsSync(built)) throw new Error('run `npm run build` first (npm test does)');
  });

  it.each(cases)('%s killed at %s leaves a consistent tree and no litter', async (scenario, point, check) => {
    const { root, spaceRoot, rootEtag } = await fixture();
    const r = await run(root, scenario, point);
    expect(r.signal, r.out).toBe('SIGKILL');
    // Where the dead process had a temp file, a staged copy or a tree moved aside, it is still there.
    // (Deletes and replaced folders go to the trash now: that is content, not litter.)
    const leftBehind = ['stream', 'before:write', 'before:copy'];
    if (leftBehind.includes(point)) expect(await litter(spaceRoot)).not.toEqual([]);
    const gvAtCrash = await grantsVersion(spaceRoot);
    const v = await reopen(root);
    try {
      await check(v);
      await v.driver.idle();
      expect(await litter(spaceRoot)).toEqual([]);
      expect(await treeSizeErrors(spaceRoot)).toEqual([]);
      expect(await usageErrors(spaceRoot)).toEqual([]);
      // Every node still has a record and ids are unique.
      const nodes = await walkSpace(spaceRoot);
      expect(nodes.every((n) => n.rec?.id)).toBe(true);
      // No live node carries trash facts (a restore finished by recovery drops them).
      expect(nodes.filter((n) => n.rec?.tr).map((n) => n.rel)).toEqual([]);
      expect(new Set(nodes.map((n) => n.rec!.id)).size).toBe(nodes.length);
      // No record holds a time still to be set (or one of a move that never happened).
      expect(nodes.filter((n) => n.rec?.pm !== undefined).map((n) => n.rel)).toEqual([]);
      // Where the content changed before the crash, the root's etag says so after repair.
      if (['after:write', 'after:delete', 'after:move', 'after:restore'].includes(point)) {
        expect((await v.s.stat(v.at(''))).etag).not.toBe(rootEtag);
      }
      // The storage keeps working.
      await v.s.write(v.at('a/after.txt'), 'ok');
      expect(await treeSizeErrors(spaceRoot)).toEqual([]);
      // Recovering a dead commit makes every process drop its cached grant chains.
      if (point.startsWith('after:')) expect(await grantsVersion(spaceRoot)).toBeGreaterThan(gvAtCrash);
    } finally {
      await v.s.close();
    }
    // Closed: not even a liveness file of the dead or of the checking process remains.
    expect(await fs.readdir(path.join(spaceRoot, '.stowage/tmp'))).toEqual([]);
  });
});
