/**
 * `stowage serve --tls-cert --tls-key`: WebDAV, the data plane (TUS included) over HTTPS and the
 * CS3 door over gRPC with TLS, with a certificate made by openssl for the test. Windows' WebClient
 * sends Basic credentials over HTTPS only; nothing is served in clear on those ports.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cs3Client } from '../../src/cs3/client.js';
import { mintRevaToken } from '../../src/cs3/jwt.js';
import { tempRoot } from '../helpers/tmp.js';
import { serveCli, tool } from './server.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli/main.js');
const SECRET = 'tls-test-secret';
const have = await tool('openssl');
let dir: string;
let ca: Buffer;
let child: ChildProcess | undefined;
let facts: { webdav: string; grpc: string; dataUrl: string };
const auth = `Basic ${Buffer.from('alice:secret').toString('base64')}`;

afterAll(() => child?.kill('SIGKILL'));

/** One HTTPS request trusting the test's certificate: status, headers, body. */
function request(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers: { authorization: auth, ...headers }, ca }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.once('error', reject);
    req.end(body);
  });
}

describe.skipIf(!have)('serve over TLS', () => {
  beforeAll(async () => {
    dir = await tempRoot('tls');
    const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
    await promisify(execFile)('openssl', [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'],
      ...['-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    ]);
    ca = await fs.readFile(cert);
    ({ child, facts } = await serveCli([
      ...[path.join(dir, 'data'), '--http', '127.0.0.1:0', '--grpc', '127.0.0.1:0'],
      ...['--jwt-secret', SECRET, '--user', 'alice:secret', '--tls-cert', cert, '--tls-key', key],
    ]));
  });

  it('serves WebDAV and the data plane over HTTPS, and says so', async () => {
    expect(facts.webdav).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/remote\.php\/webdav\/$/);
    expect(facts.dataUrl).toMatch(/^https:\/\//);
    const put = await request(`${facts.webdav}hello.txt`, 'PUT', {}, 'over tls');
    expect(put.status).toBe(201);
    const got = await request(`${facts.webdav}hello.txt`, 'GET');
    expect([got.status, got.body]).toEqual([200, 'over tls']);
    const listed = await request(facts.webdav, 'PROPFIND', { depth: '1' });
    expect(listed.status).toBe(207);
    expect(listed.body).toContain('hello.txt');
    // A TUS upload goes on where the answer says: the data plane, over HTTPS too
    const created = await request(facts.webdav, 'POST', {
      'tus-resumable': '1.0.0',
      'upload-length': '3',
      'upload-metadata': `filename ${Buffer.from('tus.txt').toString('base64')}`,
    });
    expect(created.status).toBe(201);
    const location = String(created.headers.location);
    expect(location).toMatch(/^https:\/\//);
    const patched = await request(
      location,
      'PATCH',
      { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      'tus',
    );
    expect(patched.status).toBe(204);
    expect((await request(`${facts.webdav}tus.txt`, 'GET')).body).toBe('tus');
  });

  it('serves the CS3 door over gRPC with TLS', async () => {
    const client = new Cs3Client(facts.grpc, {
      token: mintRevaToken({ id: 'alice', username: 'alice' }, SECRET),
      credentials: grpc.credentials.createSsl(ca),
    });
    try {
      const res = await client.spacesOk('listStorageSpaces', {});
      expect(res.storageSpaces.map((s) => s.spaceType)).toContain('personal');
    } finally {
      client.close();
    }
  });

  it('serves nothing in clear on its HTTPS port', async () => {
    const u = new URL(facts.webdav);
    const reply = await new Promise<string>((resolve) => {
      const sock = net.connect(Number(u.port), u.hostname, () =>
        sock.write(`PROPFIND /remote.php/webdav/ HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\n\r\n`),
      );
      let text = '';
      sock.on('data', (d) => (text += d.toString('latin1')));
      sock.on('close', () => resolve(text));
      sock.on('error', () => resolve(text));
    });
    expect(reply).not.toContain('207');
    expect(reply).not.toContain('hello.txt');
  });

  it('refuses a certificate without its key, and a file that is not there, before it starts', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const c = spawn(process.execPath, [
          cli,
          'serve',
          path.join(dir, 'other'),
          '--http',
          '127.0.0.1:0',
          ...args,
        ]);
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.once('exit', (code) => resolve({ code, err }));
      });
    const alone = await run(['--tls-cert', path.join(dir, 'cert.pem')]);
    expect(alone.code).toBe(2);
    expect(alone.err).toContain('--tls-cert and --tls-key go together');
    const missing = await run([
      '--tls-cert',
      path.join(dir, 'nope.pem'),
      '--tls-key',
      path.join(dir, 'key.pem'),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/--tls-cert: .*ENOENT/);
    const wrong = await run([
      '--tls-cert',
      path.join(dir, 'key.pem'),
      '--tls-key',
      path.join(dir, 'key.pem'),
    ]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toMatch(/TLS certificate or key/);
  });
});
