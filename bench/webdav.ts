/**
 * The WebDAV door against Apache httpd + mod_dav_fs, started here on a folder of its own with the
 * same data, same machine, interleaved (A B A B ...):
 * - PROPFIND Depth 1 of folders with 1,000 and 10,000 files (requests/s);
 * - PUT of 1,000 4 KiB files;
 * - GET and PUT of a 64 MiB file.
 * The load comes from a worker thread (its own event loop), the same code for both servers.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { StaticIdentitySource } from '../src/core/identity.js';
import { StorageProvider } from '../src/core/provider.js';
import { serveCs3 } from '../src/cs3/serve.js';
import { createPosixDriver } from '../src/drivers/posix/index.js';
import { ab, median, row, timed } from './lib.js';

const PROPFIND_BODY =
  '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/></d:prop></d:propfind>';
/** What the ownCloud/OpenCloud web UI asks of a folder (a few of its properties, `oc:favorite` among them). */
const WEB_PROPFIND_BODY =
  '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:fileid/><oc:permissions/><oc:favorite/></d:prop></d:propfind>';

/** A job for the load worker. */
type Job =
  | {
      kind: 'propfind';
      url: string;
      auth: string;
      requests: number;
      concurrency: number;
      /** PUT 4 KiB files here, one at a time, all the while (another folder of the same space). */
      busy?: string;
      /** Before each PROPFIND, PUT a 4 KiB file into the listed folder (one of 20 names, replaced in turn). */
      touch?: boolean;
      /** Ask what a web UI asks ({@link WEB_PROPFIND_BODY}). */
      web?: boolean;
    }
  | {
      kind: 'puts';
      url: string;
      auth: string;
      files: number;
      size: number;
      concurrency: number;
      round: number;
    }
  | {
      kind: 'gets';
      url: string;
      auth: string;
      /** The names under `url` to GET, each once. */
      names: string[];
      size: number;
      concurrency: number;
    }
  | { kind: 'put'; url: string; auth: string; src: string; size: number }
  | { kind: 'get'; url: string; auth: string };

function fromWorker(job: Job): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { davJob: job } });
    w.once('message', (ms: number) => resolve(ms));
    w.once('error', reject);
    w.once('exit', (code) => (code ? reject(new Error(`load worker exited ${code}`)) : undefined));
  });
}

if (!isMainThread && workerData?.davJob) {
  const job = workerData.davJob as Job;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const request = (
    method: string,
    url: string,
    headers: Record<string, string>,
    body?: Buffer | string | fs.ReadStream,
  ) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        url,
        { method, agent, headers: { authorization: job.auth, ...headers } },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => resolve(res.statusCode!));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (body instanceof fs.ReadStream) body.pipe(req);
      else req.end(body);
    });
  const pool = async (n: number, concurrency: number, one: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) await one(next++);
      }),
    );
  };
  const expect = (status: number, ok: number[], what: string) => {
    if (!ok.includes(status)) throw new Error(`${what}: HTTP ${status}`);
  };
  let ms: number;
  if (job.kind === 'propfind') {
    const touchBody = randomBytes(4096);
    let touches = 0;
    const one = async () => {
      if (job.touch)
        expect(
          await request('PUT', `${job.url}touched-${touches++ % 20}.bin`, {}, touchBody),
          [200, 201, 204],
          'PUT',
        );
      expect(
        await request(
          'PROPFIND',
          job.url,
          { depth: '1', 'content-type': 'application/xml' },
          job.web ? WEB_PROPFIND_BODY : PROPFIND_BODY,
        ),
        [207],
        'PROPFIND',
      );
    };
    await one(); // connect, warm up
    let writing = job.busy !== undefined;
    const busy = (async () => {
      const body = randomBytes(4096);
      for (let i = 0; writing; i++)
        expect(await request('PUT', `${job.busy}w-${i}.bin`, {}, body), [200, 201, 204], 'busy PUT');
    })();
    ms = await timed(() => pool(job.requests, job.concurrency, one));
    writing = false;
    await busy;
  } else if (job.kind === 'puts') {
    const body = randomBytes(job.size);
    ms = await timed(() =>
      pool(job.files, job.concurrency, async (i) =>
        expect(await request('PUT', `${job.url}r${job.round}-${i}.bin`, {}, body), [200, 201, 204], 'PUT'),
      ),
    );
  } else if (job.kind === 'gets') {
    const got = (url: string) =>
      new Promise<void>((resolve, reject) => {
        http
          .get(url, { agent, headers: { authorization: job.auth } }, (res) => {
            let n = 0;
            res.on('data', (c: Buffer) => {
              n += c.length;
            });
            res.on('end', () =>
              res.statusCode === 200 && n === job.size
                ? resolve()
                : reject(new Error(`GET ${url}: HTTP ${res.statusCode}, ${n} bytes`)),
            );
            res.on('error', reject);
          })
          .on('error', reject);
      });
    ms = await timed(() => pool(job.names.length, job.concurrency, (i) => got(`${job.url}${job.names[i]}`)));
  } else if (job.kind === 'put') {
    ms = await timed(async () =>
      expect(
        await request(
          'PUT',
          job.url,
          { 'content-length': String(job.size) },
          fs.createReadStream(job.src, { highWaterMark: 1 << 20 }),
        ),
        [200, 201, 204],
        'PUT',
      ),
    );
  } else {
    ms = await timed(async () => expect(await request('GET', job.url, {}), [200], 'GET'));
  }
  agent.destroy();
  parentPort!.postMessage(ms);
}

/** `requests` PROPFINDs (Depth 1, 2 in flight) of `folder` under `url`, from the load worker. */
function listFolder(
  url: string,
  folder: string,
  auth: string,
  requests: number,
  extra: { busy?: string; touch?: boolean; web?: boolean } = {},
): Promise<number> {
  return fromWorker({ kind: 'propfind', url: `${url}/${folder}/`, auth, requests, concurrency: 2, ...extra });
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Start Apache httpd with mod_dav_fs serving `data`; returns its URL and a stop function. */
async function startApache(
  dir: string,
): Promise<{ url: string; data: string; cpuMs: () => number; stop: () => Promise<void> }> {
  const data = path.join(dir, 'data');
  const lock = path.join(dir, 'lock');
  await fsp.mkdir(data, { recursive: true });
  await fsp.mkdir(lock, { recursive: true });
  const port = await freePort();
  const mods = '/usr/lib/apache2/modules';
  const conf = path.join(dir, 'httpd.conf');
  await fsp.writeFile(
    conf,
    [
      'ServerName localhost',
      `Listen 127.0.0.1:${port}`,
      `PidFile ${dir}/httpd.pid`,
      `ErrorLog ${dir}/error.log`,
      `LoadModule mpm_event_module ${mods}/mod_mpm_event.so`,
      `LoadModule authz_core_module ${mods}/mod_authz_core.so`,
      `LoadModule dav_module ${mods}/mod_dav.so`,
      `LoadModule dav_fs_module ${mods}/mod_dav_fs.so`,
      'User www-data',
      'Group www-data',
      'KeepAlive On',
      'MaxKeepAliveRequests 0',
      `DavLockDB ${lock}/DavLock`,
      `DocumentRoot ${data}`,
      `<Directory ${data}>`,
      '  Dav On',
      '  Require all granted',
      '</Directory>',
      '',
    ].join('\n'),
  );
  await fsp.chown(data, 33, 33).catch(() => {});
  await fsp.chown(lock, 33, 33).catch(() => {});
  const child = spawn('/usr/sbin/apache2', ['-f', conf, '-DFOREGROUND'], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) =>
      http
        .get(url, (res) => {
          res.resume();
          resolve(true);
        })
        .on('error', () => resolve(false)),
    );
    if (up) break;
    if (i > 100 || child.exitCode !== null) {
      const log = await fsp.readFile(`${dir}/error.log`, 'utf8').catch(() => '');
      throw new Error(`Apache did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    data,
    cpuMs: () => treeCpuMs(child.pid!),
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * CPU time (user + system, ms) used so far by process `pid` and every process below it, from
 * `/proc/<pid>/stat` (in clock ticks of 10 ms): Apache's parent and its worker processes.
 */
function treeCpuMs(pid: number): number {
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // (gone meanwhile)
    }
    // (fields after the command, which may hold spaces and parentheses: state, ppid, …)
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parents.set(Number(name), Number(f[1]));
    cpu.set(Number(name), (Number(f[11]) + Number(f[12])) * 10);
  }
  let total = 0;
  for (const [p, ms] of cpu) {
    for (let at: number | undefined = p; at; at = parents.get(at)) {
      if (at === pid) {
        total += ms;
        break;
      }
    }
  }
  return total;
}

/** Run `fn` with `server` listening on a free loopback port (its base URL), then close it. */
async function withServer(server: http.Server, fn: (url: string) => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/**
 * A bare node:http server that streams each PUT body to a temp file in `dir` and renames it to
 * the URL's last segment (no auth, ids, checksums or accounting): what Node.js itself costs.
 */
function bareWriter(dir: string): http.Server {
  let n = 0;
  return http.createServer((req, res) => {
    const tmp = path.join(dir, `.tmp-${n++}`);
    const name = path.basename(new URL(req.url ?? '/', 'http://x').pathname);
    pipeline(req, fs.createWriteStream(tmp))
      .then(() => fsp.rename(tmp, path.join(dir, name)))
      .then(
        () => res.writeHead(201).end(),
        () => res.writeHead(500).end(),
      );
  });
}

/**
 * A bare node:http server answering PROPFIND Depth 1 of a folder of `dir` with the four properties
 * the bench asks for: `readdir`, one `lstat` per entry, an etag from inode, size and mtime (as
 * mod_dav_fs makes it), the XML written 64 KiB at a time. No auth, ids, records or permissions:
 * what Node.js itself costs such a listing.
 */
function bareLister(dir: string): http.Server {
  const entry = (href: string, st: fs.Stats) =>
    `<d:response><d:href>${href}</d:href><d:propstat><d:prop>${
      st.isDirectory()
        ? '<d:resourcetype><d:collection/></d:resourcetype>'
        : `<d:resourcetype/><d:getcontentlength>${st.size}</d:getcontentlength>`
    }<d:getlastmodified>${st.mtime.toUTCString()}</d:getlastmodified><d:getetag>"${st.ino.toString(16)}-${st.size.toString(16)}-${Math.floor(st.mtimeMs * 1000).toString(16)}"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`;
  return http.createServer((req, res) => {
    req.resume();
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const folder = path.join(dir, rel);
    res.writeHead(207, { 'content-type': 'application/xml; charset=utf-8' });
    let out = `<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:">${entry(rel, fs.lstatSync(folder))}`;
    for (const name of fs.readdirSync(folder)) {
      out += entry(rel + encodeURIComponent(name), fs.lstatSync(path.join(folder, name)));
      if (out.length >= 65536) {
        res.write(out);
        out = '';
      }
    }
    res.end(`${out}</d:multistatus>`);
  });
}

export async function benchWebdav(
  base: string,
  o: { entries: number[]; files: number; mib: number; parts: string[] },
): Promise<void> {
  if (!fs.existsSync('/usr/sbin/apache2')) {
    console.log('  (webdav: Apache httpd is not installed: apt-get install apache2)');
    return;
  }
  await fsp.mkdir(base, { recursive: true });
  const root = await fsp.mkdtemp(path.join(base, 'dav-'));
  await fsp.chmod(root, 0o755);
  const apache = await startApache(path.join(root, 'apache'));
  const identity = await StaticIdentitySource.create({
    users: [{ id: 'bench', username: 'bench', password: 'bench' }],
  });
  // Apache's mod_dav_fs does not fsync: compare with a driver that does not either (it stays
  // safe against kill -9, not power loss). The durable default is measured too, for context.
  const driver = await createPosixDriver({ root: path.join(root, 'stowage'), durable: false });
  const provider = new StorageProvider({ drivers: driver, identity });
  const server = await serveCs3({
    provider,
    jwtSecret: 'bench',
    grpc: false,
    http: '127.0.0.1:0',
    uploadsDir: path.join(root, 'uploads'),
    // As `stowage serve` runs: the observer watches, so rendered listings can be kept.
    webdav: { listingCache: true },
  });
  const observer = provider.watch({ rescanIntervalMs: 0 });
  await observer.ready;
  // The same provider without kept listings: what the first PROPFIND after a change costs.
  const plain = await serveCs3({
    provider,
    jwtSecret: 'bench',
    grpc: false,
    http: '127.0.0.1:0',
    uploadsDir: path.join(root, 'uploads-plain'),
    webdav: true,
  });
  const ours = `http://${server.httpAddress}/remote.php/webdav`;
  const uncached = `http://${plain.httpAddress}/remote.php/webdav`;
  const auth = `Basic ${Buffer.from('bench:bench').toString('base64')}`;
  const session = await provider.as('bench');
  const space = await session.personalSpace();
  /** The same folder of `n` files of 1 KiB on both servers, settled (the observer idle). */
  const sameFolder = async (folder: string, n: number) => {
    await fsp.mkdir(path.join(apache.data, folder));
    await session.mkdir({ space: space.id, path: folder });
    const body = Buffer.alloc(1024, 7);
    for (let i = 0; i < n; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, n - i) }, async (_, j) => {
          const name = `file-${String(i + j).padStart(6, '0')}.dat`;
          await fsp.writeFile(path.join(apache.data, folder, name), body);
          await session.write({ space: space.id, path: `${folder}/${name}` }, body);
        }),
      );
    }
    await fsp.chown(path.join(apache.data, folder), 33, 33).catch(() => {});
    await observer.idle();
  };
  /** Rows for a listing load against Apache: Stowage with its listings kept, and made anew. */
  const keptAndAnew = async (
    what: (how: string) => string,
    load: (url: string) => () => Promise<number>,
    requests: number,
    goal: '>= 2x' | 'measure',
  ) => {
    for (const [how, url] of [
      ['kept listing', ours],
      ['listing made anew', uncached],
    ] as const) {
      const [a, s, ratio] = await ab(5, load(apache.url), load(url));
      const rps = (ms: number) => (requests / (ms / 1000)).toFixed(1);
      row(
        `${what(how)}, requests/s (Apache mod_dav_fs vs Stowage)`,
        rps(a),
        rps(s),
        1 / ratio,
        goal,
        goal === 'measure' || 1 / ratio >= 2,
      );
    }
  };
  try {
    // ---------------------------------------------------------------- PROPFIND
    for (const n of o.parts.includes('propfind') ? o.entries : []) {
      const folder = `f${n}`;
      await sameFolder(folder, n);
      const requests = n >= 10_000 ? 20 : 100;
      const rps = (ms: number) => (requests / (ms / 1000)).toFixed(1);
      await keptAndAnew(
        (how) => `PROPFIND Depth 1 of ${n.toLocaleString('en')} files (${how})`,
        (url) => () => listFolder(url, folder, auth, requests),
        requests,
        '>= 2x',
      );
      // For context: the same listing from a bare node:http server (readdir, an lstat per entry).
      await withServer(bareLister(apache.data), async (bareUrl) => {
        const list = (url: string) => () => listFolder(url, folder, auth, requests);
        const [ba, bs, br] = await ab(5, list(apache.url), list(bareUrl));
        const what = `PROPFIND Depth 1 of ${n.toLocaleString('en')} files, requests/s (Apache vs bare node:http readdir + lstat + XML)`;
        row(what, rps(ba), rps(bs), 1 / br, 'context', true);
      });
      // For context: how much CPU Apache spends on each entry it lists (all its processes), in
      // `lstat`s of that entry from this process. A server that takes an lstat per entry can list
      // at twice Apache's rate on the same cores only if that ratio is above 2.
      const names = fs
        .readdirSync(path.join(apache.data, folder))
        .map((f) => path.join(apache.data, folder, f));
      const perEntry: number[] = [];
      const perLstat: number[] = [];
      for (let round = 0; round < 3; round++) {
        const cpu0 = apache.cpuMs();
        await listFolder(apache.url, folder, auth, requests);
        perEntry.push(((apache.cpuMs() - cpu0) * 1000) / (requests * (n + 1)));
        const ms = await timed(async () => {
          for (const f of names) fs.lstatSync(f);
        });
        perLstat.push((ms * 1000) / n);
      }
      const [cpuUs, lstatUs] = [median(perEntry), median(perLstat)];
      row(
        `PROPFIND Depth 1 of ${n.toLocaleString('en')} files: µs per entry (Apache's CPU, all its processes vs one lstatSync here); ratio: Apache's CPU in lstats`,
        cpuUs.toFixed(2),
        lstatUs.toFixed(2),
        cpuUs / lstatUs,
        'context',
        true,
      );
      // What a sync client does after an upload: PUT a file into the folder, then list it. The
      // kept listing has the child marked and renders it again; Apache lists the folder again.
      const before = server.webdav?.listingCacheStats();
      const touched = (url: string) => () => listFolder(url, folder, auth, requests, { touch: true });
      const [a, s, ratio] = await ab(5, touched(apache.url), touched(ours));
      row(
        `PUT of a 4 KiB file into a folder of ${n.toLocaleString('en')} files, then PROPFIND Depth 1 of it, pairs/s (Apache mod_dav_fs vs Stowage)`,
        rps(a),
        rps(s),
        1 / ratio,
        'measure',
        true,
      );
      const after = server.webdav?.listingCacheStats();
      if (before && after)
        console.log(
          `  (meanwhile: ${after.hits - before.hits} hits, ${after.patched - before.patched} of them patched, ${after.misses - before.misses} misses)`,
        );
    }
    const kept = server.webdav?.listingCacheStats();
    if (kept) console.log(`  (kept listings: ${kept.hits} hits, ${kept.misses} misses)`);

    // ------------------------------------------ PROPFIND while another folder takes writes
    if (o.parts.includes('busy')) {
      // A folder of 1,000 files listed again and again while files keep arriving in another
      // folder of the same space (one PUT at a time, from the same client): what a browsing user
      // meets in a space that is being filled.
      const n = 1000;
      const folder = 'quiet';
      await sameFolder(folder, n);
      await sameFolder('busy', 0);
      const requests = 100;
      const before = server.webdav?.listingCacheStats();
      const load = (url: string) => () => listFolder(url, folder, auth, requests, { busy: `${url}/busy/` });
      const [a, s, ratio] = await ab(5, load(apache.url), load(ours));
      row(
        'PROPFIND Depth 1 of 1,000 files while another folder of the space takes PUTs, requests/s (Apache mod_dav_fs vs Stowage)',
        (requests / (a / 1000)).toFixed(1),
        (requests / (s / 1000)).toFixed(1),
        1 / ratio,
        '>= 2x',
        1 / ratio >= 2,
      );
      const after = server.webdav?.listingCacheStats();
      if (before && after)
        console.log(
          `  (kept listings meanwhile: ${after.hits - before.hits} hits, ${after.misses - before.misses} misses)`,
        );
    }

    // ------------------------------------------ PROPFIND as a web UI asks (with oc:favorite)
    if (o.parts.includes('web')) {
      // A folder of 1,000 files, 50 of them the user's favorites, listed with the properties the
      // ownCloud/OpenCloud web UI asks for. Apache answers the oc: ones 404 (less work than Stowage's
      // real values); Stowage keeps such a listing per state of the user's marks.
      const n = 1000;
      const folder = 'web';
      await sameFolder(folder, n);
      for (let i = 0; i < n; i += 20)
        await session.setFavorite(
          { space: space.id, path: `${folder}/file-${String(i).padStart(6, '0')}.dat` },
          true,
        );
      const requests = 100;
      await keptAndAnew(
        (how) => `PROPFIND Depth 1 of 1,000 files as a web UI asks, oc:favorite included (${how})`,
        (url) => () => listFolder(url, folder, auth, requests, { web: true }),
        requests,
        'measure',
      );
    }

    // ---------------------------------------------------------------- search by name
    if (o.parts.includes('search')) {
      // OpenCloud's search bar (REPORT oc:search-files with name:"*...*") over 10 folders of 1,000
      // files: there is no index, so a search is a walk of what the user may see. Apache has no
      // search; the baseline is a bare Node walk of the same tree (readdir, an lstat each, the
      // same name test), in this process, without HTTP: the floor for any walk in Node.
      const folders = 10;
      for (let f = 0; f < folders; f++) await sameFolder(`search-${f}`, 1000);
      // (synchronous calls: the fastest walk Node has, as Stowage's driver lists in batches of them)
      const walkBare = async (dir: string, re: RegExp): Promise<number> => {
        let found = 0;
        for (const name of fs.readdirSync(dir)) {
          const p = path.join(dir, name);
          const st = fs.lstatSync(p);
          if (re.test(name)) found++;
          if (st.isDirectory()) found += await walkBare(p, re);
        }
        return found;
      };
      const report = (pattern: string, limit?: number) =>
        `<?xml version="1.0"?><oc:search-files xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:getetag/><oc:fileid/><d:getcontentlength/><d:getlastmodified/></d:prop><oc:search><oc:pattern>${pattern}</oc:pattern>${limit ? `<oc:limit>${limit}</oc:limit>` : ''}</oc:search></oc:search-files>`;
      const spacesUrl = `http://${server.httpAddress}/dav/spaces/`;
      for (const [what, pattern, re, expected, limit] of [
        ['matching nothing', 'name:"*nothing-like-this*"', /nothing-like-this/i, 0, undefined],
        ['matching 10 files', 'name:"*000042*"', /000042/i, 10, undefined],
        // The search bar's preview: 8 results, and how many there are in all (the walk goes on
        // past the eighth to count them).
        ['matching 1,110 files, oc:limit 8 and the total', 'name:"*0004*"', /0004/i, 1110, 8],
      ] as const) {
        const searches = 5;
        const bare = () =>
          timed(async () => {
            for (let i = 0; i < searches; i++) {
              const n = await walkBare(apache.data, re);
              if (n !== expected) throw new Error(`bare walk found ${n}, not ${expected}`);
            }
          });
        const ours = () =>
          timed(async () => {
            for (let i = 0; i < searches; i++) {
              const r = await fetch(spacesUrl, {
                method: 'REPORT',
                headers: { authorization: auth },
                body: report(pattern, limit),
              });
              const text = await r.text();
              const n = (text.match(/<d:response>/g) ?? []).length;
              const total = limit ? r.headers.get('content-range')?.split('/')[1] : undefined;
              if (r.status !== 207 || n !== Math.min(expected, limit ?? expected))
                throw new Error(`search: ${r.status}, ${n} found: ${text.slice(0, 1500)}`);
              if (limit && total !== String(expected))
                throw new Error(`search: total ${total}, not ${expected}`);
            }
          });
        const [a, b, ratio] = await ab(3, bare, ours);
        row(
          `search of 10,000 files in 10 folders by name, ${what}, ms per search (bare Node walk vs Stowage REPORT)`,
          (a / searches).toFixed(1),
          (b / searches).toFixed(1),
          1 / ratio,
          'measure',
          true,
        );
      }
    }

    // ---------------------------------------------------------------- PUT many small files
    if (o.parts.includes('puts')) await smallPuts();
    async function smallPuts() {
      await fsp.mkdir(path.join(apache.data, 'puts'));
      await fsp.chown(path.join(apache.data, 'puts'), 33, 33).catch(() => {});
      await session.mkdir({ space: space.id, path: 'puts' });
      let round = 0;
      /** PUT the files of round `r` (named `r<r>-<i>.bin`) into `puts/`. */
      const putRound = (url: string, r: number) =>
        fromWorker({
          kind: 'puts',
          url: `${url}/puts/`,
          auth,
          files: o.files,
          size: 4096,
          concurrency: 4,
          round: r,
        });
      const puts = (url: string) => () => putRound(url, round++);
      // Steady state, for both: a server that has been running. (Stowage's first few thousand
      // PUTs run at half speed while V8 optimises its code; Apache has nothing to warm up.)
      for (let i = 0; i < 4; i++) {
        await puts(apache.url)();
        await puts(ours)();
      }
      const [pa, ps, pr] = await ab(5, puts(apache.url), puts(ours));
      const fps = (ms: number) => (o.files / (ms / 1000)).toFixed(0);
      row(
        `PUT ${o.files.toLocaleString('en')} files of 4 KiB, files/s (4 in flight)`,
        fps(pa),
        fps(ps),
        1 / pr,
        '>= 1x',
        1 / pr >= 1,
      );
      // What a sync client's first download does: GET each of 1,000 files once, 4 in flight (the
      // same names on both servers, written for this).
      const g = round++;
      for (const url of [apache.url, ours]) await putRound(url, g);
      const names = Array.from({ length: o.files }, (_, i) => `r${g}-${i}.bin`);
      const gets = (url: string) => () =>
        fromWorker({ kind: 'gets', url: `${url}/puts/`, auth, names, size: 4096, concurrency: 4 });
      const [ga, gs, gr] = await ab(5, gets(apache.url), gets(ours));
      row(
        `GET ${o.files.toLocaleString('en')} files of 4 KiB, files/s (4 in flight)`,
        fps(ga),
        fps(gs),
        1 / gr,
        'measure',
        true,
      );
      // For context: a bare node:http server that reads each file whole and sends it (no auth,
      // ids, permissions or conditions): what Node.js itself costs.
      const spaceDir = await driver.spacePath(space.id);
      const bareGet = http.createServer((req, res) => {
        const name = path.basename(new URL(req.url ?? '/', 'http://x').pathname);
        fs.readFile(path.join(spaceDir, 'puts', name), (err, b) =>
          err ? res.writeHead(404).end() : res.writeHead(200, { 'content-length': b.length }).end(b),
        );
      });
      await withServer(bareGet, async (bareUrl) => {
        const bareGets = () =>
          fromWorker({ kind: 'gets', url: `${bareUrl}/puts/`, auth, names, size: 4096, concurrency: 4 });
        const [ba, bs, br] = await ab(5, gets(apache.url), bareGets);
        const what = `GET ${o.files.toLocaleString('en')} files of 4 KiB, files/s (Apache vs bare node:http readFile + send)`;
        row(what, fps(ba), fps(bs), 1 / br, 'context', true);
      });
      // For context: what Node.js itself costs these PUTs.
      await withServer(bareWriter(await fsp.mkdtemp(path.join(root, 'bare-'))), async (bareUrl) => {
        const [ba, bs, br] = await ab(5, puts(bareUrl), puts(ours));
        const what = `PUT ${o.files.toLocaleString('en')} files of 4 KiB, files/s (bare node:http write + rename vs Stowage)`;
        row(what, fps(ba), fps(bs), 1 / br, 'context', true);
      });
    }

    // ---------------------------------------------------------------- big file
    if (o.parts.includes('big')) await bigFile();
    async function bigFile() {
      const size = o.mib * 1024 * 1024;
      const src = path.join(root, 'big.src');
      await fsp.writeFile(src, randomBytes(size));
      const mbps = (ms: number) => (size / 1e6 / (ms / 1000)).toFixed(0);
      const put = (url: string) => () => fromWorker({ kind: 'put', url: `${url}/big.bin`, auth, src, size });
      const [ua, us, ur] = await ab(3, put(apache.url), put(ours));
      row(`PUT of a ${o.mib} MiB file, MB/s`, mbps(ua), mbps(us), 1 / ur, '>= 1x', 1 / ur >= 1);
      // For context: what Node.js itself costs this PUT.
      await withServer(bareWriter(await fsp.mkdtemp(path.join(root, 'bare-big-'))), async (bareUrl) => {
        const [ba, bs, br] = await ab(3, put(bareUrl), put(ours));
        const what = `PUT of a ${o.mib} MiB file, MB/s (bare node:http write stream + rename vs Stowage)`;
        row(what, mbps(ba), mbps(bs), 1 / br, 'context', true);
      });
      const get = (url: string) => () => fromWorker({ kind: 'get', url: `${url}/big.bin`, auth });
      const [ga, gs, gr] = await ab(5, get(apache.url), get(ours));
      row(`GET of a ${o.mib} MiB file, MB/s`, mbps(ga), mbps(gs), 1 / gr, '>= 1x', 1 / gr >= 1);
      // For context: the same file from a bare node:http server piping a read stream (1 MiB reads),
      // the most a Node.js server does without sendfile.
      const file = path.join(await driver.spacePath(space.id), 'big.bin');
      const bare = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-length': String(size) });
        fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
      });
      await withServer(bare, async (bareUrl) => {
        const [ba, bs, br] = await ab(5, get(bareUrl), get(ours));
        const what = `GET of a ${o.mib} MiB file, MB/s (bare node:http read stream vs Stowage)`;
        row(what, mbps(ba), mbps(bs), 1 / br, 'context', true);
      });
    }
  } finally {
    await observer.close();
    await plain.close();
    await server.close();
    await provider.close();
    await apache.stop();
    await fsp.rm(root, { recursive: true, force: true });
  }
}
