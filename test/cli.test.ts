import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { StaticIdentitySource } from '../src/index.js';
import { tempRoot } from './helpers/tmp.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '../dist/src/cli/main.js');
let root: string;

function stowage(args: string[], input?: Buffer | string) {
  const r = spawnSync(process.execPath, [cli, '--root', root, ...args], { input, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, out: r.stdout.toString(), err: r.stderr.toString() };
}

beforeAll(async () => {
  root = await tempRoot('cli');
  expect(stowage(['space', 'create', 'project', 'Data Set']).code).toBe(0);
});

describe('stowage CLI', () => {
  it('runs the quickstart twice (idempotent)', () => {
    const a = stowage(['quickstart']);
    expect(a.code, a.err).toBe(0);
    expect(a.out).toContain('project/quickstart');
    // (the CLI acts as the system: it says who sees the space over WebDAV)
    expect(a.out).toContain('quickstart --owner admin');
    expect(a.out).toMatch(/^path: +\/project\/quickstart\/docs\/hello\.txt$/m);
    expect(stowage(['quickstart']).code).toBe(0);
  });

  it('puts from stdin and gets to stdout byte-exact, with a range', () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    const put = stowage(['--json', 'put', '-', '/project/data-set/blob.bin'], data);
    expect(put.code, put.err).toBe(0);
    const info = JSON.parse(put.out);
    expect(info.size).toBe(200_000);
    expect(info.checksums.sha1).toBe(createHash('sha1').update(data).digest('hex'));
    const got = stowage(['get', '/project/data-set/blob.bin']);
    expect(Buffer.compare(got.stdout, data)).toBe(0);
    expect(
      Buffer.compare(
        stowage(['get', '/project/data-set/blob.bin', '--range', '10-19']).stdout,
        data.subarray(10, 20),
      ),
    ).toBe(0);
    expect(stowage(['get', '/project/data-set/blob.bin', '--range', '300000-']).code).toBe(2);
  });

  it('keeps the local mtime on put, and --mtime overrides it', async () => {
    const local = path.join(root, 'local.txt');
    await fs.writeFile(local, 'x');
    await fs.utimes(local, 1_000_000, 1_000_000);
    expect(JSON.parse(stowage(['--json', 'put', local, '/project/data-set/local.txt']).out).mtime).toBe(
      '1970-01-12T13:46:40.000Z',
    );
    expect(
      JSON.parse(
        stowage(['--json', 'put', local, '/project/data-set/local.txt', '--mtime', '1700000000']).out,
      ).mtime,
    ).toBe('2023-11-14T22:13:20.000Z');
  });

  it('lists as NDJSON, moves keeping ids, copies with new ids', () => {
    expect(stowage(['mkdir', '-p', '/project/data-set/a/b']).code).toBe(0);
    stowage(['put', '-', '/project/data-set/a/b/f.txt'], 'f');
    const before = JSON.parse(stowage(['--json', 'stat', '/project/data-set/a/b/f.txt']).out);
    expect(stowage(['mv', '/project/data-set/a/b/f.txt', '/project/data-set/a/g.txt']).code).toBe(0);
    const after = JSON.parse(stowage(['--json', 'stat', before.id]).out);
    expect(after.path).toBe('/a/g.txt');
    expect(stowage(['cp', '/project/data-set/a', '/project/data-set/a2']).code).toBe(0);
    const lines = stowage(['--json', 'ls', '/project/data-set/a2'])
      .out.trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.name).sort()).toEqual(['b', 'g.txt']);
    expect(lines.find((l) => l.name === 'g.txt').id).not.toBe(before.id);
  });

  it('exits with stable codes and clear messages', () => {
    const cases: [string[], number, RegExp][] = [
      [['stat', '/project/data-set/missing'], 3, /NOT_FOUND/],
      [['mkdir', '/project/data-set/a'], 4, /ALREADY_EXISTS/],
      [['put', '-', '/project/data-set/no/such/dir.txt'], 6, /parent-missing/],
      [['put', '-', '/project/data-set/a'], 6, /is-folder/],
      [['stat', '/project/data-set/../../etc/passwd'], 2, /invalid-path/],
      [['put', '-', '/project/data-set/bad.txt', '--checksum', 'sha1:00'], 2, /checksum-mismatch/],
      [['put', '-', '/project/data-set/a2/g.txt', '--if-none-match'], 6, /condition/],
      [['stat', '/project/no-such-space/x'], 3, /not found/],
      [['--bogus-option'], 2, /Unknown option/],
      [['frobnicate'], 2, /unknown command/],
      [['mv', '/project/data-set/a', '/project/data-set/a/inside'], 2, /into-itself/],
      [['trash'], 2, /trash takes ls, restore or purge/],
      [['versions', 'lsx', '/project/data-set/a'], 2, /versions takes ls, get or restore/],
      [['grants'], 2, /grants takes ls, set, deny or rm/],
      [['grants', 'set', '/project/data-set/a', 'user:x', 'boss'], 2, /"boss" is neither a role \(viewer, /],
      [['put', '-', '/project/data-set/t.txt', '--mtime', 'yesterday'], 2, /ISO 8601/],
    ];
    for (const [args, code, msg] of cases) {
      const r = stowage(args, 'body');
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(code);
      expect(r.err).toMatch(msg);
    }
    const j = stowage(['--json', 'stat', '/project/data-set/missing']);
    expect(JSON.parse(j.err).error.code).toBe('NOT_FOUND');
  });

  it('never sets up a storage in a folder for a command that only reads, nor a space twice', async () => {
    const folder = await tempRoot('not-a-root');
    await fs.writeFile(path.join(folder, 'precious.txt'), 'mine');
    for (const args of [['space', 'ls'], ['ls', '/project/x'], ['fsck']]) {
      const r = spawnSync(process.execPath, [cli, '--root', folder, ...args]);
      expect(r.status, args.join(' ')).toBe(3);
      expect(r.stderr.toString()).toMatch(/is not a Stowage storage/);
    }
    expect(await fs.readdir(folder)).toEqual(['precious.txt']);
    // Running the same `space create` twice fails the second time instead of making data-set-2.
    const again = stowage(['space', 'create', 'project', 'Data Set']);
    expect(again.code).toBe(4);
    expect(again.err).toMatch(/already exists/);
    const custom = stowage(['space', 'create', 'project', 'Data Set', '--alias', 'project/data-set-b']);
    expect(custom.code, custom.err).toBe(0);
    expect(custom.out).toContain('project/data-set-b');
  });

  it('passwd gives a stored user a new password, printed once, and only its hash kept', async () => {
    const file = path.join(root, '.stowage', 'users.json');
    await fs.writeFile(
      file,
      JSON.stringify({ users: [{ id: 'admin', username: 'admin', password: 'old' }] }),
    );
    const r = stowage(['--json', 'passwd', 'admin']);
    expect(r.code, r.err).toBe(0);
    const { password } = JSON.parse(r.out);
    expect(password).toMatch(/^[\w-]{16}$/);
    const kept = await fs.readFile(file, 'utf8');
    expect(kept).not.toContain(password);
    expect(kept).not.toContain('"old"');
    const ids = await StaticIdentitySource.fromFile(file);
    expect(await ids.authenticate('admin', password)).toBeDefined();
    expect(await ids.authenticate('admin', 'old')).toBeUndefined();
    expect(stowage(['passwd', 'nobody']).code).toBe(3);
    await fs.rm(file);
  });

  it('prints usage with --help and exits 0', () => {
    const r = stowage(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Exit status');
  });

  it('fsck finds damage made on disk and repairs it', async () => {
    expect(stowage(['space', 'create', 'project', 'fsck']).code).toBe(0);
    for (const f of ['x/1', 'x/2', 'y/3']) {
      stowage(['mkdir', '-p', `/project/fsck/${path.dirname(f)}`]);
      stowage(['put', '-', `/project/fsck/${f}`], `content ${f}`);
    }
    expect(stowage(['fsck', '--space', 'project/fsck']).code).toBe(0);
    const dir = path.join(root, 'spaces/project/fsck');
    await fs.rm(path.join(dir, '.stowage/ids'), { recursive: true });
    await fs.writeFile(path.join(dir, 'x/external.txt'), 'written around stowage');
    const statOf = (p: string) => JSON.parse(stowage(['--json', 'stat', `/project/fsck/${p}`]).out);
    const one = statOf('x/1');
    await new Promise((r) => setTimeout(r, 30));
    const copiedFrom = Date.now() - 20; // (the kernel's file times run up to a tick behind)
    execFileSync('cp', ['-a', path.join(dir, 'x'), path.join(dir, 'x-copy')]);
    const copiedTo = Date.now();
    await fs.rm(path.join(dir, 'y/3'));
    const check = stowage(['--json', 'fsck', '--space', 'project/fsck']);
    expect(check.code).toBe(6);
    const problems = JSON.parse(check.out).problems;
    expect(problems['missing-record']).toBe(2); // external.txt and its copy in x-copy
    expect(problems['duplicate-id']).toBeGreaterThanOrEqual(3);
    expect(problems['tree-size']).toBeGreaterThanOrEqual(2);
    expect(problems['index-entry']).toBeGreaterThanOrEqual(5);
    const fix = stowage(['--json', 'fsck', '--space', 'project/fsck', '--repair', '--checksums']);
    expect(fix.code, fix.err).toBe(0);
    const again = stowage(['--json', 'fsck', '--space', 'project/fsck']);
    expect(again.code, again.out).toBe(0);
    expect(JSON.parse(again.out).problems).toEqual({});
    // Of the two files that had one id, the one given a new id is a copy made by cp, and dated so.
    const [a, b] = [statOf('x/1'), statOf('x-copy/1')];
    expect(a.id).not.toEqual(b.id);
    const [kept, copy] = a.id.opaqueId === one.id.opaqueId ? [a, b] : [b, a];
    expect(kept.created).toBe(one.created);
    expect(copy.created).toBeGreaterThanOrEqual(copiedFrom);
    expect(copy.created).toBeLessThanOrEqual(copiedTo);
    const ext = JSON.parse(stowage(['--json', 'stat', '/project/fsck/x/external.txt']).out);
    expect(ext.checksums.sha1).toBe(createHash('sha1').update('written around stowage').digest('hex'));
    const used = JSON.parse(
      stowage(['--json', 'space', 'ls'])
        .out.split('\n')
        .find((l) => l.includes('project/fsck'))!,
    ).used;
    expect(used).toBe(2 * ('content x/1'.length + 'content x/2'.length + 'written around stowage'.length));
  });
});

describe('stowage CLI: trash and versions on disk', () => {
  it('fsck recounts the bytes in trash and versions after damage on disk', async () => {
    expect(stowage(['space', 'create', 'project', 'totals']).code).toBe(0);
    stowage(['put', '-', '/project/totals/f'], 'one');
    stowage(['put', '-', '/project/totals/f'], 'two!');
    stowage(['put', '-', '/project/totals/g'], 'gone');
    stowage(['rm', '/project/totals/g']);
    expect(stowage(['fsck', '--space', 'project/totals']).code).toBe(0);
    const dir = path.join(root, 'spaces/project/totals/.stowage');
    await fs.rm(path.join(dir, 'versions'), { recursive: true });
    const check = stowage(['--json', 'fsck', '--space', 'project/totals']);
    expect(check.code).toBe(6);
    expect(JSON.parse(check.out).problems['usage-totals']).toBe(1);
    expect(stowage(['fsck', '--space', 'project/totals', '--repair']).code).toBe(0);
    expect(stowage(['fsck', '--space', 'project/totals']).code).toBe(0);
    const sp = JSON.parse(
      stowage(['--json', 'space', 'ls'])
        .out.split('\n')
        .find((l) => l.includes('project/totals'))!,
    );
    expect(sp.usage).toEqual({ files: 4, trash: 4, versions: 0 });
  });
});

describe('stowage CLI: space owners', () => {
  it('makes a project space’s --owner a manager, by the id the users file gives the name', async () => {
    const users = path.join(root, 'owners.json');
    await fs.writeFile(users, JSON.stringify({ users: [{ id: 'u-41', username: 'olga', password: 'pw' }] }));
    const made = stowage(['--users', users, 'space', 'create', 'project', 'Owned', '--owner', 'olga']);
    expect(made.code, made.err).toBe(0);
    expect(stowage(['grants', 'ls', '/project/owned']).out).toContain('user:u-41  manager');
    const unknown = stowage(['--users', users, 'space', 'create', 'project', 'Nobody', '--owner', 'nobody']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown owner "nobody"');
  });

  it('makes the quickstart’s --owner a manager, also of the space a first run made', async () => {
    const users = path.join(root, 'owners.json');
    expect(stowage(['quickstart']).code).toBe(0);
    const again = stowage(['--users', users, 'quickstart', '--owner', 'olga']);
    expect(again.code, again.err).toBe(0);
    expect(again.out).not.toContain('--owner admin');
    expect(stowage(['grants', 'ls', '/project/quickstart']).out).toContain('user:u-41  manager');
    // A name the users do not know is refused (a typo), and grants nothing.
    const typo = stowage(['--users', users, 'quickstart', '--owner', 'olgaa']);
    expect(typo.code).toBe(2);
    expect(typo.err).toContain('unknown owner "olgaa"');
    expect(stowage(['grants', 'ls', '/project/quickstart']).out).not.toContain('olgaa');
  });

  it('marks a disabled space in its listing', () => {
    expect(stowage(['space', 'create', 'project', 'Paused']).code).toBe(0);
    expect(stowage(['space', 'ls']).out).not.toMatch(/project\/paused .*\(disabled\)/);
    expect(stowage(['space', 'disable', '/project/paused']).out).toMatch(/Paused {2}\(disabled\)$/m);
    expect(stowage(['space', 'ls']).out).toMatch(/project\/paused .*Paused {2}\(disabled\)$/m);
    expect(stowage(['space', 'enable', '/project/paused']).out).not.toContain('(disabled)');
  });
});

describe('stowage CLI: collaboration commands', () => {
  it('manages versions, locks, grants and the trash from scripts', async () => {
    expect(stowage(['space', 'create', 'project', 'collab']).code).toBe(0);
    stowage(['put', '-', '/project/collab/doc.txt'], 'first');
    stowage(['put', '-', '/project/collab/doc.txt'], 'second');
    const versions = stowage(['--json', 'versions', 'ls', '/project/collab/doc.txt'])
      .out.trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(versions.map((v) => v.size)).toEqual([5]);
    expect(stowage(['versions', 'get', '/project/collab/doc.txt', versions[0].key]).out).toBe('first');
    expect(stowage(['versions', 'restore', '/project/collab/doc.txt', versions[0].key]).code).toBe(0);
    expect(stowage(['get', '/project/collab/doc.txt']).out).toBe('first');

    const lockId = stowage(['lock', '/project/collab/doc.txt']).out.trim();
    expect(lockId).toMatch(/^[0-9a-f-]{36}$/);
    expect(stowage(['put', '-', '/project/collab/doc.txt'], 'x').code).toBe(7);
    expect(stowage(['put', '-', '/project/collab/doc.txt', '--lock-id', 'wrong'], 'x').code).toBe(9);
    expect(stowage(['put', '-', '/project/collab/doc.txt', '--lock-id', lockId], 'third').code).toBe(0);
    expect(stowage(['unlock', '/project/collab/doc.txt', lockId]).code).toBe(0);

    expect(stowage(['grants', 'set', '/project/collab', 'user:alice', 'editor']).code).toBe(0);
    expect(stowage(['grants', 'deny', '/project/collab/doc.txt', 'group:guests']).code).toBe(0);
    expect(stowage(['grants', 'ls', '/project/collab']).out).toContain('user:alice  editor');
    expect(stowage(['grants', 'set', '/project/collab', 'alice', 'editor']).code).toBe(2);
    expect(stowage(['grants', 'set', '/project/collab', 'user:bob', 'zz']).code).toBe(2);
    expect(stowage(['grants', 'rm', '/project/collab', 'user:alice']).code).toBe(0);
    expect(stowage(['grants', 'rm', '/project/collab', 'user:alice']).code).toBe(3);

    expect(stowage(['rm', '/project/collab/doc.txt']).code).toBe(0);
    const [item] = stowage(['--json', 'trash', 'ls', 'project/collab'])
      .out.trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(item.path).toBe('/doc.txt');
    expect(
      stowage(['trash', 'restore', 'project/collab', item.key, '--to', '/project/collab/back.txt']).code,
    ).toBe(0);
    expect(stowage(['get', '/project/collab/back.txt']).out).toBe('third');
    stowage(['rm', '/project/collab/back.txt']);
    // By age: nothing was deleted a day ago; everything more than a millisecond ago.
    stowage(['put', '-', '/project/collab/old.txt'], 'old');
    stowage(['rm', '/project/collab/old.txt']);
    expect(stowage(['trash', 'purge', 'project/collab', '--older-than', '1d']).out).toBe('purged 0 items\n');
    expect(stowage(['trash', 'ls', 'project/collab']).out.trim().split('\n')).toHaveLength(2);
    expect(stowage(['trash', 'purge', 'project/collab', 'KEY', '--older-than', '1d']).code).toBe(2);
    expect(stowage(['trash', 'purge', 'project/collab', '--older-than', '3 days']).err).toMatch(
      /--older-than takes an age with a unit: 30d, 12h, 90m or 45s \(got "3 days"\)/,
    );
    await new Promise((r) => setTimeout(r, 5));
    expect(stowage(['--json', 'trash', 'purge', 'project/collab', '--older-than', '0.001s']).out).toBe(
      '{"purged":2}\n',
    );
    expect(stowage(['trash', 'ls', 'project/collab']).out).toBe('');
    expect(stowage(['trash', 'purge', 'project/collab']).code).toBe(0);
    expect(stowage(['trash', 'ls', 'project/collab']).out).toBe('');
    expect(stowage(['space', 'rm', 'project/collab']).code).toBe(6);
    expect(stowage(['space', 'disable', 'project/collab']).code).toBe(0);
    expect(stowage(['space', 'rm', 'project/collab']).code).toBe(0);
  });

  it('exits quietly when its reader goes away', () => {
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${cli}" --root "${root}" --help | head -1`], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });
});
