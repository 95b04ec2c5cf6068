/**
 * litmus (the WebDAV conformance suite of neon's author), all five suites, against each kind of
 * endpoint: the personal space by the legacy and the new ownCloud URL, and a space by id.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, startDav, tool } from './server.js';

const hasLitmus = await tool('litmus');
let env: DavEnv;

beforeAll(async () => {
  env = await startDav([{ id: 'u-lit', username: 'lit' }]);
});
afterAll(() => env?.close());

function litmus(url: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('litmus', ['-k', url, 'lit', 'pw-lit'], { cwd });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.once('error', reject);
    p.once('close', () => resolve(out));
  });
}

describe.skipIf(!hasLitmus)('litmus', () => {
  it.each([['/remote.php/webdav/'], ['/remote.php/dav/files/lit/'], ['/dav/spaces/{space}/']])(
    'passes every test on %s',
    async (endpoint) => {
      const session = await env.provider.as('lit');
      const space = await session.personalSpace();
      const url = env.url + endpoint.replace('{space}', `${space.storageId}$${space.id}`);
      const out = await litmus(url, env.root);
      const summaries = [
        ...out.matchAll(/summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed/g),
      ];
      expect(
        summaries.map((m) => m[1]),
        out,
      ).toEqual(['basic', 'copymove', 'props', 'locks', 'http']);
      for (const m of summaries) expect(Number(m[4]), `${m[1]} failed:\n${out}`).toBe(0);
      expect(summaries.reduce((n, m) => n + Number(m[3]), 0)).toBe(104);
    },
    120_000,
  );
});
