/**
 * `stowage serve` run as an unprivileged user over a storage where an instrument (another uid)
 * drops files: Stowage may write them (group- or world-writable) but the kernel lets only their
 * owner set their time. A PROPPATCH of the time is refused 403 for that property alone (the rest of
 * the request 424, nothing changed); the file stays readable and a PUT replaces it with one the
 * server owns, whose time it may set. Needs root to start the server as `nobody` (CI runs as root).
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../helpers/tmp.js';
import { serveCli } from './server.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** Let `nobody` pass through the folders the tests made above `dir` (traverse only, no listing). */
async function letThrough(dir: string): Promise<void> {
  for (let p = path.dirname(dir); p !== path.dirname(p); p = path.dirname(p)) {
    const st = await fs.stat(p);
    if (st.mode & 0o001) return;
    if (st.uid !== process.getuid!()) throw new Error(`${p} is not ours and nobody cannot pass it`);
    await fs.chmod(p, (st.mode & 0o7777) | 0o011);
  }
}

async function serveAsNobody(dir: string): Promise<{ webdav: string; stderr: () => string }> {
  const { child, facts, stderr } = await serveCli([dir, '--http', '127.0.0.1:0', '--user', 'alice:secret'], {
    uid: NOBODY,
    gid: NOBODY,
    env: { ...process.env, HOME: dir },
  });
  children.push(child);
  return { webdav: facts.webdav, stderr };
}

async function find(dir: string, name: string): Promise<string | undefined> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.name === name && e.isFile()) return p;
    if (e.isDirectory()) {
      const hit = await find(p, name);
      if (hit) return hit;
    }
  }
  return undefined;
}

describe.skipIf(!isRoot)('WebDAV: a server that does not own every file', () => {
  it('refuses a time for a file of another uid with 403 (the rest 424, nothing set), and a PUT makes it its own', async () => {
    const dir = await tempRoot('not-owner');
    await letThrough(dir);
    await fs.chown(dir, NOBODY, NOBODY);
    const { webdav, stderr } = await serveAsNobody(dir);
    const base = webdav.replace(/\/$/, ''); // (…/remote.php/webdav)
    const auth = { authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` };
    const put = await fetch(`${base}/seed.txt`, { method: 'PUT', headers: auth, body: 'seed' });
    expect(put.status, stderr()).toBe(201);

    // The instrument (root here, another uid than the server's) drops a file beside it.
    const seed = await find(dir, 'seed.txt');
    expect(seed).toBeDefined();
    const dropped = path.join(path.dirname(seed!), 'run-001.dat');
    await fs.writeFile(dropped, 'measured');
    await fs.chmod(dropped, 0o666);
    const old = new Date('2024-05-01T10:00:00Z');
    await fs.utimes(dropped, old, old);
    const st = await fs.stat(dropped);
    expect(st.uid).toBe(0);

    const url = `${base}/run-001.dat`;
    const got = await fetch(url, { headers: auth });
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('measured');

    const when = Date.parse('2024-01-01T00:00:00Z');
    const patch = await fetch(url, {
      method: 'PROPPATCH',
      headers: { ...auth, 'content-type': 'application/xml' },
      body: `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:example"><d:set><d:prop><d:lastmodified>${when / 1000}</d:lastmodified><x:note>left alone</x:note></d:prop></d:set></d:propertyupdate>`,
    });
    expect(patch.status).toBe(207);
    const body = await patch.text();
    expect(body).toMatch(/<d:lastmodified\/>\s*<\/d:prop>\s*<d:status>HTTP\/1.1 403 Forbidden/);
    expect(body).toMatch(/<x:note[^>]*\/>\s*<\/d:prop>\s*<d:status>HTTP\/1.1 424 Failed Dependency/);
    expect((await fs.stat(dropped)).mtimeMs).toBe(old.getTime());

    const props = await fetch(url, {
      method: 'PROPFIND',
      headers: { ...auth, depth: '0', 'content-type': 'application/xml' },
      body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:example"><d:prop><d:getlastmodified/><x:note/></d:prop></d:propfind>',
    });
    const listed = await props.text();
    expect(listed).toContain(old.toUTCString());
    expect(listed).toMatch(/<x:note[^>]*\/>\s*<\/d:prop>\s*<d:status>HTTP\/1.1 404 Not Found/);

    // A new body is written by the server to a file of its own, which takes the client's time.
    const replaced = await fetch(url, {
      method: 'PUT',
      headers: { ...auth, 'x-oc-mtime': String(when / 1000) },
      body: 'measured again',
    });
    expect(replaced.status).toBe(204);
    const now = await fs.stat(dropped);
    expect(now.uid).toBe(NOBODY);
    expect(now.mtimeMs).toBe(when);

    // A MOVE that would set such a file's time where it lands (rclone's X-OC-Mtime): the move
    // goes through, with the time it had, and does not say it took the new one.
    const second = path.join(path.dirname(seed!), 'run-002.dat');
    await fs.writeFile(second, 'measured too');
    await fs.chmod(second, 0o666);
    await fs.utimes(second, old, old);
    const move = await fetch(`${base}/run-002.dat`, {
      method: 'MOVE',
      headers: { ...auth, destination: `${base}/moved-002.dat`, 'x-oc-mtime': String(when / 1000) },
    });
    expect(move.status, stderr()).toBe(201);
    expect(move.headers.get('x-oc-mtime')).toBeNull();
    const moved = await fs.stat(path.join(path.dirname(seed!), 'moved-002.dat'));
    expect([moved.uid, moved.mtimeMs]).toEqual([0, old.getTime()]);
    await expect(fs.stat(second)).rejects.toThrow(/ENOENT/);
  });
});
