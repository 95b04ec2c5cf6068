/**
 * A real browser (headless Chromium) running a page of another origin that calls the WebDAV door
 * with `fetch`, as a web file manager does: the preflights, the exposed headers and a refused
 * origin are the browser's own judgement, not a test's reading of the headers.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DavEnv, startDav, tool } from './server.js';

const chromium = (await tool('chromium')) ? 'chromium' : undefined;

/** What the page does: returns what it saw as JSON in its body. */
const script = (dav: string) => `
(async () => {
  const base = ${JSON.stringify(dav)};
  const auth = 'Basic ' + btoa('ann:pw-ann');
  const out = {};
  try {
    let r = await fetch(base + 'from%20page.txt', { method: 'PUT', headers: { authorization: auth, 'content-type': 'text/plain', 'x-oc-mtime': '1500000000' }, body: 'hello from a page' });
    out.put = r.status;
    out.fileid = r.headers.get('oc-fileid');
    out.etag = r.headers.get('etag');
    r = await fetch(base, { method: 'PROPFIND', headers: { authorization: auth, depth: '1', 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>' });
    out.propfind = r.status;
    out.listed = (await r.text()).includes('from%20page.txt');
    r = await fetch(base + 'from%20page.txt', { headers: { authorization: auth, range: 'bytes=0-4' } });
    out.get = r.status;
    out.body = await r.text();
    out.range = r.headers.get('content-range');
    r = await fetch(base + 'from%20page.txt', { method: 'MOVE', headers: { authorization: auth, destination: base + 'moved.txt' } });
    out.move = r.status;
  } catch (e) {
    out.error = String(e);
  }
  document.body.textContent = JSON.stringify(out);
})();`;

describe.skipIf(!chromium)('a web page of another origin, in Chromium', () => {
  let env: DavEnv;
  let pages: http.Server;
  let port: number;

  beforeAll(async () => {
    pages = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><html><body>waiting<script>${script(`${env.url}/remote.php/webdav/`)}</script></body></html>`,
      );
    });
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    port = (pages.address() as AddressInfo).port;
    // The page's origin is http://127.0.0.1:<port>; http://localhost:<port> is another one.
    env = await startDav([{ id: 'u-ann', username: 'ann' }], {
      watch: false,
      cors: { origins: [`http://127.0.0.1:${port}`] },
    });
  });
  afterAll(async () => {
    pages?.close();
    await env?.close();
  });

  /** Load a page in headless Chromium and return what its script wrote. */
  const visit = (url: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      execFile(
        chromium!,
        ['--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=15000', '--dump-dom', url],
        { timeout: 60_000 },
        (err, stdout) => {
          const m = /<body>(\{.*\})<\/body>/s.exec(stdout);
          if (m) resolve(JSON.parse(m[1]!));
          else reject(err ?? new Error(`no result in ${stdout.slice(0, 300)}`));
        },
      );
    });

  it('lets a page of an allowed origin write, list, read a range and move, and read the headers it needs', async () => {
    const seen = await visit(`http://127.0.0.1:${port}/`);
    expect(seen).toMatchObject({
      put: 201,
      propfind: 207,
      listed: true,
      get: 206,
      body: 'hello',
      range: 'bytes 0-4/17',
      move: 201,
    });
    expect(seen.fileid).toMatch(/\S/);
    expect(seen.etag).toMatch(/^"/);
    const s = await env.provider.as('ann');
    const moved = await s.stat({ space: (await s.personalSpace()).id, path: 'moved.txt' });
    expect(moved.size).toBe(17);
    expect(moved.mtime).toBe(1_500_000_000_000);
  });

  it('keeps a page of another origin out: the browser refuses, and nothing is written', async () => {
    const seen = await visit(`http://localhost:${port}/`);
    expect(seen.error).toMatch(/TypeError|Failed to fetch/);
    expect(seen.put).toBeUndefined();
    const s = await env.provider.as('ann');
    const space = (await s.personalSpace()).id;
    await expect(s.stat({ space, path: 'from page.txt' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
