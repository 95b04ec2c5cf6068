/**
 * `stowage serve` and `stowage token` as an operator uses them: a real process, tokens from the CLI,
 * a gateway with its own transfer secret, and a clean stop on SIGTERM.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Cs3Client } from '../../src/cs3/client.js';
import { Code } from '../../src/cs3/gen/cs3/rpc/v1beta1/code.js';
import { signJwt } from '../../src/cs3/jwt.js';
import { tempRoot } from '../helpers/tmp.js';
import { serveCli } from '../webdav/server.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli/main.js');
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** Start `stowage serve --json` and wait for its facts line. */
async function serve(args: string[], env: Record<string, string> = {}) {
  const started = await serveCli<{
    root: string;
    storageId: string;
    grpc: string;
    dataUrl: string;
    webdav: string;
  }>(args, { env: { ...process.env, ...env } });
  children.push(started.child);
  return started;
}

describe('stowage serve', () => {
  it('serves gRPC and the data plane, with tokens from `stowage token` and a separate transfer secret', async () => {
    const dir = await tempRoot('serve-cli');
    const { child, facts, stderr } = await serve(
      [
        dir,
        '--grpc',
        '127.0.0.1:0',
        '--http',
        '127.0.0.1:0',
        '--user',
        'alice::create-spaces',
        '--user',
        'bob',
      ],
      { STOWAGE_JWT_SECRET: 'jwt-secret-1', STOWAGE_TRANSFER_SECRET: 'transfer-secret-2' },
    );
    expect(facts.storageId).toMatch(/\S/);
    const tok = spawnSync(
      process.execPath,
      [cli, 'token', '--user', 'alice', '--jwt-secret', 'jwt-secret-1'],
      {
        encoding: 'utf8',
      },
    );
    expect(tok.status, tok.stderr).toBe(0);
    const alice = new Cs3Client(facts.grpc, { token: tok.stdout.trim() });
    try {
      const created = await alice.spacesOk('createStorageSpace', { type: 'project', name: 'Served' });
      const root = created.storageSpace!.root!;
      expect(root.storageId).toBe(facts.storageId);
      const ref = { resourceId: root, path: './a.txt' };
      const up = await alice.providerOk('initiateFileUpload', { ref });
      const simple = up.protocols.find((p) => p.protocol === 'simple')!;
      expect(simple.uploadEndpoint.startsWith(facts.dataUrl)).toBe(true);
      expect((await fetch(simple.uploadEndpoint, { method: 'PUT', body: 'served' })).status).toBe(200);

      // A Reva datagateway re-signs with transfer_shared_secret; the JWT secret does not do.
      const down = await alice.providerOk('initiateFileDownload', { ref });
      const target = down.protocols[0]!.downloadEndpoint;
      const exp = Math.floor(Date.now() / 1000) + 60;
      const viaGateway = (secret: string) =>
        fetch(`${facts.dataUrl}/simple/`, {
          headers: { 'x-reva-transfer': signJwt({ exp, aud: ['reva'], target }, secret) },
        });
      const good = await viaGateway('transfer-secret-2');
      expect(good.status).toBe(200);
      expect(await good.text()).toBe('served');
      expect((await viaGateway('jwt-secret-1')).status).toBe(401);

      // A token signed with something else is UNAUTHENTICATED, and names no one.
      const forged = new Cs3Client(facts.grpc, { token: signJwt({ exp, user: { username: 'alice' } }, 'x') });
      expect((await forged.provider('stat', { ref })).status?.code).toBe(Code.CODE_UNAUTHENTICATED);
      forged.close();
    } finally {
      alice.close();
    }
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code, stderr()).toBe(0);
    expect(stderr()).not.toContain('secret');
  });

  it('refuses to start without a JWT secret (exit 2), and says why', () => {
    const env = { ...process.env };
    delete env.STOWAGE_JWT_SECRET;
    const r = spawnSync(process.execPath, [cli, 'serve', '--grpc', '127.0.0.1:0'], { encoding: 'utf8', env });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('JWT secret');
  });
});

describe('stowage serve: users', () => {
  it('takes NAME:PASSWORD:FLAGS, refuses unknown flags, and never accepts an empty password', async () => {
    const bad = spawnSync(
      process.execPath,
      [cli, 'serve', '--http', '127.0.0.1:0', '--user', 'bob:pw:admn'],
      {
        encoding: 'utf8',
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('unknown flag "admn"');
    const dir = await tempRoot('serve-users');
    const { child, facts } = await serve([
      dir,
      '--http',
      '127.0.0.1:0',
      '--user',
      'carol:s3cret:admin',
      '--user',
      'dave:',
    ]);
    const base = facts.webdav;
    const as = (user: string, pw: string) =>
      fetch(base, {
        method: 'PROPFIND',
        headers: { depth: '0', authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` },
      });
    expect((await as('carol', 's3cret')).status).toBe(207);
    expect((await as('dave', '')).status).toBe(401);
    expect((await as('carol', '')).status).toBe(401);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  });

  it('answers PROPFIND Depth: infinity with --depth-infinity only (403 propfind-finite-depth otherwise)', async () => {
    const infinite = (url: string) =>
      fetch(url, {
        method: 'PROPFIND',
        headers: { depth: 'infinity', authorization: `Basic ${Buffer.from('ed:pw').toString('base64')}` },
      });
    for (const flag of [[], ['--depth-infinity']]) {
      const { child, facts } = await serve([
        await tempRoot('serve-depth'),
        '--http',
        '127.0.0.1:0',
        '--user',
        'ed:pw',
        ...flag,
      ]);
      const put = (p: string) =>
        fetch(`${facts.webdav}${p}`, {
          method: p.endsWith('/') ? 'MKCOL' : 'PUT',
          headers: { authorization: `Basic ${Buffer.from('ed:pw').toString('base64')}` },
          ...(!p.endsWith('/') && { body: 'x' }),
        });
      for (const p of ['a/', 'a/b/', 'a/b/c.txt']) expect((await put(p)).status).toBe(201);
      const r = await infinite(facts.webdav);
      if (flag.length) {
        expect(r.status).toBe(207);
        expect(await r.text()).toContain('/a/b/c.txt</d:href>');
      } else {
        expect(r.status).toBe(403);
        expect(await r.text()).toContain('propfind-finite-depth');
      }
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });

  it('makes an address that keeps failing to sign in wait, told apart behind a trusted proxy', async () => {
    const bad = spawnSync(
      process.execPath,
      [cli, 'serve', '--http', '127.0.0.1:0', '--trusted-proxy', 'proxy.lan'],
      {
        encoding: 'utf8',
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--trusted-proxy: "proxy.lan" is not an IP address');
    const dir = await tempRoot('serve-sign-ins');
    const { child, facts } = await serve([
      dir,
      '--http',
      '127.0.0.1:0',
      '--user',
      'erin:right',
      '--trusted-proxy',
      '127.0.0.1',
    ]);
    const as = (pw: string, forwardedFor: string) =>
      fetch(facts.webdav, {
        method: 'PROPFIND',
        headers: {
          depth: '0',
          authorization: `Basic ${Buffer.from(`erin:${pw}`).toString('base64')}`,
          'x-forwarded-for': forwardedFor,
        },
      });
    // (a client may send its own X-Forwarded-For: the proxy's entry, the last, is what counts)
    for (let i = 0; i < 5; i++) expect((await as(`guess-${i}`, '10.9.9.9, 198.51.100.7')).status).toBe(401);
    const held = await as('right', '198.51.100.7');
    expect(held.status).toBe(429);
    expect(Number(held.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another client behind the same proxy is not held up.
    expect((await as('wrong', '198.51.100.8')).status).toBe(401);
    expect((await as('right', '203.0.113.1, 198.51.100.8')).status).toBe(207);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  });

  it('refuses to start on a users file it cannot read, and says which', async () => {
    const dir = await tempRoot('serve-broken-users');
    await fs.mkdir(path.join(dir, '.stowage'), { recursive: true });
    await fs.writeFile(path.join(dir, '.stowage', 'users.json'), '{"users": [');
    const r = spawnSync(process.execPath, [cli, 'serve', dir, '--http', '127.0.0.1:0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`cannot read users from ${path.join(dir, '.stowage', 'users.json')}`);
    expect(await fs.readFile(path.join(dir, '.stowage', 'users.json'), 'utf8')).toBe('{"users": [');
  });

  it('creates one admin when two first runs race, and both serve its password', async () => {
    const dir = await tempRoot('serve-race');
    const [a, b] = await Promise.all([
      serve([dir, '--http', '127.0.0.1:0']),
      serve([dir, '--http', '127.0.0.1:0']),
    ]);
    const printed = [a.facts, b.facts].map((f) => (f as { password?: string }).password).filter(Boolean);
    expect(printed).toHaveLength(1);
    for (const s of [a, b]) {
      const r = await fetch(s.facts.webdav, {
        method: 'PROPFIND',
        headers: {
          depth: '0',
          authorization: `Basic ${Buffer.from(`admin:${printed[0]}`).toString('base64')}`,
        },
      });
      expect(r.status).toBe(207);
      s.child.kill('SIGTERM');
    }
  });
});

describe('stowage serve: trash retention', () => {
  it('purges what was deleted longer ago than --trash-retention, and nothing newer', async () => {
    const { child, facts, stderr } = await serve([
      await tempRoot('serve-retention'),
      '--http',
      '127.0.0.1:0',
      '--user',
      'ed:pw',
      '--trash-retention',
      '2s',
    ]);
    const auth = { authorization: `Basic ${Buffer.from('ed:pw').toString('base64')}` };
    const trash = new URL('/remote.php/dav/trash-bin/ed/', facts.webdav);
    const inTrash = async () => {
      const r = await fetch(trash, { method: 'PROPFIND', headers: { ...auth, depth: '1' } });
      expect(r.status).toBe(207);
      return (await r.text()).split('<d:response>').length - 2; // less the trash itself
    };
    for (const name of ['a.txt', 'b.txt']) {
      expect(
        (await fetch(`${facts.webdav}${name}`, { method: 'PUT', headers: auth, body: name })).status,
      ).toBe(201);
      expect((await fetch(`${facts.webdav}${name}`, { method: 'DELETE', headers: auth })).status).toBe(204);
    }
    // Deleted just now: kept, through the sweep made at start and the next ones, until 2 s old.
    expect(await inTrash()).toBe(2);
    for (let i = 0; i < 100 && (await inTrash()) > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await inTrash()).toBe(0);
    expect(stderr()).toMatch(/trash: purged 2 items deleted more than 2s ago|trash: purged 1 item/);
    child.kill('SIGTERM');
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
  });

  it('refuses an age without a unit (exit 2)', () => {
    const r = spawnSync(process.execPath, [cli, 'serve', '--trash-retention', '30'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--trash-retention takes an age with a unit: 30d, 12h, 90m or 45s (got "30")');
  });
});
