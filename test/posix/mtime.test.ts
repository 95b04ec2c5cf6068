/**
 * Setting a file's mtime on the POSIX driver, beyond the conformance suite: the real inode gets
 * the time, the record moves its checksums along (so neither the observer nor fsck takes Stowage's
 * own change for one made around it), and a time the filesystem cannot hold is refused before the
 * file is touched.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as xattr from 'fs-xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import { type Space, type StorageEvent, StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

let driver: PosixDriver;
let s: StorageProvider;
let root: string;

beforeAll(async () => {
  root = await tempRoot('mtime');
  driver = await createPosixDriver({ root });
  s = new StorageProvider({ drivers: driver });
});
afterAll(() => s?.close());

async function space(name: string): Promise<{ sp: Space; dir: string }> {
  const sp = await s.createSpace({ type: 'project', name });
  return { sp, dir: await driver.spacePath(sp.id) };
}

/** Whether a file on this filesystem keeps `ms` as its mtime (ext4 clamps to 1901-2446), set by Node. */
async function fsHolds(dir: string, ms: number): Promise<boolean> {
  const f = path.join(dir, `.probe-${Math.random()}`);
  await fsp.writeFile(f, '');
  try {
    await fsp.utimes(f, ms / 1000, ms / 1000);
    return Math.abs((await fsp.stat(f)).mtimeMs - ms) < 1000;
  } finally {
    await fsp.unlink(f);
  }
}

describe('posix: setting a file’s mtime', () => {
  it('sets the inode’s time; the observer sees no change around Stowage and fsck finds nothing', async () => {
    const { sp, dir } = await space('touched');
    const at = (p: string) => ({ space: sp.id, path: p });
    await s.mkdir(at('d'));
    await s.write(at('d/f.bin'), Buffer.alloc(100_000, 3));
    const events: StorageEvent[] = [];
    s.events.on((e) => events.push(e));
    const obs = s.watch({ rescanIntervalMs: 0 });
    await obs.ready;
    try {
      const when = Date.UTC(1985, 5, 1, 12, 0, 0, 250); // with milliseconds
      const info = await s.setMtime(at('d/f.bin'), when);
      expect(info.mtime).toBe(when);
      expect((await fsp.stat(path.join(dir, 'd/f.bin'))).mtimeMs).toBe(when);
      await obs.idle();
      await new Promise((r) => setTimeout(r, 300));
      await obs.idle();
      expect(events.map((e) => [e.type, e.origin, e.path])).toEqual([
        ['metadata.changed', 'api', '/d/f.bin'],
      ]);
      expect(events[0]!.etag).toBe(info.etag);
      const now = await s.stat(at('d/f.bin'), { fields: ['checksums'] });
      expect(now.etag).toBe(info.etag);
      expect(now.checksums?.sha1).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      await obs.close();
    }
    const [report] = await driver.fsck({ space: sp.id });
    expect(report!.problems).toEqual({});
  });

  it('does not carry checksums over to the new time when the file was rewritten around Stowage meanwhile', async () => {
    const { sp, dir } = await space('race');
    const at = { space: sp.id, path: 'f.txt' };
    await s.write(at, 'AAAA');
    const abs = path.join(dir, 'f.txt');
    // Another process rewrites the file in place (same size) after the driver's lstat, just
    // before it opens the file to set the time (Stowage's lock does not hold others back).
    const open = fsp.open;
    (fsp as { open: typeof fsp.open }).open = (async (
      p: fs.PathLike,
      flags?: string | number,
      mode?: fs.Mode,
    ) => {
      if (p === abs && typeof flags === 'number' && flags & fs.constants.O_NOFOLLOW)
        fs.writeFileSync(abs, 'BBBB', { flag: 'r+' });
      return open(p, flags, mode);
    }) as typeof fsp.open;
    try {
      await s.setMtime(at, Date.UTC(2001, 0, 1));
    } finally {
      (fsp as { open: typeof fsp.open }).open = open;
    }
    const real = createHash('sha1').update('BBBB').digest('hex');
    const shown = (await s.stat(at, { fields: ['checksums'] })).checksums?.sha1;
    expect([undefined, real]).toContain(shown);
    const [report] = await driver.fsck({ space: sp.id, checksums: true, repair: true });
    expect(report!.repaired || Object.keys(report!.problems).length === 0).toBe(true);
    expect((await s.stat(at, { fields: ['checksums'] })).checksums?.sha1).toBe(real);
  });

  it('refuses a time the filesystem cannot hold, before touching the file (or sets it where it can)', async () => {
    const { sp, dir } = await space('far');
    const at = { space: sp.id, path: 'far.txt' };
    await s.write(at, 'far');
    const before = await s.stat(at, { fields: ['checksums'] });
    const inode = await fsp.stat(path.join(dir, 'far.txt'));
    // (Node's utimes cannot set a time before 1970 at all: it lands on now.)
    for (const when of [Date.UTC(2500, 0, 1), Date.UTC(1800, 0, 1), -1500]) {
      if (await fsHolds(dir, when)) {
        expect((await s.setMtime(at, when)).mtime).toBe(when);
        await s.setMtime(at, before.mtime);
        continue;
      }
      await expect(s.setMtime(at, when)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await s.stat(at, { fields: ['checksums'] })).toEqual(before);
      expect((await fsp.stat(path.join(dir, 'far.txt'))).ctimeMs).toBe(inode.ctimeMs);
    }
    // No scratch file is left behind.
    expect(await fsp.readdir(path.join(dir, '.stowage', 'tmp')).catch(() => [])).toEqual(
      expect.not.arrayContaining([expect.stringMatching(/^up-/)]),
    );
  });

  it('moves and copies a file with the time it lands with: a time the filesystem cannot hold is refused before anything moves, or left out on request', async () => {
    const { sp, dir } = await space('landing');
    const at = (p: string) => ({ space: sp.id, path: p });
    await s.write(at('f.bin'), Buffer.alloc(50_000, 5));
    const was = await s.stat(at('f.bin'), { fields: ['checksums'] });
    // A time it can hold: set on the inode, and the checksums move along with it (confirmed for
    // the new time in the record, not left to be computed again).
    const when = Date.UTC(1999, 0, 2, 3, 4, 5, 678);
    const moved = await s.move(at('f.bin'), at('g.bin'), { mtime: when });
    expect((await fsp.stat(path.join(dir, 'g.bin'))).mtimeMs).toBe(when);
    const rec = JSON.parse((await xattr.getAttribute(path.join(dir, 'g.bin'), 'user.stowage.n')).toString());
    expect([rec.ckm, rec.ck?.sha1, rec.pm]).toEqual([when, was.checksums?.sha1, undefined]);
    expect(moved.mtime).toBe(when);
    const far = Date.UTC(2500, 0, 1);
    if (await fsHolds(dir, far)) return; // (a filesystem that holds it: nothing to refuse)
    await expect(s.move(at('g.bin'), at('h.bin'), { mtime: far })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      reason: 'time-out-of-range',
    });
    await expect(s.copy(at('g.bin'), at('h.bin'), { mtime: far })).rejects.toMatchObject({
      reason: 'time-out-of-range',
    });
    expect((await fsp.readdir(dir)).filter((n) => !n.startsWith('.')).sort()).toEqual(['g.bin']);
    // On request, without the time.
    expect((await s.copy(at('g.bin'), at('c.bin'), { mtime: far, mtimeBestEffort: true })).mtime).toBe(when);
    expect((await s.move(at('g.bin'), at('h.bin'), { mtime: far, mtimeBestEffort: true })).mtime).toBe(when);
    expect((await fsp.stat(path.join(dir, 'h.bin'))).mtimeMs).toBe(when);
  });

  it('changes metadata and the time as one (changeMetadata): all of it, or none when a part is refused', async () => {
    const { sp, dir } = await space('as-one');
    const at = { space: sp.id, path: 'one.txt' };
    await s.write(at, 'one');
    await s.setMetadata(at, { old: 'x' });
    const before = await s.stat(at, { fields: ['checksums'] });
    await s.changeMetadata(at, { set: { k: 'v' }, unset: ['old'], mtime: 1_400_000_000_000 });
    const after = await s.stat(at, { fields: ['checksums'], metadataKeys: '*' });
    expect(after.metadata).toEqual({ k: 'v' });
    expect(after.mtime).toBe(1_400_000_000_000);
    expect((await fsp.stat(path.join(dir, 'one.txt'))).mtimeMs).toBe(1_400_000_000_000);
    // The checksums go along with the time (the file's bytes did not change).
    expect(after.checksums).toEqual(before.checksums);
    // A folder has no settable time: refused with the metadata left as it was.
    await s.mkdir({ space: sp.id, path: 'fold' });
    await expect(
      s.changeMetadata({ space: sp.id, path: 'fold' }, { set: { k: 'v' }, mtime: 1_400_000_000_000 }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'is-folder' });
    expect((await s.stat({ space: sp.id, path: 'fold' }, { metadataKeys: '*' })).metadata ?? {}).toEqual({});
    // Metadata over the bound: refused with the time left as it was.
    await expect(
      s.changeMetadata(at, { set: { big: 'x'.repeat(65_537) }, mtime: 1_300_000_000_000 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await s.stat(at)).mtime).toBe(1_400_000_000_000);
  });
});
