/**
 * davfs2, the Linux kernel mount of a WebDAV share, against the WebDAV door: programs that know
 * nothing of WebDAV (cp, mv, rm, sha256sum) work on the mounted tree, and what they did is what
 * the storage holds, by content hash, with ids and checksums; changes made on the server show in
 * the mount. davfs2 locks every file it writes and submits the tokens of locked members when it
 * renames or removes their folder.
 *
 * Needs root (mount) and FUSE (/dev/fuse): the test is skipped, saying so, where either is missing.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';
import { AWKWARD_NAMES, type DavEnv, localTree, run, serverFiles, startDav, tool } from './server.js';

const hasDavfs = await tool('mount.davfs');
const canMount = process.getuid?.() === 0 && existsSync('/dev/fuse');
if (hasDavfs && !canMount) console.warn('davfs2 test skipped: mounting needs root and /dev/fuse');

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** What a sync of `want` (path -> sha1) must leave on the server: those files, whole, checksums right. */
const stored = (want: Map<string, string>) =>
  Object.fromEntries([...want].map(([n, h]) => [n, { sha1: h, reported: h }]));

describe.skipIf(!hasDavfs || !canMount)('davfs2', () => {
  let env: DavEnv;
  let session: StorageProvider;
  let base: string;
  let mnt: string;
  let conf: string;
  let url: string;

  const mounted = () => readFileSync('/proc/mounts', 'utf8').includes(` ${mnt} `);
  const mount = () => run('mount', ['-t', 'davfs', '-o', `conf=${conf}`, url, mnt]);
  // Unmounting waits until davfs2 has uploaded everything written through the mount.
  const umount = () => run('umount', [mnt]);

  beforeAll(async () => {
    env = await startDav([{ id: 'u-dv', username: 'dv' }]);
    session = await env.provider.as('u-dv');
    url = `${env.url}/remote.php/webdav/`;
    // davfs2 works as its own user: its cache must be a folder that user may enter and write, so
    // not under the test run's (private) folder.
    base = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-davfs2-'));
    await fsp.chmod(base, 0o755);
    const cache = path.join(base, 'cache');
    mnt = path.join(base, 'mnt');
    await fsp.mkdir(cache);
    await fsp.mkdir(mnt);
    spawnSync('chown', ['root:davfs2', cache]);
    await fsp.chmod(cache, 0o775);
    const secrets = path.join(base, 'secrets');
    await fsp.writeFile(secrets, `${url} dv pw-dv\n`, { mode: 0o600 });
    conf = path.join(base, 'davfs2.conf');
    await fsp.writeFile(
      conf,
      [
        `secrets ${secrets}`,
        `cache_dir ${cache}`,
        'use_locks 1',
        // Uploads wait 10 s after a file is closed, holding the file locked meanwhile (the
        // default, kept: a folder renamed right after a write has locked members). Folders and
        // files are looked at on the server again after a second (default: a minute).
        'dir_refresh 1',
        'file_refresh 1',
        // Linux 6.16 and later refuse davfs2 1.6's default 16 KiB read buffer for folders (EINVAL).
        'buf_size 64',
        '',
      ].join('\n'),
    );
  });

  afterAll(async () => {
    if (mnt && mounted()) await umount().catch(() => run('umount', ['-l', mnt]));
    await env?.close();
    // Only once nothing is mounted there: removing through a mount would remove on the server.
    if (base && !mounted()) await fsp.rm(base, { recursive: true, force: true });
  });

  it('works as a mounted folder: cp, mv, rm, edits, a 12 MiB file, and changes made on the server', async () => {
    const local = await tempRoot('davfs2-src');
    for (const [i, n] of AWKWARD_NAMES.entries()) {
      await fsp.mkdir(path.dirname(path.join(local, n)), { recursive: true });
      await fsp.writeFile(path.join(local, n), `content ${i} of ${n}\n`.repeat(i * 300 + 1));
    }
    await fsp.writeFile(path.join(local, 'big.bin'), randomBytes(12 << 20));
    const want = new Map<string, string>();
    for (const n of [...AWKWARD_NAMES, 'big.bin']) want.set(n, sha1(await fsp.readFile(path.join(local, n))));

    await mount();
    await run('cp', ['-r', '.', mnt], { cwd: local });
    await umount();
    expect(await serverFiles(session)).toEqual(stored(want));
    // The human-readable tree on disk, ids in xattrs (checked by the other tests): the bytes are there.
    const sp = await session.personalSpace();
    const onDisk = await env.driver.spacePath(sp.id);
    expect(sha1(await fsp.readFile(path.join(onDisk, 'folder one/inner #2/deep & deeper.bin')))).toBe(
      want.get('folder one/inner #2/deep & deeper.bin'),
    );

    const deepId = (await session.stat({ space: sp.id, path: 'folder one/inner #2/deep & deeper.bin' })).id;

    // Changed on the server while unmounted: seen in the mount, by content.
    await session.write({ space: sp.id, path: 'from server.txt' }, 'written on the server\n');
    await mount();
    const sums = await run('sha1sum', ['from server.txt', 'big.bin', 'ünïcødé – 日本.txt'], {
      cwd: mnt,
      env: { LC_ALL: 'C.UTF-8' },
    });
    expect(sums).toContain(`${sha1(Buffer.from('written on the server\n'))}  from server.txt`);
    expect(sums).toContain(`${want.get('big.bin')}  big.bin`);
    expect(sums).toContain(`${want.get('ünïcødé – 日本.txt')}  ünïcødé – 日本.txt`);

    // Rename a folder whose file davfs2 still holds locked (written just before), move a file into
    // it, edit one, remove one and a folder.
    await run(
      'sh',
      [
        '-ec',
        [
          "printf 'edited\\n' >> 'folder one/inner #2/deep & deeper.bin'",
          "printf 'new\\n' > 'folder one/new.txt'",
          "mv 'folder one' 'folder two'",
          "mv 'with space.txt' 'folder two/'",
          "printf 'appended\\n' >> 'hash#tag.txt'",
          "rm 'a&b.txt'",
          "mkdir 'gone' && printf x > 'gone/x' && rm -r 'gone'",
        ].join('\n'),
      ],
      { cwd: mnt },
    );
    await umount();

    const deep = path.join(local, 'folder one/inner #2/deep & deeper.bin');
    await fsp.appendFile(deep, 'edited\n');
    await fsp.writeFile(path.join(local, 'folder one/new.txt'), 'new\n');
    await fsp.rename(path.join(local, 'folder one'), path.join(local, 'folder two'));
    await fsp.rename(path.join(local, 'with space.txt'), path.join(local, 'folder two/with space.txt'));
    await fsp.appendFile(path.join(local, 'hash#tag.txt'), 'appended\n');
    await fsp.rm(path.join(local, 'a&b.txt'));
    await fsp.writeFile(path.join(local, 'from server.txt'), 'written on the server\n');
    const after = new Map(Object.entries(await localTree(local)));
    const last = await serverFiles(session);
    expect(last).toEqual(stored(after));
    // The file kept its id through its edit and its folder's rename.
    expect((await session.stat({ space: sp.id, path: 'folder two/inner #2/deep & deeper.bin' })).id).toEqual(
      deepId,
    );
    // Nothing davfs2 locked is left locked once it is unmounted.
    for (const n of Object.keys(last))
      expect((await session.stat({ space: sp.id, path: n })).lock, n).toBeUndefined();
  }, 180_000);
});
