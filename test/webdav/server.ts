/** A Stowage server with the WebDAV door for tests: real posix storage, real HTTP on loopback. */

import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Cs3Server, serveCs3 } from '../../src/cs3/serve.js';
import { createPosixDriver, type PosixDriver } from '../../src/drivers/posix/index.js';
import type { CorsOptions } from '../../src/http/cors.js';
import type { SignInThrottleOptions } from '../../src/http/sign-ins.js';
import {
  type Driver,
  fromLetters,
  type Observation,
  ROLES,
  StaticIdentitySource,
  type StaticUser,
  type StorageEvent,
  StorageProvider,
} from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

export const SECRET = 'webdav-test-secret';

export interface DavEnv {
  root: string;
  driver: PosixDriver;
  provider: StorageProvider;
  server: Cs3Server;
  /** The observer, as `stowage serve` runs it (unless started with `watch: false`). */
  observer: Observation | undefined;
  /** `http://host:port` */
  url: string;
  /** `Authorization` header for a user (password = `pw-<username>`). */
  basic(username: string): string;
  close(): Promise<void>;
}

/**
 * Start a server as `stowage serve` does: the observer watches the storage and rendered listings
 * are kept (`watch: false`: neither).
 */
export async function startDav(
  users: StaticUser[],
  opts: {
    watch?: boolean;
    idleTimeoutMs?: number;
    searchMaxVisits?: number;
    xmlBodies?: { maxBytes?: number; deadlineMs?: number };
    allowDepthInfinity?: boolean;
    signIns?: SignInThrottleOptions;
    cors?: CorsOptions;
    /** What the provider is given instead of the driver itself (a wrapper that watches it). */
    wrap?: (driver: PosixDriver) => Driver;
  } = {},
): Promise<DavEnv> {
  const watch = opts.watch !== false;
  const root = await tempRoot('dav');
  const identity = await StaticIdentitySource.create({
    users: users.map((u) => ({ password: `pw-${u.username}`, ...u })),
  });
  const driver = await createPosixDriver({ root: path.join(root, 'data') });
  const provider = new StorageProvider({ drivers: opts.wrap ? opts.wrap(driver) : driver, identity });
  const server = await serveCs3({
    provider,
    jwtSecret: SECRET,
    grpc: false,
    http: '127.0.0.1:0',
    uploadsDir: path.join(root, 'uploads'),
    webdav: {
      uploadsDir: path.join(root, 'chunks'),
      listingCache: watch,
      ...(opts.searchMaxVisits !== undefined && { searchMaxVisits: opts.searchMaxVisits }),
      ...(opts.xmlBodies && { xmlBodies: opts.xmlBodies }),
      ...(opts.allowDepthInfinity && { allowDepthInfinity: true }),
      ...(opts.signIns && { signIns: opts.signIns }),
    },
    ...(opts.idleTimeoutMs !== undefined && { idleTimeoutMs: opts.idleTimeoutMs }),
    ...(opts.cors && { cors: opts.cors }),
  });
  const observer = watch ? provider.watch({ rescanIntervalMs: 0 }) : undefined;
  await observer?.ready;
  return {
    root,
    driver,
    provider,
    server,
    observer,
    url: `http://${server.httpAddress}`,
    basic: (u) => `Basic ${Buffer.from(`${u}:pw-${u}`).toString('base64')}`,
    async close() {
      await observer?.close();
      await server.close();
      await provider.close();
    },
  };
}

/** A project space `owner` makes, on which the user `grantee` (an id) has `role`; its id. */
export async function sharedProject(
  env: DavEnv,
  owner: string,
  name: string,
  grantee: string,
  role: keyof typeof ROLES,
): Promise<string> {
  const session = await env.provider.as(owner);
  const space = (await session.createSpace({ type: 'project', name })).id;
  await session.setGrant(
    { space, path: '' },
    { grantee: { type: 'user', id: grantee }, permissions: fromLetters(ROLES[role]) },
  );
  return space;
}

/** Two WebDAV servers on one provider, one keeping listings and one not, and a shared project space. */
export interface KeptAndPlain {
  /** The server that keeps listings (observer on), with users ann (owner) and bob (editor). */
  env: DavEnv;
  /** A server on the same provider that makes every listing anew. */
  plain: Cs3Server;
  /** The project space's id, and its folder on disk. */
  space: string;
  dir: string;
  close(): Promise<void>;
}

/** Start {@link KeptAndPlain}: kept listings can then be compared with listings made anew. */
export async function startKeptAndPlain(name: string): Promise<KeptAndPlain> {
  const env = await startDav([
    { id: 'u-ann', username: 'ann', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
  ]);
  const plain = await serveCs3({
    provider: env.provider,
    jwtSecret: SECRET,
    grpc: false,
    http: '127.0.0.1:0',
    uploadsDir: path.join(env.root, 'uploads-plain'),
    webdav: true,
  });
  const space = await sharedProject(env, 'ann', name, 'u-bob', 'editor');
  return {
    env,
    plain,
    space,
    dir: await env.driver.spacePath(space),
    async close() {
      await plain.close();
      await env.close();
    },
  };
}

/** A user's `GET /events` stream: the events as they arrive, its response, and a way to stop. */
export function listenEvents(
  env: DavEnv,
  user: string,
): {
  response: Promise<Response>;
  got: StorageEvent[];
  /** Wait (up to 2 s) until an event at `path` arrived, then 100 ms more for any that follow it. */
  until(path: string): Promise<void>;
  stop(): Promise<void>;
} {
  const ac = new AbortController();
  const got: StorageEvent[] = [];
  const response = fetch(`${env.url}/events`, {
    headers: { authorization: env.basic(user) },
    signal: ac.signal,
  });
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of (await response).body!) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const data = buf
            .slice(0, i)
            .split('\n')
            .find((l) => l.startsWith('data: '));
          buf = buf.slice(i + 2);
          if (data) got.push(JSON.parse(data.slice(6)));
        }
      }
    } catch {
      // aborted
    }
  })();
  const stop = () => {
    ac.abort();
    return reading;
  };
  const until = async (path: string) => {
    for (let i = 0; i < 100 && !got.some((e) => e.path === path); i++)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
  };
  return { response, got, until, stop };
}

/** What a test request may carry besides its method, URL and user. */
export type DavInit = RequestInit & { headers?: Record<string, string> };

/** A request to the test server as `user` (Basic auth; null: none), the path sent as given to fetch. */
/** The driver with some of its members replaced, for `startDav`'s `wrap` (the rest bound to it). */
export function overriding(driver: Driver, over: Partial<Driver>): Driver {
  return new Proxy(driver, {
    get(target, key) {
      if (Object.hasOwn(over, key)) return over[key as keyof Driver];
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export function davFetch(env: DavEnv, method: string, url: string, user: string | null, init: DavInit = {}) {
  return fetch(env.url + url, {
    method,
    ...init,
    headers: { ...(user ? { authorization: env.basic(user) } : {}), ...(init.headers ?? {}) },
  });
}

/**
 * Run the built `stowage serve ... --json` (`args` after `serve`) and wait for the facts it prints
 * first (its addresses, a generated user). The caller kills the child.
 */
export async function serveCli<F = { webdav: string; grpc?: string; dataUrl: string }>(
  args: string[],
  opts: SpawnOptions = {},
): Promise<{ child: ChildProcess; facts: F; stderr: () => string }> {
  const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli/main.js');
  const child = spawn(process.execPath, [cli, 'serve', ...args, '--json'], {
    ...opts,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const facts = await new Promise<F>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) resolve(JSON.parse(buf.slice(0, buf.indexOf('\n'))));
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  return { child, facts, stderr: () => err };
}

/** Is a command on the PATH? CI (STOWAGE_REQUIRE_TOOLS=1) treats a missing one as a failure. */
export async function tool(name: string): Promise<boolean> {
  const { spawnSync } = await import('node:child_process');
  const found = spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
  if (!found && process.env.STOWAGE_REQUIRE_TOOLS)
    throw new Error(`${name} is required (STOWAGE_REQUIRE_TOOLS)`);
  return found;
}

/**
 * A multistatus with its children's responses in one order: WebDAV gives them in none, and a
 * patched kept listing puts the children it did not show before last. The folder's own stays first.
 */
export function canonical(xml: string): string {
  const end = xml.endsWith('</d:multistatus>') ? '</d:multistatus>' : '';
  const [head, self, ...children] = xml.slice(0, xml.length - end.length).split('<d:response>');
  return [head, ...(self === undefined ? [] : [self]), ...children.sort()].join('<d:response>') + end;
}

/** Names as users give them (spaces, unicode, `#`, `%`, `&`, a nested path), for real clients. */
export const AWKWARD_NAMES: readonly string[] = [
  'plain.txt',
  'with space.txt',
  'ünïcødé – 日本.txt',
  'hash#tag.txt',
  'per%cent.txt',
  'a&b.txt',
  'folder one/inner #2/deep & deeper.bin',
];

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** The sha1 of every file below a local folder, by path relative to it (`skip`: names left out). */
export async function localTree(
  dir: string,
  skip?: (name: string) => boolean,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || skip?.(e.name)) continue;
    const abs = path.join(e.parentPath, e.name);
    out[path.relative(dir, abs)] = sha1(await fsp.readFile(abs));
  }
  return out;
}

/**
 * Every file of a user's personal space, read through the provider: the sha1 of its bytes, and
 * the sha1 the storage reports for it.
 */
export async function serverFiles(
  session: StorageProvider,
): Promise<Record<string, { sha1: string; reported: string | undefined }>> {
  const space = await session.personalSpace();
  const out: Record<string, { sha1: string; reported: string | undefined }> = {};
  const walk = async (p: string) => {
    for await (const e of session.list({ space: space.id, path: p })) {
      const rel = p ? `${p}/${e.name}` : e.name;
      if (e.type === 'folder') await walk(rel);
      else {
        const r = await session.read({ space: space.id, path: rel });
        const h = createHash('sha1');
        for await (const c of r.body ?? []) h.update(c as Buffer);
        out[rel] = { sha1: h.digest('hex'), reported: e.checksums?.sha1 };
      }
    }
  };
  await walk('');
  return out;
}

/**
 * Run a command and resolve with its output, without blocking this process (the server the
 * command talks to answers from here); a non-zero exit rejects with what it said.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.once('error', reject);
    p.once('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${err}${out}`)),
    );
  });
}
