#!/usr/bin/env node
/**
 * `stowage`: scriptable commands over a storage root folder. Exit codes are stable (see
 * {@link EXIT_CODES}); `--json` prints machine-readable output (one JSON object per line for listings).
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { parseRangeHeader } from '../core/conditions.js';
import { type ErrorCode, StorageError, toStorageError } from '../core/errors.js';
import { replaceFile, syncedTemp, syncFolderOf } from '../core/files.js';
import { hashPassword, StaticIdentitySource, type StaticUser } from '../core/identity.js';
import {
  fromLetters,
  type Grantee,
  permissionsToRole,
  ROLES,
  type Role,
  roleToPermissions,
  toLetters,
} from '../core/permissions.js';
import { StorageProvider } from '../core/provider.js';
import { formatResourceId, printable, slugify } from '../core/refs.js';
import type { Checksums, LockType, ResourceInfo, Space, SpaceType, WriteOptions } from '../core/types.js';
import { createPosixDriver, type PosixDriver } from '../drivers/posix/index.js';
import { addressKey, clientAddressOf } from '../http/sign-ins.js';

/** Exit status per error code; 0 is success, 1 an unexpected failure, 2 a usage error. */
export const EXIT_CODES: Readonly<Record<ErrorCode, number>> = Object.freeze({
  INVALID_ARGUMENT: 2,
  NOT_FOUND: 3,
  ALREADY_EXISTS: 4,
  PERMISSION_DENIED: 5,
  UNAUTHENTICATED: 5,
  FAILED_PRECONDITION: 6,
  LOCKED: 7,
  INSUFFICIENT_STORAGE: 8,
  CANCELLED: 9,
  ABORTED: 9,
  UNIMPLEMENTED: 10,
  UNAVAILABLE: 11,
  TOO_EARLY: 12,
  INTERNAL: 1,
});

const USAGE = `Usage: stowage [--root DIR] [--json] <command> [args]

Paths are /<space alias>/<path> (e.g. /project/demo/docs/a.txt, /personal/alice/x)
or a resource id, optionally followed by a relative path (storage$space!node/sub/x).

Commands:
  quickstart [--owner USER]         create the space project/quickstart, put a file, list it;
                                    USER becomes its manager (who sees it over WebDAV)
  space ls                          list spaces (a disabled one is marked so)
  space create <personal|project> <name> [--alias TYPE/NAME] [--owner USER] [--quota BYTES]
                                    [--description TEXT]; the alias defaults to the name made
                                    path-safe, and an existing one is an error (exit 4)
  space disable|enable <space>      disable a space (nothing in it can be reached) or restore it
  space rm <space>                  delete a disabled space and everything in it
  ls <path>                         list a folder
  stat <path>                       show a file or folder
  put <local-file|-> <path>         upload (from stdin with -) [--mtime WHEN] [--if-match ETAG]
                                    [--if-none-match] [--checksum ALGO:HEX]
  get <path> [local-file|-]         download (to stdout by default) [--range START-END|START-|-LENGTH]
                                    (bytes, END included; -LENGTH: the last LENGTH bytes)
  mkdir [-p] <path>                 create a folder (-p: with parents, existing is fine)
  mv <from> <to> [--overwrite]      move or rename (ids are kept)
  cp <from> <to> [--overwrite]      copy (copies get new ids)
  rm <path>                         delete a file or a folder with everything in it
  meta <path> [key ...]             show arbitrary metadata (all keys when none are given)
  meta-set <path> key=value ...     set arbitrary metadata
  meta-unset <path> key ...         remove arbitrary metadata
  trash ls <space> [--key KEY]      what was deleted (KEY: look inside a deleted folder)
  trash restore <space> <key> [--to PATH]   put it back (where it was, or at PATH); ids are kept
  trash purge <space> [key] [--older-than AGE]
                                    remove one item for good, or empty the trash (with
                                    --older-than: only what was deleted longer ago than AGE)
  versions ls <path>                previous contents of a file, newest first
  versions get <path> <key> [local-file|-]  download one
  versions restore <path> <key>     make it current (the current content becomes a version)
  grants ls <path>                  grants set on a file or folder
  grants set <path> user:ID|group:ID <viewer|uploader|editor|manager|LETTERS> [--expires WHEN]
  grants deny <path> user:ID|group:ID       deny everything here and below
  grants rm <path> user:ID|group:ID
  lock <path> [--lock-id ID] [--type exclusive|write|shared] [--expires WHEN]
  unlock <path> <lock-id>
  fsck [--space S] [--repair] [--checksums] [--verify]
                                    check ids, tree sizes and the id index against the disk;
                                    --checksums also reads files touched since their checksums
                                    (reporting stale ones) and, with --repair, computes missing ones;
                                    --verify reads every file and compares it with its checksums
                                    (writes to the space wait meanwhile; a mismatch is reported,
                                    never repaired: touch the file to accept its bytes)
  serve [DIR] [--http HOST:PORT] [--user NAME[:PASSWORD[:admin][:create-spaces][:groups=G1+G2]]]...
        [--users FILE] [--grpc HOST:PORT] [--jwt-secret SECRET] [--transfer-secret SECRET]
        [--data-url URL] [--tls-cert FILE --tls-key FILE] [--trusted-proxy ADDRESS]... [--no-watch]
        [--depth-infinity] [--cors-origin ORIGIN]... [--trash-retention AGE]
                                    serve the storage until SIGINT/SIGTERM: WebDAV (RFC 4918 and the
                                    ownCloud dialect of sync clients) and the CS3 data plane on the
                                    HTTP address (default 127.0.0.1:9143); the CS3 gRPC door
                                    (ProviderAPI, SpacesAPI) too when --grpc or a JWT secret is given
                                    (default 127.0.0.1:9142). Without --user/--users, the users are
                                    kept in DIR/.stowage/users.json; the first run creates an admin
                                    and prints its password once. Secrets may come from
                                    $STOWAGE_JWT_SECRET and $STOWAGE_TRANSFER_SECRET (a gateway's
                                    transfer_shared_secret; default: the JWT secret). Files written
                                    into DIR/spaces/ by other programs are assimilated and announced
                                    (GET /events) unless --no-watch is given. With --tls-cert and
                                    --tls-key (PEM), HTTPS and gRPC over TLS (Windows' WebClient
                                    sends passwords over HTTPS only). An address that keeps failing
                                    to sign in must wait (429); behind a reverse proxy, name it with
                                    --trusted-proxy (repeatable) so clients are told apart by the
                                    X-Forwarded-For it adds. --depth-infinity answers PROPFIND
                                    with Depth: infinity (a whole tree, streamed; refused with 403
                                    by default, as Apache's DavDepthInfinity Off). --cors-origin
                                    (repeatable; * for any) lets web pages of that origin call
                                    WebDAV, TUS and the data plane from a browser.
                                    --trash-retention purges what was deleted longer ago than
                                    AGE from every space's trash (which counts against quotas),
                                    at start and every tenth of AGE (at most hourly); default:
                                    kept until purged (trash purge)
  passwd USERNAME                   give a user kept in DIR/.stowage/users.json (serve without
                                    --user/--users) a new generated password, printed once; a
                                    running serve takes it when restarted
  token --user ID [--jwt-secret SECRET] [--ttl SECONDS] [--groups G1,G2]
                                    print a Reva-style access token (x-access-token) for a user
                                    (the secret from $STOWAGE_JWT_SECRET when not given)

Options:
  --root DIR      storage root (default: $STOWAGE_ROOT or ./data)
  --lock-id ID    the lock id to present for put, mv, rm, meta-set/unset on a locked resource
  --json          machine-readable output; errors as {"error":{...}} on stderr
  WHEN            (--mtime, --expires) an ISO 8601 date and time, or Unix seconds
  AGE             (--older-than, --trash-retention) a number with a unit: 30d, 12h, 90m, 45s
  -h, --help      this text

Exit status: 0 ok, 1 unexpected failure, 2 invalid usage or argument, 3 not found,
4 already exists, 5 permission denied, 6 precondition failed (missing parent, folder in
the way, etag mismatch), 7 locked, 8 insufficient storage, 9 cancelled or aborted (a wrong
lock id), 10 unsupported, 11 unavailable, 12 too early.
`;

interface Opts {
  root: string;
  json: boolean;
  parents: boolean;
  overwrite: boolean;
  repair: boolean;
  checksums: boolean;
  verify: boolean;
  mtime?: string;
  range?: string;
  'if-match'?: string;
  'if-none-match': boolean;
  checksum?: string;
  owner?: string;
  alias?: string;
  quota?: string;
  description?: string;
  'no-watch'?: boolean;
  'depth-infinity'?: boolean;
  space?: string;
  'lock-id'?: string;
  key?: string;
  to?: string;
  expires?: string;
  'older-than'?: string;
  'trash-retention'?: string;
  type?: string;
  'jwt-secret'?: string;
  grpc?: string;
  http?: string;
  'data-url'?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  'transfer-secret'?: string;
  'trusted-proxy'?: string[];
  'cors-origin'?: string[];
  user?: string[];
  users?: string;
  ttl?: string;
  groups?: string;
}

class UsageError extends Error {}

/** A log to stderr, prefixed, naming the error when there is one (a message alone stays alone). */
function logTo(prefix: string): (message: string, err?: unknown) => void {
  return (message, err) => {
    const why = err === undefined ? '' : `: ${err instanceof Error ? err.message : String(err)}`;
    process.stderr.write(`${prefix}: ${message}${why}\n`);
  };
}

/**
 * The client address of a request, as sign-ins are counted, behind the reverse proxies named:
 * from one of them, the last `X-Forwarded-For` entry that is not one of them (what the nearest
 * proxy saw); from anyone else, the peer's own address (a header anybody can send is not believed).
 */
function forwardedClient(proxies: readonly string[]): (req: http.IncomingMessage) => string {
  const trusted = new Set(
    proxies.map((p) => {
      const a = p.trim().replace(/^\[(.*)\]$/, '$1');
      if (net.isIP(a) === 0)
        throw new UsageError(`--trusted-proxy: ${JSON.stringify(p)} is not an IP address`);
      return addressKey(a);
    }),
  );
  return (req) => {
    const peer = clientAddressOf(req);
    if (!trusted.has(peer)) return peer;
    const hops = (req.headers['x-forwarded-for'] ?? '')
      .toString()
      .split(',')
      .map((h) => h.trim().replace(/^\[(.*)\](:\d+)?$/, '$1'))
      .filter((h) => net.isIP(h) !== 0)
      .map(addressKey);
    for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i]!;
    return peer;
  };
}

function parse(argv: string[]): { opts: Opts; args: string[]; help: boolean } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      root: { type: 'string' },
      json: { type: 'boolean', default: false },
      parents: { type: 'boolean', short: 'p', default: false },
      overwrite: { type: 'boolean', default: false },
      repair: { type: 'boolean', default: false },
      checksums: { type: 'boolean', default: false },
      verify: { type: 'boolean', default: false },
      mtime: { type: 'string' },
      range: { type: 'string' },
      'if-match': { type: 'string' },
      'if-none-match': { type: 'boolean', default: false },
      checksum: { type: 'string' },
      owner: { type: 'string' },
      alias: { type: 'string' },
      quota: { type: 'string' },
      description: { type: 'string' },
      space: { type: 'string' },
      'lock-id': { type: 'string' },
      key: { type: 'string' },
      to: { type: 'string' },
      expires: { type: 'string' },
      'older-than': { type: 'string' },
      'trash-retention': { type: 'string' },
      type: { type: 'string' },
      'jwt-secret': { type: 'string' },
      grpc: { type: 'string' },
      http: { type: 'string' },
      'data-url': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'transfer-secret': { type: 'string' },
      'trusted-proxy': { type: 'string', multiple: true },
      'cors-origin': { type: 'string', multiple: true },
      user: { type: 'string', multiple: true },
      users: { type: 'string' },
      ttl: { type: 'string' },
      groups: { type: 'string' },
      'no-watch': { type: 'boolean', default: false },
      'depth-infinity': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const { help, ...rest } = values;
  const opts = { ...rest, root: values.root ?? process.env.STOWAGE_ROOT ?? './data' } as Opts;
  return { opts, args: positionals, help: !!help };
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function need(args: string[], n: number, what: string): void {
  if (args.length < n) throw new UsageError(`missing ${what}`);
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

function iso(ms: number): string {
  return new Date(Math.floor(ms)).toISOString();
}

function infoJson(i: ResourceInfo): Record<string, unknown> {
  return {
    ...i,
    id: formatResourceId(i.id),
    ...(i.parentId && { parentId: formatResourceId(i.parentId) }),
    mtime: iso(i.mtime),
  };
}

function parseWhen(s: string): number {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000; // unix seconds, as sync clients send them
  const t = Date.parse(s);
  if (Number.isNaN(t))
    throw new StorageError(
      'INVALID_ARGUMENT',
      `cannot read time "${s}" (an ISO 8601 date and time, or Unix seconds)`,
    );
  return t;
}

const AGE_UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An AGE (`30d`, `12h`, `90m`, `45s`) in ms; a usage error names the option otherwise. */
function parseAge(s: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(s.trim());
  const ms = m ? Number(m[1]) * AGE_UNITS[m[2]!]! : Number.NaN;
  if (!(ms > 0) || !Number.isSafeInteger(Math.round(ms)))
    throw new UsageError(`${option} takes an age with a unit: 30d, 12h, 90m or 45s (got "${s}")`);
  return Math.round(ms);
}

function parseGrantee(s: string): Grantee {
  const m = /^(user|group):(.+)$/.exec(s);
  if (!m) throw new UsageError(`grantee must be user:ID or group:ID, not "${s}"`);
  return { type: m[1] as 'user' | 'group', id: m[2]! };
}

function parseChecksum(s: string): Checksums {
  const m = /^(sha1|md5|adler32)[:=]([0-9a-fA-F]+)$/i.exec(s);
  if (!m) throw new StorageError('INVALID_ARGUMENT', `checksum must be sha1:HEX, md5:HEX or adler32:HEX`);
  return { [m[1]!.toLowerCase()]: m[2]!.toLowerCase() } as Checksums;
}

async function run(argv: string[]): Promise<number> {
  const { opts, args, help } = parse(argv);
  const cmd = args.shift();
  if (help || !cmd) {
    process.stdout.write(USAGE);
    return help ? 0 : 2;
  }
  if (cmd === 'token') return token(opts);
  if (cmd === 'serve') return serve(opts, args);
  if (cmd === 'passwd') return passwd(opts, args);
  // Only commands that make something set up a storage; the others refuse a folder that is not one.
  const creates = cmd === 'quickstart' || (cmd === 'space' && args[0] === 'create');
  const driver: PosixDriver = await createPosixDriver({
    root: opts.root,
    create: creates,
    log: logTo('stowage'),
  });
  // The users (--users, else those `serve` keeps in the storage), so that a name given here
  // (`--owner alice`) means the id the server will see. Read only when a command names someone.
  const usersFile = opts.users ?? path.join(driver.root, '.stowage', 'users.json');
  const identity =
    opts.users ||
    (opts.owner !== undefined &&
      (await fsp.stat(usersFile).then(
        () => true,
        () => false,
      )))
      ? await StaticIdentitySource.fromFile(usersFile)
      : undefined;
  const s = new StorageProvider({ drivers: driver, identity });
  try {
    return await command(s, driver, cmd, args, opts, identity);
  } finally {
    await s.close();
  }
}

async function command(
  s: StorageProvider,
  driver: PosixDriver,
  cmd: string,
  args: string[],
  opts: Opts,
  identity?: StaticIdentitySource,
): Promise<number> {
  // The path as commands take it: /<space alias>/<path in the space>.
  const aliases = new Map<string, string>();
  const showInfo = async (i: ResourceInfo) => {
    if (opts.json) return out(JSON.stringify(infoJson(i)));
    let alias = aliases.get(i.id.spaceId);
    if (alias === undefined) {
      alias = await s.getSpace(i.id.spaceId).then(
        (sp) => `/${sp.alias}`,
        () => '',
      );
      aliases.set(i.id.spaceId, alias);
    }
    out(`path:     ${alias}${i.path === '/' && alias ? '' : i.path}`);
    out(`name:     ${i.name}`);
    out(`type:     ${i.type}`);
    out(`size:     ${i.size < 1024 ? `${i.size} B` : `${i.size} (${human(i.size)})`}`);
    out(`mtime:    ${iso(i.mtime)}`);
    out(`etag:     "${i.etag}"`);
    out(`id:       ${formatResourceId(i.id)}`);
    if (i.parentId) out(`parent:   ${formatResourceId(i.parentId)}`);
    out(`mime:     ${i.mimeType}`);
    if (i.checksums) for (const [k, v] of Object.entries(i.checksums)) out(`${`${k}:`.padEnd(10)}${v}`);
  };
  const showSpace = (sp: Space) => {
    if (opts.json)
      return out(JSON.stringify({ ...sp, root: formatResourceId(sp.root), mtime: iso(sp.mtime) }));
    const quota = sp.quota === undefined ? 'no quota' : `of ${human(sp.quota)}`;
    out(
      `${sp.alias.padEnd(32)} ${sp.type.padEnd(8)} ${human(sp.used).padStart(10)} ${quota.padEnd(14)} ${sp.id}  ${sp.name}${sp.disabled ? '  (disabled)' : ''}`,
    );
  };

  const lockOpt = opts['lock-id'] ? { lockId: opts['lock-id'] } : {};
  switch (cmd) {
    case 'quickstart': {
      let sp: Space;
      try {
        sp = await s.getSpace('project/quickstart');
        // (run again with --owner: that user becomes a manager of the space made before; a name
        // the users do not know is refused, as `space create --owner` refuses it)
        if (opts.owner) {
          const known = identity && (await identity.getUser(opts.owner));
          if (identity && !known)
            throw new StorageError('INVALID_ARGUMENT', `unknown owner "${printable(opts.owner)}"`);
          await s.setGrant(
            { space: sp.id, path: '' },
            {
              grantee: { type: 'user', id: known?.id ?? opts.owner },
              permissions: fromLetters(ROLES.manager),
            },
          );
        }
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND')) throw err;
        sp = await s.createSpace({
          type: 'project',
          name: 'Quickstart',
          alias: 'project/quickstart',
          ...(opts.owner && { owner: { id: opts.owner, username: opts.owner } }),
        });
      }
      await s.mkdir({ space: sp.id, path: 'docs' }, { parents: true });
      const info = await s.write(
        { space: sp.id, path: 'docs/hello.txt' },
        `Hello from Stowage, written ${new Date().toISOString()}\n`,
      );
      if (opts.json) {
        out(JSON.stringify({ space: sp.id, root: driver.root, file: infoJson(info) }));
        return 0;
      }
      out(`Storage root: ${driver.root}`);
      out(`Space:        ${sp.alias} (${sp.id})`);
      out(`On disk:      ${await driver.spacePath(sp.id)}/docs/hello.txt\n`);
      await showInfo(info);
      out('\nContents of /project/quickstart/docs:');
      for await (const e of s.list({ space: sp.id, path: 'docs' })) {
        out(`  ${e.type === 'folder' ? 'd' : '-'} ${String(e.size).padStart(8)}  ${iso(e.mtime)}  ${e.name}`);
      }
      const root = path.relative(process.cwd(), driver.root) || '.';
      out(`\nTry: ${invokedAs()} --root ${root} ls /project/quickstart/docs`);
      // Over WebDAV a user sees the spaces they hold a grant on; the CLI acts as the system.
      out(`Over WebDAV (stowage serve; npm start): /dav/spaces/${sp.id}/docs/ under the server's address`);
      if (!opts.owner)
        out(`Over WebDAV, only its managers see it: ${invokedAs()} --root ${root} quickstart --owner admin`);
      return 0;
    }
    case 'space': {
      const sub = args.shift();
      if (sub === 'ls') {
        for await (const sp of s.listSpaces({ includeDisabled: true })) showSpace(sp);
        return 0;
      }
      if (sub === 'create') {
        need(args, 2, 'space type and name');
        const type = args[0] as SpaceType;
        const quota = opts.quota === undefined ? undefined : Number(opts.quota);
        if (quota !== undefined && !Number.isSafeInteger(quota))
          throw new UsageError('--quota takes a number of bytes');
        // A fixed alias: running the same script twice fails instead of making project/x-2.
        const alias = opts.alias ?? (type === 'project' ? `project/${slugify(args[1]!)}` : undefined);
        const sp = await s.createSpace({
          type,
          name: args[1]!,
          ...(alias && { alias }),
          ...(opts.owner && { owner: { id: opts.owner, username: opts.owner } }),
          ...(type === 'personal' && !opts.owner && { owner: { id: args[1]!, username: args[1]! } }),
          ...(quota !== undefined && { quota }),
          ...(opts.description !== undefined && { description: opts.description }),
        });
        showSpace(sp);
        return 0;
      }
      if (sub === 'disable' || sub === 'enable') {
        need(args, 1, 'space');
        showSpace(await s.updateSpace(args[0]!.replace(/^\//, ''), { disabled: sub === 'disable' }));
        return 0;
      }
      if (sub === 'rm') {
        need(args, 1, 'space');
        await s.deleteSpace(args[0]!.replace(/^\//, ''));
        return 0;
      }
      throw new UsageError('space takes ls, create, disable, enable or rm');
    }
    case 'ls': {
      need(args, 1, 'path');
      for await (const e of s.list(args[0]!)) {
        if (opts.json) out(JSON.stringify(infoJson(e)));
        else
          out(
            `${e.type === 'folder' ? 'd' : '-'} ${String(e.size).padStart(12)}  ${iso(e.mtime)}  ${e.name}`,
          );
      }
      return 0;
    }
    case 'stat':
      need(args, 1, 'path');
      await showInfo(await s.stat(args[0]!));
      return 0;
    case 'put': {
      need(args, 2, 'source and destination');
      const [src, dst] = args as [string, string];
      const wo: WriteOptions = opts['lock-id'] ? { lockId: opts['lock-id'] } : {};
      let body: AsyncIterable<Uint8Array>;
      if (src === '-') body = process.stdin;
      else {
        const st = await fsp.stat(src).catch((err) => {
          throw new StorageError('NOT_FOUND', `local file ${src}: ${err.code}`);
        });
        if (!st.isFile()) throw new StorageError('INVALID_ARGUMENT', `${src} is not a regular file`);
        body = fs.createReadStream(src);
        wo.size = st.size;
        wo.mtime = st.mtimeMs;
      }
      if (opts.mtime) wo.mtime = parseWhen(opts.mtime);
      if (opts.checksum) wo.checksums = parseChecksum(opts.checksum);
      if (opts['if-match'] || opts['if-none-match']) {
        wo.conditions = {
          ...(opts['if-match'] && { ifMatch: [opts['if-match']] }),
          ...(opts['if-none-match'] && { ifNoneMatch: '*' as const }),
        };
      }
      await showInfo(await s.write(dst, body, wo));
      return 0;
    }
    case 'get': {
      need(args, 1, 'path');
      const range = opts.range ? parseRangeHeader(`bytes=${opts.range}`) : undefined;
      if (opts.range && !range) throw new UsageError('--range takes START-END, START- or -LENGTH');
      const r = await s.read(args[0]!, range ? { range } : {});
      if (r.status === 416) throw new StorageError('INVALID_ARGUMENT', 'range not satisfiable');
      const target = args[1] ?? '-';
      const sink = target === '-' ? process.stdout : fs.createWriteStream(target);
      await pipeline(r.body!, sink, { end: target !== '-' });
      return 0;
    }
    case 'mkdir':
      need(args, 1, 'path');
      await showInfo(await s.mkdir(args[0]!, { parents: opts.parents }));
      return 0;
    case 'mv':
      need(args, 2, 'source and destination');
      await showInfo(await s.move(args[0]!, args[1]!, { overwrite: opts.overwrite, ...lockOpt }));
      return 0;
    case 'cp':
      need(args, 2, 'source and destination');
      await showInfo(await s.copy(args[0]!, args[1]!, { overwrite: opts.overwrite }));
      return 0;
    case 'rm': {
      need(args, 1, 'path');
      const gone = await s.delete(args[0]!, lockOpt);
      if (opts.json) out(JSON.stringify(infoJson(gone)));
      return 0;
    }
    case 'meta': {
      need(args, 1, 'path');
      const keys = args.slice(1);
      const info = await s.stat(args[0]!, { metadataKeys: keys.length ? keys : '*' });
      if (opts.json) out(JSON.stringify(info.metadata ?? {}));
      else for (const [k, v] of Object.entries(info.metadata ?? {})) out(`${k}=${v}`);
      return 0;
    }
    case 'meta-set': {
      need(args, 2, 'path and key=value');
      const values: Record<string, string> = {};
      for (const kv of args.slice(1)) {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new UsageError(`expected key=value, got "${kv}"`);
        values[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      await s.setMetadata(args[0]!, values, lockOpt);
      return 0;
    }
    case 'meta-unset':
      need(args, 2, 'path and keys');
      await s.unsetMetadata(args[0]!, args.slice(1), lockOpt);
      return 0;
    case 'trash': {
      const sub = args.shift();
      if (!['ls', 'restore', 'purge'].includes(sub ?? ''))
        throw new UsageError('trash takes ls, restore or purge');
      need(args, 1, 'space');
      const space = args[0]!.replace(/^\//, '');
      if (sub === 'ls') {
        for await (const i of s.listTrash(space, opts.key ? { key: opts.key } : undefined)) {
          if (opts.json) out(JSON.stringify({ ...i, id: formatResourceId(i.id), deleted: iso(i.deleted) }));
          else
            out(
              `${i.type === 'folder' ? 'd' : '-'} ${String(i.size).padStart(12)}  ${iso(i.deleted)}  ${i.key}  ${i.path}`,
            );
        }
        return 0;
      }
      if (sub === 'restore') {
        need(args, 2, 'space and key');
        await showInfo(await s.restoreTrash(space, args[1]!, opts.to ? { target: opts.to } : {}));
        return 0;
      }
      if (sub === 'purge') {
        if (opts['older-than'] === undefined) {
          await s.purgeTrash(space, args[1]);
          return 0;
        }
        if (args[1] !== undefined) throw new UsageError('--older-than purges by age: give no key');
        const n = await s.expireTrash(Date.now() - parseAge(opts['older-than'], '--older-than'), space);
        if (opts.json) out(JSON.stringify({ purged: n }));
        else out(`purged ${plural(n, 'item')}`);
        return 0;
      }
      throw new UsageError('trash takes ls, restore or purge');
    }
    case 'versions': {
      const sub = args.shift();
      if (!['ls', 'get', 'restore'].includes(sub ?? ''))
        throw new UsageError('versions takes ls, get or restore');
      need(args, 1, 'path');
      if (sub === 'ls') {
        for (const v of await s.listVersions(args[0]!)) {
          if (opts.json) out(JSON.stringify({ ...v, mtime: iso(v.mtime) }));
          else out(`${String(v.size).padStart(12)}  ${iso(v.mtime)}  ${v.key}  ${v.checksums?.sha1 ?? ''}`);
        }
        return 0;
      }
      if (sub === 'get') {
        need(args, 2, 'path and key');
        const r = await s.readVersion(args[0]!, args[1]!);
        const target = args[2] ?? '-';
        await pipeline(r.body!, target === '-' ? process.stdout : fs.createWriteStream(target), {
          end: target !== '-',
        });
        return 0;
      }
      if (sub === 'restore') {
        need(args, 2, 'path and key');
        await showInfo(await s.restoreVersion(args[0]!, args[1]!, lockOpt));
        return 0;
      }
      throw new UsageError('versions takes ls, get or restore');
    }
    case 'grants': {
      const sub = args.shift();
      if (!['ls', 'set', 'deny', 'rm'].includes(sub ?? ''))
        throw new UsageError('grants takes ls, set, deny or rm');
      need(args, 1, 'path');
      if (sub === 'ls') {
        for (const g of await s.listGrants(args[0]!)) {
          if (opts.json) out(JSON.stringify(g));
          else {
            const what = g.deny ? 'deny' : permissionsToRole(g.permissions);
            const exp = g.expires ? `  until ${iso(g.expires)}` : '';
            out(`${g.grantee.type}:${g.grantee.id}  ${what} (${toLetters(g.permissions) || '-'})${exp}`);
          }
        }
        return 0;
      }
      need(args, 2, 'path and grantee');
      const grantee = parseGrantee(args[1]!);
      if (sub === 'set') {
        need(args, 3, 'path, grantee and role');
        const role = args[2]!;
        let permissions: ReturnType<typeof fromLetters>;
        try {
          permissions = role in ROLES ? roleToPermissions(role as Role) : fromLetters(role);
        } catch (err) {
          if (!StorageError.is(err, 'INVALID_ARGUMENT')) throw err;
          throw new UsageError(
            `"${role}" is neither a role (${Object.keys(ROLES).join(', ')}) nor permission letters: ${err.message}`,
          );
        }
        await s.setGrant(args[0]!, {
          grantee,
          permissions,
          ...(opts.expires && { expires: parseWhen(opts.expires) }),
        });
        return 0;
      }
      if (sub === 'deny') {
        await s.denyGrant(args[0]!, grantee);
        return 0;
      }
      if (sub === 'rm') {
        await s.removeGrant(args[0]!, grantee);
        return 0;
      }
      throw new UsageError('grants takes ls, set, deny or rm');
    }
    case 'lock': {
      need(args, 1, 'path');
      const type = (opts.type ?? 'exclusive') as LockType;
      const lock = await s.setLock(args[0]!, {
        lockId: opts['lock-id'] ?? randomUUID(),
        type,
        appName: 'stowage-cli',
        ...(opts.expires && { expires: parseWhen(opts.expires) }),
      });
      if (opts.json) out(JSON.stringify(lock));
      else out(lock.lockId);
      return 0;
    }
    case 'unlock':
      need(args, 2, 'path and lock id');
      await s.unlock(args[0]!, args[1]!);
      return 0;
    case 'fsck': {
      const reports = await driver.fsck({
        repair: opts.repair,
        checksums: opts.checksums,
        verify: opts.verify,
        ...(opts.space && { space: opts.space.replace(/^\//, '') }),
      });
      let problems = 0;
      for (const r of reports) {
        const n = Object.values(r.problems).reduce((a, b) => a + b, 0);
        problems += n;
        if (opts.json) {
          out(JSON.stringify(r));
          continue;
        }
        out(
          `${r.alias}: ${plural(r.files, 'file')}, ${plural(r.folders, 'folder')}, ${human(r.bytes)}; ${n ? plural(n, 'problem') : 'clean'}`,
        );
        for (const [kind, count] of Object.entries(r.problems))
          out(`  ${kind}: ${count}${opts.repair ? ' (repaired)' : ''}`);
        for (const ex of r.examples.slice(0, 10))
          out(`    ${ex.kind} ${ex.path}${ex.detail ? ` (${ex.detail})` : ''}`);
      }
      // Problems left unrepaired are a failed check, as fsck(8) has it.
      return problems && !opts.repair ? 6 : 0;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

function secretOf(opts: Opts): string {
  const secret = opts['jwt-secret'] ?? process.env.STOWAGE_JWT_SECRET;
  if (!secret) throw new UsageError('a JWT secret is required: --jwt-secret or $STOWAGE_JWT_SECRET');
  return secret;
}

/**
 * `--user NAME[:PASSWORD[:FLAG]...]`: what follows the name is always the password (empty: none,
 * the user signs in with tokens only), then flags (`admin`, `create-spaces`, `groups=G1+G2`).
 * An unknown flag is a usage error, never a password.
 */
function userSpec(spec: string): StaticUser {
  const [id, password, ...flags] = spec.split(':');
  if (!id) throw new UsageError(`invalid --user "${spec}"`);
  const user: StaticUser = { id, username: id };
  if (password) user.password = password;
  for (const f of flags) {
    if (f === 'admin') user.admin = true;
    else if (f === 'create-spaces') user.createSpaces = true;
    else if (f.startsWith('groups=')) user.groups = f.slice(7).split('+').filter(Boolean);
    else
      throw new UsageError(
        `unknown flag "${f}" in --user ${spec} (NAME:PASSWORD:FLAG...; flags are admin, create-spaces, groups=G1+G2)`,
      );
  }
  return user;
}

async function token(opts: Opts): Promise<number> {
  const id = opts.user?.at(-1);
  if (!id) throw new UsageError('token needs --user ID');
  const ttl = opts.ttl === undefined ? undefined : Number(opts.ttl);
  if (ttl !== undefined && !(Number.isSafeInteger(ttl) && ttl > 0))
    throw new UsageError('--ttl takes seconds');
  const { mintRevaToken } = await import('../cs3/jwt.js');
  out(
    mintRevaToken(
      { id, username: id, ...(opts.groups && { groups: opts.groups.split(',').filter(Boolean) }) },
      secretOf(opts),
      ttl === undefined ? {} : { ttlSeconds: ttl },
    ),
  );
  return 0;
}

async function serve(opts: Opts, args: string[]): Promise<number> {
  const given = opts['jwt-secret'] ?? process.env.STOWAGE_JWT_SECRET;
  // gRPC (CS3) is served when asked for, or when a JWT secret says a gateway will call; WebDAV always.
  const grpcAddress = opts.grpc ?? (given ? '127.0.0.1:9142' : undefined);
  if (grpcAddress && !given)
    throw new UsageError('the CS3 door needs a JWT secret: --jwt-secret or $STOWAGE_JWT_SECRET');
  // Without a secret, Bearer tokens cannot be minted by anyone: WebDAV takes Basic auth only.
  const secret = given ?? randomBytes(32).toString('base64url');
  const transferSecret = opts['transfer-secret'] ?? process.env.STOWAGE_TRANSFER_SECRET;
  if (!opts['tls-cert'] !== !opts['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const retention =
    opts['trash-retention'] === undefined
      ? undefined
      : parseAge(opts['trash-retention'], '--trash-retention');
  const clientAddress = opts['trusted-proxy']?.length ? forwardedClient(opts['trusted-proxy']) : undefined;
  const tls = opts['tls-cert']
    ? {
        cert: await fsp.readFile(opts['tls-cert']).catch((err) => {
          throw new UsageError(`--tls-cert: ${(err as Error).message}`);
        }),
        key: await fsp.readFile(opts['tls-key']!).catch((err) => {
          throw new UsageError(`--tls-key: ${(err as Error).message}`);
        }),
      }
    : undefined;
  const driver = await createPosixDriver({
    root: args[0] ?? opts.root,
    create: true,
    log: logTo('stowage'),
  });
  let generated: { username: string; password: string } | undefined;
  let identity: StaticIdentitySource;
  try {
    if (opts.users) identity = await StaticIdentitySource.fromFile(opts.users);
    else if (opts.user?.length)
      identity = await StaticIdentitySource.create({ users: opts.user.map(userSpec) });
    else ({ identity, generated } = await defaultUsers(path.join(driver.root, '.stowage', 'users.json')));
  } catch (err) {
    await driver.close();
    throw err;
  }
  let transfer = transferSecret;
  try {
    // (with a JWT secret given, that one signs transfers too, as it always did)
    if (!transfer && !given)
      transfer = await keptTransferSecret(path.join(driver.root, '.stowage', 'transfer-secret'));
  } catch (err) {
    await driver.close();
    throw err;
  }
  const provider = new StorageProvider({ drivers: driver, identity });
  const { serveCs3 } = await import('../cs3/serve.js');
  const server = await serveCs3({
    provider,
    jwtSecret: secret,
    grpc: grpcAddress ?? false,
    http: opts.http ?? '127.0.0.1:9143',
    ...(opts['data-url'] && { dataUrl: opts['data-url'] }),
    ...(tls && { tls }),
    ...(transfer && { transferSecret: transfer }),
    uploadsDir: path.join(driver.root, '.stowage', 'uploads'),
    ...(opts['cors-origin']?.length && { cors: { origins: opts['cors-origin'] } }),
    webdav: {
      uploadsDir: path.join(driver.root, '.stowage', 'chunks'),
      // Listings can be kept while the observer reports what is written around Stowage, which it
      // can only on a local filesystem (inotify does not see what other machines write on a
      // network one).
      listingCache: !opts['no-watch'] && driver.syncMetadata,
      ...(clientAddress && { clientAddress }),
      ...(opts['depth-infinity'] && { allowDepthInfinity: true }),
    },
    log: logTo('stowage serve'),
  }).catch(async (err) => {
    await provider.close();
    throw err;
  });
  // Files written around Stowage (scanners, rsync, a shell) become first-class and are announced.
  const observer = opts['no-watch'] ? undefined : provider.watch();
  observer?.ready.catch(() => {}); // failures are logged by the driver
  const expiry = retention === undefined ? undefined : expireTrashEvery(provider, retention);
  const webdav = `${tls ? 'https' : 'http'}://${server.httpAddress}/remote.php/webdav/`;
  const facts = {
    root: driver.root,
    storageId: driver.storageId,
    webdav,
    ...(server.grpcAddress && { grpc: server.grpcAddress }),
    dataUrl: server.dataUrl,
    ...(generated && { user: generated.username, password: generated.password }),
  };
  if (opts.json) out(JSON.stringify(facts));
  else {
    out(`Stowage serving ${facts.root}`);
    out(`  storage id  ${facts.storageId}`);
    out(
      `  WebDAV      ${webdav} (your personal space; also /remote.php/dav/files/<user>/, /dav/spaces/<id>/)`,
    );
    if (server.grpcAddress)
      out(`  gRPC        ${server.grpcAddress} (cs3.storage.provider.v1beta1 ProviderAPI, SpacesAPI)`);
    out(`  data plane  ${facts.dataUrl}`);
    out(
      observer
        ? `  observer    files written into ${path.join(facts.root, 'spaces')} by others are picked up (GET /events streams changes)`
        : '  observer    off (--no-watch)',
    );
    if (expiry)
      out(
        `  trash       what was deleted more than ${opts['trash-retention']} ago is purged (looked at every ${ageText(expiry.everyMs)})`,
      );
    if (generated) {
      out(`  user        ${generated.username}, password ${generated.password}`);
      out('              (an admin, created now; the password is shown this once, only its hash is kept)');
    } else if (!opts.users && !opts.user?.length) {
      out(
        `  users       from ${path.join(facts.root, '.stowage', 'users.json')} (a new password: ${invokedAs()} --root ${facts.root} passwd admin)`,
      );
    } else if (opts.user?.length) {
      const users = opts.user.map(userSpec);
      out(`  users       ${users.map((u) => u.username).join(', ')} (--user)`);
      const bare = users.filter((u) => !u.password).map((u) => u.username);
      if (bare.length)
        out(
          `              ${bare.join(', ')}: no password, so ${given ? `Bearer tokens only (${invokedAs()} token --user ID)` : 'no sign-in (nor tokens: no JWT secret is given)'}`,
        );
    }
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await expiry?.stop();
  await observer?.close();
  await server.close();
  await provider.close();
  return 0;
}

/**
 * Purge what every space's trash got more than `retentionMs` ago: at once, then every tenth of
 * the retention (between a second and an hour), one sweep at a time. `stop` waits for a sweep
 * under way.
 */
function expireTrashEvery(
  provider: StorageProvider,
  retentionMs: number,
): { everyMs: number; stop: () => Promise<void> } {
  const log = logTo('stowage serve');
  const everyMs = Math.min(3_600_000, Math.max(1000, Math.round(retentionMs / 10)));
  let running: Promise<void> | undefined;
  const sweep = () => {
    running ??= provider
      .expireTrash(Date.now() - retentionMs)
      .then(
        (n) => {
          if (n) log(`trash: purged ${plural(n, 'item')} deleted more than ${ageText(retentionMs)} ago`);
        },
        (err) => log('trash: expiry failed', err),
      )
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(sweep, everyMs).unref();
  const first = setImmediate(sweep);
  return {
    everyMs,
    stop: async () => {
      clearInterval(timer);
      clearImmediate(first);
      await running;
    },
  };
}

/** A duration as an AGE (the largest unit it is a whole number of). */
function ageText(ms: number): string {
  for (const u of ['d', 'h', 'm'] as const) if (ms % AGE_UNITS[u]! === 0) return `${ms / AGE_UNITS[u]!}${u}`;
  return `${ms / 1000}s`;
}

/** How the user ran us: `stowage` when installed as a command, else `node <script>`. */
function invokedAs(): string {
  const script = process.argv[1] ?? '';
  if (path.basename(script) === 'stowage') return 'stowage';
  return `node ${path.relative(process.cwd(), script) || script}`;
}

function report(err: unknown, json: boolean): number {
  if (err instanceof UsageError || (err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
    const msg = (err as Error).message;
    if (json)
      process.stderr.write(`${JSON.stringify({ error: { code: 'INVALID_ARGUMENT', message: msg } })}\n`);
    else process.stderr.write(`stowage: ${msg}\nRun "stowage --help" for usage.\n`);
    return 2;
  }
  const e = toStorageError(err, 'stowage');
  if (json) process.stderr.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
  else process.stderr.write(`stowage: ${e.code}${e.reason ? ` (${e.reason})` : ''}: ${e.message}\n`);
  return EXIT_CODES[e.code] ?? 1;
}

// A reader that stops early (`stowage ls ... | head`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const argv = process.argv.slice(2);
run(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.exitCode = report(err, argv.includes('--json'));
  },
);

/** `passwd USERNAME`: a new generated password for a user of DIR/.stowage/users.json. */
async function passwd(opts: Opts, args: string[]): Promise<number> {
  const name = args[0];
  if (!name || args.length > 1) throw new UsageError('usage: stowage passwd USERNAME');
  const file = path.join(path.resolve(opts.root), '.stowage', 'users.json');
  let doc: { users: { id: string; username?: string; password?: string; passwordHash?: string }[] };
  try {
    doc = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new StorageError(
        'NOT_FOUND',
        `no ${file}: users are kept there once \`serve\` ran without --user/--users`,
      );
    throw err;
  }
  const user = doc.users?.find((u) => (u.username ?? u.id) === name || u.id === name);
  if (!user) throw new StorageError('NOT_FOUND', `no user "${name}" in ${file}`);
  const password = randomBytes(12).toString('base64url');
  delete user.password;
  user.passwordHash = await hashPassword(password);
  await replaceFile(file, `${JSON.stringify(doc, null, 2)}\n`, { syncFolder: true });
  if (opts.json) out(JSON.stringify({ user: user.username ?? user.id, password }));
  else {
    out(`user ${user.username ?? user.id}, password ${password}`);
    out('(shown this once, only its hash is kept; restart a running serve for it to take effect)');
  }
  return 0;
}

/**
 * The users of a storage served without --user/--users: kept in the storage (hashes only). On
 * first use one admin is created and its generated password returned, to be shown once.
 */
async function defaultUsers(
  file: string,
): Promise<{ identity: StaticIdentitySource; generated?: { username: string; password: string } }> {
  try {
    return { identity: await StaticIdentitySource.fromFile(file) };
  } catch {
    // There after all: unreadable, or made by a serve starting at the same moment since the
    // read above. Read again: the error, if any, is then about the file as it is.
    if (
      await fsp.stat(file).then(
        () => true,
        () => false,
      )
    )
      return { identity: await StaticIdentitySource.fromFile(file) };
  }
  const password = randomBytes(12).toString('base64url');
  const admin = { id: 'admin', username: 'admin', admin: true, passwordHash: await hashPassword(password) };
  // (a second serve starting at the same moment takes the first's users, and the password it printed)
  const made = await writeOnce(file, `${JSON.stringify({ users: [admin] }, null, 2)}\n`);
  return {
    identity: await StaticIdentitySource.fromFile(file),
    ...(made && { generated: { username: 'admin', password } }),
  };
}

/**
 * The secret that signs the data plane's transfer tokens when none is given: made once and kept
 * in the storage (`.stowage/transfer-secret`, mode 0600, as the users are), so that an upload's
 * URL stays good across restarts and a TUS upload cut by one is resumed (a new secret on each
 * start would answer its HEAD with 401). Bearer tokens stay refused without a JWT secret.
 */
async function keptTransferSecret(file: string): Promise<string> {
  const read = () =>
    fsp.readFile(file, 'utf8').then(
      (t) => t.trim(),
      (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)),
    );
  const kept = await read();
  if (kept) return kept;
  await writeOnce(file, `${randomBytes(32).toString('base64url')}\n`);
  const made = await read();
  if (!made) throw new Error(`${file} is empty`);
  return made;
}

/**
 * Write `file` (mode 0600, synced) unless it exists: false when another process made it first.
 * Linked into place, not renamed, so that the loser of a race never replaces the winner's.
 */
async function writeOnce(file: string, text: string): Promise<boolean> {
  const tmp = await syncedTemp(file, text);
  try {
    await fsp.link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    await fsp.unlink(tmp).catch(() => {});
  }
  await syncFolderOf(file);
  return true;
}
