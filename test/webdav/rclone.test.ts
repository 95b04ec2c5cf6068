/**
 * rclone's webdav backend (vendors other, owncloud, nextcloud) against the WebDAV door: a tree of
 * awkward names goes up, is listed, checked by hash, comes back down, is moved and deleted.
 */
import { spawnSync } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../helpers/tmp.js';
import { AWKWARD_NAMES, type DavEnv, run, startDav, tool } from './server.js';

const hasRclone = await tool('rclone');
let env: DavEnv;
// rclone rewrites its config file (temp + rename): give it one of its own, never /dev/null.
let config: string;

beforeAll(async () => {
  env = await startDav([{ id: 'u-rc', username: 'rc' }]);
  config = path.join(await tempRoot('rclone-config'), 'rclone.conf');
  await fsp.writeFile(config, '');
});
afterAll(() => env?.close());

const NAMES = AWKWARD_NAMES;

const obscured = hasRclone
  ? spawnSync('rclone', ['obscure', 'pw-rc'], { encoding: 'utf8' }).stdout.trim()
  : '';

/** Run rclone (asynchronously: the server answers from this process). */
function rclone(vendor: string, url: string, ...args: string[]): Promise<string> {
  return run('rclone', [...args, '--config', config, '--low-level-retries', '1', '--retries', '1'], {
    env: {
      RCLONE_CONFIG_DAV_TYPE: 'webdav',
      RCLONE_CONFIG_DAV_URL: url,
      RCLONE_CONFIG_DAV_VENDOR: vendor,
      RCLONE_CONFIG_DAV_USER: 'rc',
      RCLONE_CONFIG_DAV_PASS: obscured,
    },
  });
}

describe.skipIf(!hasRclone)('rclone', () => {
  it.each([
    ['other', '/remote.php/webdav/'],
    ['owncloud', '/remote.php/webdav/'],
    ['nextcloud', '/remote.php/dav/files/rc/'],
  ])(
    'syncs a tree of awkward names both ways (vendor %s)',
    async (vendor, endpoint) => {
      const url = env.url + endpoint;
      const local = await tempRoot('rclone-src');
      for (const [i, n] of NAMES.entries()) {
        await fsp.mkdir(path.dirname(path.join(local, n)), { recursive: true });
        await fsp.writeFile(path.join(local, n), `content ${i} of ${n}\n`.repeat(i * 300 + 1));
      }
      const remote = `dav:${vendor}`;
      await rclone(vendor, url, 'copy', local, remote);
      const listed = (await rclone(vendor, url, 'lsf', '-R', '--files-only', remote))
        .trim()
        .split('\n')
        .sort();
      expect(listed).toEqual([...NAMES].sort());
      // check compares sizes and, where the vendor exposes them, hashes (owncloud: SHA1 and MD5).
      await rclone(vendor, url, 'check', local, remote);
      if (vendor !== 'other') {
        const sums = await rclone(vendor, url, 'sha1sum', remote);
        expect(sums.trim().split('\n')).toHaveLength(NAMES.length);
      }
      const back = await tempRoot('rclone-back');
      await rclone(vendor, url, 'copy', remote, back);
      for (const n of NAMES) {
        expect(await fsp.readFile(path.join(back, n), 'utf8')).toBe(
          await fsp.readFile(path.join(local, n), 'utf8'),
        );
      }
      // Move, delete, and compare again.
      await rclone(vendor, url, 'moveto', `${remote}/plain.txt`, `${remote}/folder one/moved.txt`);
      await fsp.rename(path.join(local, 'plain.txt'), path.join(local, 'folder one/moved.txt'));
      if (vendor !== 'other') {
        // The time the upload gave it (X-OC-Mtime), kept by the server-side move that carried it.
        const [moved] = JSON.parse(await rclone(vendor, url, 'lsjson', `${remote}/folder one/moved.txt`));
        const was = (await fsp.stat(path.join(local, 'folder one/moved.txt'))).mtimeMs;
        expect(Math.floor(Date.parse(moved.ModTime) / 1000)).toBe(Math.floor(was / 1000));
      }
      await rclone(vendor, url, 'deletefile', `${remote}/a&b.txt`);
      await fsp.rm(path.join(local, 'a&b.txt'));
      await rclone(vendor, url, 'check', local, remote);
      await rclone(vendor, url, 'purge', remote);
      expect((await rclone(vendor, url, 'lsf', 'dav:')).trim().split('\n')).not.toContain(`${vendor}/`);
    },
    120_000,
  );
});
