/**
 * TUS uploads across a `stowage serve` killed with SIGKILL: the URL stays good without a secret
 * given (the transfer secret is kept in the storage), and a complete upload whose file was not
 * written when the process died is not told done: its client sends the last byte again, and that
 * PATCH writes it.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../helpers/tmp.js';
import { serveCli } from '../webdav/server.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

const TUS = { 'tus-resumable': '1.0.0' };
const auth = { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` };

async function start(dir: string): Promise<{ child: ChildProcess; webdav: string }> {
  const { child, facts } = await serveCli([dir, '--http', '127.0.0.1:0', '--user', 'alice:pw', '--no-watch']);
  children.push(child);
  return { child, webdav: facts.webdav };
}

async function kill(child: ChildProcess): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

const create = async (webdav: string, name: string, length: number) => {
  const r = await fetch(webdav, {
    method: 'POST',
    headers: {
      ...TUS,
      ...auth,
      'upload-length': String(length),
      'upload-metadata': `filename ${Buffer.from(name).toString('base64')}`,
    },
  });
  expect(r.status).toBe(201);
  return r.headers.get('location')!;
};
const patch = (location: string, offset: number, body: string) =>
  fetch(location, {
    method: 'PATCH',
    headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
    body,
  });
const offsetOf = async (location: string) => {
  const r = await fetch(location, { method: 'HEAD', headers: TUS });
  expect(r.status).toBe(200);
  return Number(r.headers.get('upload-offset'));
};

describe('stowage serve: TUS uploads and a SIGKILL', () => {
  it('resumes an upload after a restart, and writes one that was complete but not written when it died', async () => {
    const dir = await tempRoot('tus-restart');
    let server = await start(dir);

    // An upload half sent when the server dies.
    const halfAt = await create(server.webdav, 'half.txt', 10);
    expect((await patch(halfAt, 0, '01234')).status).toBe(204);
    // One with all but its last byte (its state is then made as a kill during its write leaves it).
    const wholeAt = await create(server.webdav, 'whole.txt', 10);
    expect((await patch(wholeAt, 0, 'abcdefghi')).status).toBe(204);
    await kill(server.child);

    // The staged state of a complete upload whose write did not happen: all bytes, the offset at
    // the length, not done (the final PATCH appends and saves this before it writes the file).
    const staged = path.join(dir, '.stowage', 'uploads');
    let stateFile: string | undefined;
    for (const f of await fs.readdir(staged)) {
      if (!f.endsWith('.json')) continue;
      const st = JSON.parse(await fs.readFile(path.join(staged, f), 'utf8'));
      if (st.offset === 9) stateFile = path.join(staged, f);
    }
    expect(stateFile).toBeDefined();
    await fs.appendFile(stateFile!.replace(/\.json$/, '.bin'), 'j');
    const st = JSON.parse(await fs.readFile(stateFile!, 'utf8'));
    await fs.writeFile(stateFile!, JSON.stringify({ ...st, offset: 10 }));

    server = await start(dir);
    // (the new process listens on another port: the same URL, rebased onto it)
    const origin = new URL(server.webdav).origin;
    const half = new URL(new URL(halfAt).pathname, origin).href;
    const whole = new URL(new URL(wholeAt).pathname, origin).href;
    // The URL is still good (the same secret signs it), and the offset is what was synced.
    expect(await offsetOf(half)).toBe(5);
    expect((await patch(half, 5, '56789')).status).toBe(204);
    const got = await fetch(`${server.webdav}half.txt`, { headers: auth });
    expect(await got.text()).toBe('0123456789');

    // Complete but not written: not told done, nor is the file there.
    expect(await offsetOf(whole)).toBe(9);
    expect((await fetch(`${server.webdav}whole.txt`, { headers: auth })).status).toBe(404);
    // A wrong offset is still 409, with the offset to go on from.
    const wrong = await patch(whole, 3, 'x');
    expect(wrong.status).toBe(409);
    expect(wrong.headers.get('upload-offset')).toBe('9');
    // More than the last byte is refused, and changes nothing.
    expect((await patch(whole, 9, 'jk')).status).toBe(400);
    expect(await offsetOf(whole)).toBe(9);
    // The last byte again writes the file (tus-js-client resumes so).
    const last = await patch(whole, 9, 'j');
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe('10');
    expect(await (await fetch(`${server.webdav}whole.txt`, { headers: auth })).text()).toBe('abcdefghij');
    expect((await fetch(whole, { method: 'HEAD', headers: TUS })).status).toBe(404);

    // The secret is kept once, readable by the server's user alone.
    const secret = await fs.stat(path.join(dir, '.stowage', 'transfer-secret'));
    expect(secret.mode & 0o777).toBe(0o600);
    await kill(server.child);
  });
});
