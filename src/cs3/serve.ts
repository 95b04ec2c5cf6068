/**
 * Run the CS3 door: the gRPC server (ProviderAPI + SpacesAPI) and the HTTP data plane, in one
 * process, over one {@link StorageProvider}.
 *
 * @module
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { StorageError } from '../core/errors.js';
import type { StorageProvider } from '../core/provider.js';
import { continueOnRead } from '../http/common.js';
import { type CorsOptions, corsHandler } from '../http/cors.js';
import { WebDav, type WebDavOptions } from '../webdav/handler.js';
import { DataPlane } from './dataplane.js';
import { Cs3Service } from './server.js';
import { TusUploads } from './tus.js';

/** Options for {@link serveCs3}. */
export interface ServeCs3Options {
  /** The system provider; it needs an identity source (the users tokens may name). */
  provider: StorageProvider;
  /** Secret of Reva access tokens (`jwt_secret`, shared with the gateway). */
  jwtSecret: string;
  /** Secret of transfer tokens (Reva's `transfer_shared_secret`); default: `jwtSecret`. */
  transferSecret?: string;
  /** gRPC listen address, `host:port` (port 0: any free port), or false for none. Default `127.0.0.1:9142`. */
  grpc?: string | false;
  /**
   * Serve WebDAV (and the ownCloud endpoints) on the HTTP address too, next to the data plane:
   * true, or the options of {@link WebDav} other than the provider and the JWT secret.
   */
  webdav?: boolean | Omit<WebDavOptions, 'provider' | 'jwtSecret' | 'tus'>;
  /** Data plane listen address, `host:port`. Default `127.0.0.1:9143`. */
  http?: string;
  /**
   * Serve HTTPS on the HTTP address and TLS on the gRPC one, with this certificate (chain) and
   * its private key, PEM. Windows' WebClient sends Basic credentials over HTTPS only, and any
   * password crossing a network should be encrypted.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Public base URL of the data plane (default `http(s)://<http address>/data`). */
  dataUrl?: string;
  /** Folder of resumable uploads in progress; it must survive restarts to resume them. */
  uploadsDir: string;
  /** See {@link Cs3ServiceOptions.exposeDataServer}. */
  exposeDataServer?: boolean;
  /** See {@link Cs3ServiceOptions.maxListBytes}. */
  maxListBytes?: number;
  /** Largest gRPC request accepted, bytes (default 4 MiB; larger ones get RESOURCE_EXHAUSTED). */
  maxRequestBytes?: number;
  transferTtlSeconds?: number;
  uploadTtlSeconds?: number;
  /** Resumable (TUS) uploads a user may have in progress at once (default 100). */
  maxUploadsPerUser?: number;
  /**
   * A connection that sends or takes nothing for this long is closed (default 120,000 ms). Big
   * uploads may take hours; only silence ends them. Event streams send a ping every 15 s.
   */
  idleTimeoutMs?: number;
  /** Open HTTP connections at most; more are refused at once (default 4,096). */
  maxConnections?: number;
  /**
   * Let pages of these origins call the HTTP doors (WebDAV, TUS, the data plane) from a browser:
   * see {@link corsHandler}. Default: no cross-origin access.
   */
  cors?: CorsOptions;
  /** Failures worth a look (never tokens or secrets). */
  log?: (message: string, err?: unknown) => void;
}

/** A running CS3 door. */
export interface Cs3Server {
  /** `host:port` the gRPC server listens on (empty without gRPC). */
  readonly grpcAddress: string;
  /** `host:port` the data plane listens on. */
  readonly httpAddress: string;
  /** Public base URL of the data plane. */
  readonly dataUrl: string;
  /** The WebDAV door, when it is served. */
  readonly webdav: WebDav | undefined;
  /** Stop accepting calls, finish those in flight (at most `graceMs`), and close. */
  close(graceMs?: number): Promise<void>;
}

function splitAddress(a: string, what: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(a);
  if (!m) throw new StorageError('INVALID_ARGUMENT', `${what} must be host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(m[2]) };
}

/** Start the gRPC server and the data plane. */
export async function serveCs3(opts: ServeCs3Options): Promise<Cs3Server> {
  // Everything that can refuse the options does so before a port is bound or a file opened.
  if (!opts.jwtSecret) throw new StorageError('INVALID_ARGUMENT', 'a JWT secret is required');
  if (!opts.provider.identity) {
    throw new StorageError(
      'INVALID_ARGUMENT',
      'the provider needs an identity source (the users tokens name)',
    );
  }
  const h = splitAddress(opts.http ?? '127.0.0.1:9143', 'the http address');
  const g = opts.grpc === false ? undefined : splitAddress(opts.grpc ?? '127.0.0.1:9142', 'the grpc address');
  const cors = opts.cors && corsHandler(opts.cors);
  const uploads = new TusUploads(opts.uploadsDir, opts.log);
  await uploads.open();

  // The data plane first: its address goes into the endpoints the gRPC answers hand out.
  let plane: DataPlane | undefined;
  let dav: WebDav | undefined;
  const onRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (cors?.(req, res)) return;
    if (dav && !req.url?.startsWith('/data/') && (await dav.handle(req, res))) return;
    plane!.handle(req, res);
  };
  let httpServer: http.Server;
  try {
    httpServer = opts.tls
      ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest)
      : http.createServer(onRequest);
  } catch (err) {
    uploads.close();
    throw new StorageError('INVALID_ARGUMENT', `the TLS certificate or key: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // Requests Node's parser refuses before any handler sees them. Its default answer is 400 for all
  // but oversized headers and timeouts; a method it does not know is 501 (RFC 9110 §9.1).
  httpServer.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_INVALID_METHOD'
        ? 501
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? 431
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 408
            : 400;
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    );
  });
  httpServer.on('checkContinue', (req, res) => {
    continueOnRead(req, res);
    httpServer.emit('request', req, res);
  });
  // Big uploads take long: no overall request timeout, but slow headers are cut off, a silent
  // connection is closed, and their number is bounded (each holds a descriptor or two).
  httpServer.requestTimeout = 0;
  httpServer.headersTimeout = 60_000;
  httpServer.keepAliveTimeout = 30_000;
  httpServer.timeout = opts.idleTimeoutMs ?? 120_000; // no 'timeout' listener: the socket is destroyed
  httpServer.maxConnections = opts.maxConnections ?? 4096;
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(h.port, h.host, () => resolve());
  }).catch((err) => {
    uploads.close();
    throw new StorageError('UNAVAILABLE', `cannot listen on ${opts.http}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  const ha = httpServer.address() as AddressInfo;
  const httpAddress = `${ha.family === 'IPv6' ? `[${ha.address}]` : ha.address}:${ha.port}`;
  const dataUrl = (opts.dataUrl ?? `${opts.tls ? 'https' : 'http'}://${httpAddress}/data`).replace(
    /\/+$/,
    '',
  );
  plane = new DataPlane({
    provider: opts.provider,
    secret: opts.transferSecret ?? opts.jwtSecret,
    dataUrl,
    uploads,
    ...(opts.transferTtlSeconds !== undefined && { transferTtlSeconds: opts.transferTtlSeconds }),
    ...(opts.uploadTtlSeconds !== undefined && { uploadTtlSeconds: opts.uploadTtlSeconds }),
    ...(opts.maxUploadsPerUser !== undefined && { maxUploadsPerUser: opts.maxUploadsPerUser }),
    ...(opts.log && { log: opts.log }),
  });
  if (opts.webdav) {
    dav = new WebDav({
      provider: opts.provider,
      jwtSecret: opts.jwtSecret,
      tus: plane,
      ...(opts.log && { log: opts.log }),
      ...(typeof opts.webdav === 'object' && opts.webdav),
    });
  }

  const service = new Cs3Service({
    provider: opts.provider,
    jwtSecret: opts.jwtSecret,
    dataPlane: plane,
    ...(opts.exposeDataServer !== undefined && { exposeDataServer: opts.exposeDataServer }),
    ...(opts.maxListBytes !== undefined && { maxListBytes: opts.maxListBytes }),
    ...(opts.log && { log: opts.log }),
  });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxRequestBytes ?? 4 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  server.addService(...service.providerService());
  server.addService(...service.spacesService());
  let grpcAddress = '';
  if (g) {
    const host = g.host.includes(':') ? `[${g.host}]` : g.host;
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${host}:${g.port}`,
        opts.tls
          ? grpc.ServerCredentials.createSsl(
              null,
              [{ cert_chain: Buffer.from(opts.tls.cert), private_key: Buffer.from(opts.tls.key) }],
              false,
            )
          : grpc.ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    ).catch((err) => {
      httpServer.close();
      uploads.close();
      throw new StorageError('UNAVAILABLE', `cannot listen on ${opts.grpc}: ${(err as Error).message}`, {
        cause: err,
      });
    });
    grpcAddress = `${host}:${port}`;
  }

  let closed: Promise<void> | undefined;
  return {
    grpcAddress,
    httpAddress,
    dataUrl,
    webdav: dav,
    close(graceMs = 5000) {
      closed ??= (async () => {
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, graceMs);
          force.unref();
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        httpServer.closeIdleConnections();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            httpServer.closeAllConnections();
          }, graceMs);
          force.unref();
          httpServer.close(() => {
            clearTimeout(force);
            resolve();
          });
        });
        uploads.close();
        dav?.close();
      })();
      return closed;
    },
  };
}
