/**
 * The CS3 door, against baselines run in the same process and interleaved:
 * - CS3 Stat calls/s over loopback, against a bare grpc-js unary call with an empty message;
 * - a 10,000-entry ListContainer (unary and stream), against the same listing in process;
 * - upload and download of a big file through the data plane, against a raw disk copy.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { StaticIdentitySource } from '../src/core/identity.js';
import { StorageProvider } from '../src/core/provider.js';
import { Cs3Client } from '../src/cs3/client.js';
import { mintRevaToken } from '../src/cs3/jwt.js';
import { serveCs3 } from '../src/cs3/serve.js';
import { createPosixDriver } from '../src/drivers/posix/index.js';
import { ab, row, timed } from './lib.js';

/** Run `total` calls of `call`, `concurrency` at a time. */
async function hammer(total: number, concurrency: number, call: () => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) await call();
    }),
  );
}

/** Time `calls` unary calls of raw bytes from a worker thread (ms). */
function loadFromWorker(job: {
  address: string;
  method: string;
  body: Buffer;
  token: string;
  calls: number;
  concurrency: number;
}): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job });
    w.once('message', (ms: number) => resolve(ms));
    w.once('error', reject);
    w.once('exit', (code) => (code ? reject(new Error(`load worker exited ${code}`)) : undefined));
  });
}

if (!isMainThread && workerData?.method) {
  const job = workerData as {
    address: string;
    method: string;
    body: Uint8Array;
    token: string;
    calls: number;
    concurrency: number;
  };
  const client = new grpc.Client(job.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('x-access-token', job.token);
  const body = Buffer.from(job.body);
  const call = () =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(
        job.method,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        md,
        (e) => (e ? reject(e) : resolve()),
      ),
    );
  await hammer(200, job.concurrency, call); // connect and warm up
  const ms = await timed(() => hammer(job.calls, job.concurrency, call));
  client.close();
  parentPort!.postMessage(ms);
}

/** A transfer on another thread: a raw copy, an HTTP PUT of a file, or an HTTP GET into a file. */
type Transfer =
  | { kind: 'copy'; src: string; dst: string }
  | { kind: 'put'; src: string; url: string; size: number }
  | { kind: 'get'; url: string; dst: string };

function transferFromWorker(job: Transfer): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { transfer: job } });
    w.once('message', (ms: number) => resolve(ms));
    w.once('error', reject);
    w.once('exit', (code) => (code ? reject(new Error(`transfer worker exited ${code}`)) : undefined));
  });
}

/** Write a stream to a file and fsync it. */
async function copyTo(from: NodeJS.ReadableStream, to: string): Promise<void> {
  await pipeline(from, fs.createWriteStream(to));
  const fh = await fsp.open(to, 'r');
  await fh.sync();
  await fh.close();
}

if (!isMainThread && workerData?.transfer) {
  const job = workerData.transfer as Transfer;
  const ms = await timed(async () => {
    if (job.kind === 'copy') {
      await copyTo(fs.createReadStream(job.src, { highWaterMark: 1 << 20 }), job.dst);
    } else if (job.kind === 'put') {
      await new Promise<void>((resolve, reject) => {
        const req = http.request(
          job.url,
          { method: 'PUT', headers: { 'content-length': String(job.size) } },
          (res) => {
            res.resume();
            res.on('end', () =>
              res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${res.statusCode}`)),
            );
          },
        );
        req.on('error', reject);
        fs.createReadStream(job.src, { highWaterMark: 1 << 20 }).pipe(req);
      });
    } else {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get(job.url, resolve).on('error', reject),
      );
      if (res.statusCode !== 200) throw new Error(`GET ${res.statusCode}`);
      await copyTo(res, job.dst);
    }
  });
  parentPort!.postMessage(ms);
}

/** A grpc-js server with one unary method taking and returning an empty message. */
async function bareServer(): Promise<{ address: string; close(): void }> {
  const server = new grpc.Server();
  const empty = Buffer.alloc(0);
  server.addService(
    {
      ping: {
        path: '/bench.Bare/Ping',
        requestStream: false,
        responseStream: false,
        requestSerialize: () => empty,
        requestDeserialize: () => ({}),
        responseSerialize: () => empty,
        responseDeserialize: () => ({}),
      },
    },
    { ping: (_call: unknown, cb: (e: null, r: object) => void) => cb(null, {}) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

export async function benchCs3(
  base: string,
  o: { mib: number; entries: number; parts: readonly string[] },
): Promise<void> {
  await fsp.mkdir(base, { recursive: true });
  const root = await fsp.mkdtemp(path.join(base, 'cs3-'));
  const secret = 'bench-secret';
  const identity = await StaticIdentitySource.create({
    users: [{ id: 'bench', username: 'bench', createSpaces: true }],
  });
  const driver = await createPosixDriver({ root: path.join(root, 'data'), keepVersions: 1 });
  const provider = new StorageProvider({ drivers: driver, identity });
  const server = await serveCs3({
    provider,
    jwtSecret: secret,
    grpc: '127.0.0.1:0',
    http: '127.0.0.1:0',
    uploadsDir: path.join(root, 'uploads'),
  });
  const token = mintRevaToken({ id: 'bench', username: 'bench' }, secret);
  const client = new Cs3Client(server.grpcAddress, { token });
  const bare = await bareServer();
  try {
    const sp = (await client.spacesOk('createStorageSpace', { type: 'project', name: 'Bench' }))
      .storageSpace!;
    const session = await provider.as('bench');
    const spaceId = sp.root!.spaceId;
    await session.mkdir({ space: spaceId, path: 'projects/2024' }, { parents: true });
    await session.write({ space: spaceId, path: 'projects/2024/report.pdf' }, Buffer.alloc(4096, 1));

    // ---------------------------------------------------------------- Stat rate
    if (o.parts.includes('stat')) {
      // The load comes from another thread (its own event loop, the machine's other core), as a
      // gateway's would; both runs send the same pre-encoded bytes and the same token metadata, so
      // the difference is what the server does.
      const calls = 6000;
      const ref = { resourceId: sp.root, path: './projects/2024/report.pdf' };
      const { StatRequest } = await import('../src/cs3/gen/cs3/storage/provider/v1beta1/provider_api.js');
      const statBytes = Buffer.from(StatRequest.encode(StatRequest.fromPartial({ ref })).finish());
      const rps = (ms: number) => Math.round(calls / (ms / 1000)).toLocaleString('en');
      for (const concurrency of [16, 64]) {
        const load = (address: string, method: string, body: Buffer) => () =>
          loadFromWorker({ address, method, body, token, calls, concurrency });
        const [tb, ts, slower] = await ab(
          9,
          load(bare.address, '/bench.Bare/Ping', Buffer.alloc(0)),
          load(server.grpcAddress, '/cs3.storage.provider.v1beta1.ProviderAPI/Stat', statBytes),
        );
        row(
          `CS3 Stat over loopback vs bare grpc-js unary (empty message), calls/s (${concurrency} in flight, client in a worker)`,
          rps(tb),
          rps(ts),
          1 / slower,
          '>= 0.7x',
          1 / slower >= 0.7,
        );
      }
      // Through Stowage's own TypeScript client, in this thread: what an embedding app sees.
      const own = () => timed(() => hammer(calls, 16, () => client.providerOk('stat', { ref })));
      const [tc] = [await own()];
      console.log(`  the same Stat through Cs3Client, in the server's own thread: ${rps(tc)} calls/s`);
    }

    // ---------------------------------------------------------------- ListContainer
    if (o.parts.includes('list')) {
      const folder = { space: spaceId, path: 'big' };
      await session.mkdir(folder);
      const filler = await createPosixDriver({ root: path.join(root, 'data'), durable: false });
      const fill = new StorageProvider({ drivers: filler });
      for (let i = 0; i < o.entries; i += 250) {
        await Promise.all(
          Array.from({ length: Math.min(250, o.entries - i) }, (_, j) =>
            fill.write(
              { space: spaceId, path: `big/file-${String(i + j).padStart(6, '0')}.dat` },
              `${i + j}`,
            ),
          ),
        );
      }
      await fill.close();
      const bigRef = { resourceId: sp.root, path: './big' };
      const inProcess = () =>
        timed(async () => {
          let n = 0;
          for await (const _ of session.list(folder)) n++;
          if (n !== o.entries) throw new Error(`listed ${n}`);
        });
      const unary = () =>
        timed(async () => {
          const res = await client.providerOk('listContainer', { ref: bigRef });
          if (res.infos.length !== o.entries || res.nextPageToken)
            throw new Error(`listed ${res.infos.length}`);
        });
      const stream = () =>
        timed(async () => {
          let n = 0;
          for await (const _ of client.providerStream('listContainerStream', { ref: bigRef })) n++;
          if (n !== o.entries) throw new Error(`streamed ${n}`);
        });
      const [li, lu, lur] = await ab(7, inProcess, unary);
      row(
        `CS3 ListContainer of ${o.entries.toLocaleString('en')} entries (one message) vs the same listing in process, ms`,
        li.toFixed(0),
        lu.toFixed(0),
        lur,
        'report',
        true,
      );
      const [li2, ls, lsr] = await ab(7, inProcess, stream);
      row(
        `CS3 ListContainerStream of ${o.entries.toLocaleString('en')} entries vs the same listing in process, ms`,
        li2.toFixed(0),
        ls.toFixed(0),
        lsr,
        'report',
        true,
      );
      const one = await client.providerOk('listContainer', { ref: bigRef });
      const { ListContainerResponse } = await import(
        '../src/cs3/gen/cs3/storage/provider/v1beta1/provider_api.js'
      );
      const bytes = ListContainerResponse.encode(one).finish().length;
      console.log(
        `  one ListContainerResponse of ${o.entries} entries: ${(bytes / 1e6).toFixed(2)} MB, ${Math.round(bytes / o.entries)} B/entry; under 9.5 MB that is ${Math.floor(9_500_000 / (bytes / o.entries)).toLocaleString('en')} entries per message before paging`,
      );
    }

    // ---------------------------------------------------------------- data plane
    if (o.parts.includes('data')) {
      const size = o.mib * 1024 * 1024;
      const src = path.join(root, 'source.bin');
      {
        const fh = await fsp.open(src, 'w');
        const block = Buffer.alloc(1 << 20);
        for (let i = 0; i < o.mib; i++) {
          block.fill(i & 0xff);
          await fh.write(block);
        }
        await fh.close();
      }
      // Transfers run on another thread (a client elsewhere), as the raw copy does: the server keeps
      // this thread to itself.
      const rawCopy = () => transferFromWorker({ kind: 'copy', src, dst: path.join(root, 'copy.bin') });
      const sha1 = createHash('sha1');
      await pipeline(fs.createReadStream(src), sha1);
      const sum = sha1.digest('hex');
      const uploadOnce = async () => {
        const init = await client.providerOk('initiateFileUpload', {
          ref: { resourceId: sp.root, path: './big.bin' },
          opaque: {
            map: {
              'Upload-Length': { decoder: 'plain', value: Buffer.from(String(size)) },
              'Upload-Checksum': { decoder: 'plain', value: Buffer.from(`sha1 ${sum}`) },
            },
          },
        });
        const url = init.protocols.find((p) => p.protocol === 'simple')!.uploadEndpoint;
        return transferFromWorker({ kind: 'put', src, url, size });
      };
      const downloadOnce = async () => {
        const init = await client.providerOk('initiateFileDownload', {
          ref: { resourceId: sp.root, path: './big.bin' },
        });
        const url = init.protocols.find((p) => p.protocol === 'simple')!.downloadEndpoint;
        return transferFromWorker({ kind: 'get', url, dst: path.join(root, 'downloaded.bin') });
      };
      const mbps = (ms: number) => (size / 1e6 / (ms / 1000)).toFixed(0);
      const [cu, up, upr] = await ab(3, rawCopy, uploadOnce);
      row(
        `CS3 upload of ${o.mib} MiB (simple PUT, sha1 verified, 3 checksums, fsync) vs raw disk copy, MB/s`,
        mbps(cu),
        mbps(up),
        1 / upr,
        '>= 0.8x',
        1 / upr >= 0.8,
      );
      const [cd, down, downr] = await ab(3, rawCopy, downloadOnce);
      row(
        `CS3 download of ${o.mib} MiB (simple GET to a local file, fsync) vs raw disk copy, MB/s`,
        mbps(cd),
        mbps(down),
        1 / downr,
        '>= 0.8x',
        1 / downr >= 0.8,
      );
    }
  } finally {
    bare.close();
    client.close();
    await server.close();
    await provider.close();
    await fsp.rm(root, { recursive: true, force: true });
  }
}
