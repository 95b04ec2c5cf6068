/**
 * The ownCloud and Nextcloud desktop sync clients (owncloudcmd, nextcloudcmd) against the WebDAV
 * door: a first sync both ways, then edits, a rename and deletes on each side, and a file over
 * 10 MB (uploaded in chunks). Every file is compared by content hash on both sides.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../helpers/tmp.js';
import { type DavEnv, localTree, serverFiles, startDav, tool } from './server.js';

const clients = {
  owncloudcmd: await tool('owncloudcmd'),
  nextcloudcmd: await tool('nextcloudcmd'),
};
let env: DavEnv;

beforeAll(async () => {
  env = await startDav([
    { id: 'u-oc', username: 'oc' },
    { id: 'u-nc', username: 'nc' },
  ]);
});
afterAll(() => env?.close());

function sync(client: string, user: string, dir: string, exclude: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      client,
      ['--non-interactive', '--exclude', exclude, '-u', user, '-p', `pw-${user}`, dir, env.url],
      { env: { ...process.env, QT_QPA_PLATFORM: 'offscreen' } },
    );
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.once('error', reject);
    p.once('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${client} exited ${code}:\n${out.slice(-4000)}`)),
    );
  });
}

/** Hashes of the files of a local folder (the clients' own journal files left out). */
const localFiles = (dir: string) => localTree(dir, (n) => n.startsWith('.sync') || n.startsWith('._sync'));

/** Hashes of the files of the user's personal space, read through the provider. */
async function serverTree(user: string): Promise<Record<string, string>> {
  const files = await serverFiles(await env.provider.as(user));
  return Object.fromEntries(Object.entries(files).map(([p, f]) => [p, f.sha1]));
}

describe.each([
  ['owncloudcmd', 'oc'],
  ['nextcloudcmd', 'nc'],
] as const)('%s', (client, user) => {
  it.skipIf(!clients[client])(
    'syncs both ways, resyncs edits, renames and deletes, and chunks a big file',
    async () => {
      const dir = await tempRoot(`${client}-local`);
      const exclude = path.join(await tempRoot(`${client}-cfg`), 'exclude.lst');
      await fsp.writeFile(exclude, '');
      const session = await env.provider.as(user);
      const space = await session.personalSpace();
      // Before the first sync: files on both sides.
      await fsp.mkdir(path.join(dir, 'local folder'));
      await fsp.writeFile(path.join(dir, 'local folder', 'notes – ü.txt'), 'local notes\n');
      await fsp.writeFile(path.join(dir, 'big.bin'), randomBytes(12 * 1024 * 1024 + 123));
      await session.mkdir({ space: space.id, path: 'server folder' });
      await session.write({ space: space.id, path: 'server folder/report #1.txt' }, 'from the server\n');
      await session.write({ space: space.id, path: 'root.txt' }, 'root file\n');
      // Characters hrefs percent-encode that some servers leave as they are, both ways (not `*`:
      // owncloudcmd skips names with characters Windows forbids).
      await fsp.mkdir(path.join(dir, "sign $ (1) ! ' ; = @ , + &"));
      await fsp.writeFile(path.join(dir, "sign $ (1) ! ' ; = @ , + &", 'a&b (2).txt'), 'signs\n');
      await session.mkdir({ space: space.id, path: 'srv $&(x)' });
      await session.write({ space: space.id, path: 'srv $&(x)/c;d=e@f.txt' }, 'signs too\n');

      const first = await sync(client, user, dir, exclude);
      // The big file went up in chunks: chunking NG (nextcloudcmd), or TUS in 10 MB requests, which
      // owncloudcmd prefers when the capabilities offer it (a POST, then a PATCH for the rest).
      expect(first).toMatch(/PropagateUploadFileNG|slotChunkFinished[^\n]*big\.bin[^\n]*PATCH/);
      expect(await localFiles(dir)).toEqual(await serverTree(user));
      expect(Object.keys(await localFiles(dir)).sort()).toEqual(
        [
          'big.bin',
          'local folder/notes – ü.txt',
          'root.txt',
          'server folder/report #1.txt',
          "sign $ (1) ! ' ; = @ , + &/a&b (2).txt",
          'srv $&(x)/c;d=e@f.txt',
        ].sort(),
      );

      const rootId = (await session.stat({ space: space.id, path: 'root.txt' })).id;
      // Changes on both sides: an edit and a rename locally, an edit and a delete on the server.
      await fsp.appendFile(path.join(dir, 'local folder', 'notes – ü.txt'), 'more\n');
      await fsp.rename(path.join(dir, 'root.txt'), path.join(dir, 'renamed root.txt'));
      await session.write({ space: space.id, path: 'server folder/report #1.txt' }, 'edited on the server\n');
      await session.delete({ space: space.id, path: 'big.bin' });
      await sync(client, user, dir, exclude);
      const local = await localFiles(dir);
      expect(local).toEqual(await serverTree(user));
      expect(Object.keys(local).sort()).toEqual(
        [
          'local folder/notes – ü.txt',
          'renamed root.txt',
          'server folder/report #1.txt',
          "sign $ (1) ! ' ; = @ , + &/a&b (2).txt",
          'srv $&(x)/c;d=e@f.txt',
        ].sort(),
      );
      expect(await fsp.readFile(path.join(dir, 'server folder', 'report #1.txt'), 'utf8')).toBe(
        'edited on the server\n',
      );
      // The rename kept the file's id on the server (a MOVE, not a delete and an upload).
      const moved = await session.stat({ space: space.id, path: 'renamed root.txt' });
      expect(moved.id).toEqual(rootId);
    },
    180_000,
  );
});
