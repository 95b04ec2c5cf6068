/**
 * GNOME's gvfs (the dav backend behind GNOME Files and `gio`) against the WebDAV door, headless: a
 * private D-Bus session activates gvfsd and gvfsd-dav, `gio` mounts the user's WebDAV URL and
 * copies, lists, reads, renames and removes through it; what it did is checked on the storage by
 * content hash. A copy over the quota must show gvfs' "Insufficient Storage": libsoup writes a whole
 * body before it reads the answer, and a server that answered early and cut the connection showed
 * "HTTP Error: (null)" instead (the staged close after a refused body fixed that).
 *
 * Few MOVEs on purpose: gvfs 1.50 (Debian 12) leaks one connection per MOVE and hangs after ~31
 * (its own bug; see the README's WebDAV section).
 */
import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import type { StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';
import { type DavEnv, run, startDav, tool } from './server.js';

const hasGvfs =
  (await tool('gio')) && (await tool('dbus-run-session')) && (await tool('/usr/libexec/gvfsd-dav'));

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

describe.skipIf(!hasGvfs)('gvfs (gio, GNOME Files’ dav backend)', () => {
  let env: DavEnv;
  let session: StorageProvider;
  let space: string;
  let work: string;

  beforeAll(async () => {
    env = await startDav([{ id: 'u-gv', username: 'gv' }]);
    session = await env.provider.as('u-gv');
    space = (await session.personalSpace()).id;
    await env.provider.updateSpace(space, { quota: 6_000_000 });
    work = await tempRoot('gvfs');
  });
  afterAll(() => env?.close());

  it('mounts, copies in and out, lists, renames and removes; over the quota it says so', async () => {
    const local = path.join(work, 'local');
    await fsp.mkdir(local);
    const big = randomBytes(3_000_000);
    const small = Buffer.from('hello from gvfs\n');
    await fsp.writeFile(path.join(local, 'big.bin'), big);
    await fsp.writeFile(path.join(local, 'Grüße & co.txt'), small);
    await fsp.writeFile(path.join(local, 'too-big.bin'), randomBytes(4_000_000));
    const port = new URL(env.url).port;
    const R = `dav://127.0.0.1:${port}/remote.php/webdav`;
    // Each step writes "STEP <name> <rc>" and its output to a file (the daemons the bus starts
    // write to its stdout); gio takes URIs, so names are encoded.
    const results = path.join(work, 'steps.txt');
    const script = `
set -u
step() { local n=$1; shift; out=$("$@" 2>&1); rc=$?; printf 'STEP %s %s\\n%s\\n' "$n" "$rc" "$out" >> "${results}"; }
printf 'gv\\npw-gv\\n' | timeout 60 gio mount "${R}/" >/dev/null 2>&1
step mount timeout 30 gio info "${R}/"
step mkdir timeout 30 gio mkdir "${R}/docs"
step copy-small timeout 60 gio copy "${local}/Grüße & co.txt" "${R}/docs/Gr%C3%BC%C3%9Fe%20%26%20co.txt"
step copy-big timeout 120 gio copy "${local}/big.bin" "${R}/docs/big.bin"
step list timeout 30 gio list "${R}/docs/"
step cat timeout 60 sh -c 'gio cat "${R}/docs/big.bin" > "${local}/big.back"'
step size timeout 30 gio info -a standard::size,time::created,time::modified "${R}/docs/big.bin"
step rename timeout 30 gio rename "${R}/docs/big.bin" "big2.bin"
step remove timeout 30 gio remove "${R}/docs/Gr%C3%BC%C3%9Fe%20%26%20co.txt"
step over-quota timeout 60 gio copy "${local}/too-big.bin" "${R}/docs/too-big.bin"
step list-after timeout 30 gio list "${R}/docs/"
timeout 30 gio mount -u "${R}/" >/dev/null 2>&1
exit 0
`;
    const run_ = path.join(work, 'run');
    const home = path.join(work, 'home');
    await fsp.mkdir(run_, { mode: 0o700 });
    await fsp.mkdir(home);
    await fsp.writeFile(path.join(work, 'steps.sh'), script);
    // XDG_RUNTIME_DIR and HOME are set before the bus starts: the gvfs daemons it activates
    // inherit them, so nothing touches the real user's session.
    const log = await run('timeout', ['600', 'dbus-run-session', '--', 'bash', path.join(work, 'steps.sh')], {
      env: { XDG_RUNTIME_DIR: run_, HOME: home, GIO_USE_VOLUME_MONITOR: 'unix' },
    });
    const out = await fsp.readFile(results, 'utf8').catch(() => '');
    const steps = new Map<string, { rc: number; out: string }>();
    for (const m of out.matchAll(/^STEP (\S+) (\d+)\n([\s\S]*?)(?=^STEP |(?![\s\S]))/gm))
      steps.set(m[1]!, { rc: Number(m[2]), out: m[3]!.trim() });
    const ok = (name: string) =>
      expect(steps.get(name)?.rc, `${name}: ${steps.get(name)?.out}\n${out}\n${log}`).toBe(0);
    for (const name of [
      'mount',
      'mkdir',
      'copy-small',
      'copy-big',
      'list',
      'cat',
      'size',
      'rename',
      'remove',
    ])
      ok(name);
    expect(steps.get('list')!.out.split('\n').sort()).toEqual(['Grüße & co.txt', 'big.bin']);
    expect(steps.get('size')!.out).toContain('standard::size: 3000000');
    // GNOME Files' "Created" comes from DAV:creationdate (seconds).
    const born = await session.stat({ space, path: 'docs/big2.bin' });
    expect(steps.get('size')!.out).toContain(`time::created: ${Math.floor(born.created! / 1000)}`);
    expect(sha1(await fsp.readFile(path.join(local, 'big.back')))).toBe(sha1(big));
    // Over the quota: refused, and gvfs says why.
    expect(steps.get('over-quota')!.rc).not.toBe(0);
    expect(steps.get('over-quota')!.out).toContain('Insufficient Storage');
    expect(steps.get('list-after')!.out.split('\n')).toEqual(['big2.bin']);
    // On the storage: the renamed file, whole, with checksums; the removed one in the trash.
    const stored = await session.read({ space, path: 'docs/big2.bin' });
    expect(sha1(await collect(stored.body!))).toBe(sha1(big));
    const info = await session.stat({ space, path: 'docs/big2.bin' }, { fields: ['checksums'] });
    expect(info.checksums?.sha1).toBe(sha1(big));
    const trashed: string[] = [];
    for await (const t of session.listTrash(space)) trashed.push(t.path);
    expect(trashed).toContain('/docs/Grüße & co.txt');
  });
});
