/**
 * The CS3 door as a Reva gateway or a CS3 client sees it: raw gRPC calls with access tokens, the
 * HTTP data plane (simple and TUS) driven with plain HTTP, and bad input of every kind.
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cs3Client, type PartialMessage, type ProviderRequest } from '../../src/cs3/client.js';
import { Code } from '../../src/cs3/gen/cs3/rpc/v1beta1/code.js';
import { GranteeType, LockType } from '../../src/cs3/gen/cs3/storage/provider/v1beta1/resources.js';
import { ListStorageSpacesRequest_Filter_Type as FilterType } from '../../src/cs3/gen/cs3/storage/provider/v1beta1/spaces_api.js';
import { mintRevaToken, signJwt } from '../../src/cs3/jwt.js';
import { type Cs3Server, serveCs3 } from '../../src/cs3/serve.js';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { fromLetters, ROLES, StaticIdentitySource, StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const secret = 'wire-test-secret';
const users = [
  { id: 'u-alice', username: 'alice', createSpaces: true },
  { id: 'u-bob', username: 'bob' },
  { id: 'u-root', username: 'root', admin: true },
];

interface Env {
  root: string;
  provider: StorageProvider;
  server: Cs3Server;
  alice: Cs3Client;
  bob: Cs3Client;
  token: (id: string) => string;
  close(): Promise<void>;
}

async function start(
  root: string,
  extra: Partial<Parameters<typeof serveCs3>[0]> = {},
  ports = { grpc: '127.0.0.1:0', http: '127.0.0.1:0' },
): Promise<Env> {
  const identity = await StaticIdentitySource.create({ users });
  const provider = new StorageProvider({
    drivers: await createPosixDriver({ root: path.join(root, 'data') }),
    identity,
  });
  const server = await serveCs3({
    provider,
    jwtSecret: secret,
    grpc: ports.grpc,
    http: ports.http,
    uploadsDir: path.join(root, 'uploads'),
    ...extra,
  });
  const token = (id: string) => mintRevaToken(users.find((u) => u.id === id)!, secret);
  const alice = new Cs3Client(server.grpcAddress, { token: token('u-alice') });
  const bob = new Cs3Client(server.grpcAddress, { token: token('u-bob') });
  return {
    root,
    provider,
    server,
    alice,
    bob,
    token,
    async close() {
      alice.close();
      bob.close();
      await server.close();
      await provider.close();
    },
  };
}

let env: Env;
let space: { id: string; root: { storageId: string; spaceId: string; opaqueId: string } };
const rel = (p: string) => ({ resourceId: space.root, path: p ? `./${p}` : '.' });

beforeAll(async () => {
  env = await start(await tempRoot('cs3-wire'));
  const res = await env.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Wire tests' });
  const root = res.storageSpace!.root!;
  space = { id: root.spaceId, root };
});
afterAll(() => env.close());

async function upload(c: Cs3Client, p: string, body: string | Buffer, opaque: Record<string, string> = {}) {
  const map = Object.fromEntries(
    Object.entries(opaque).map(([k, v]) => [k, { decoder: 'plain', value: Buffer.from(v) }]),
  );
  const res = await c.providerOk('initiateFileUpload', { ref: rel(p), opaque: { map } });
  const simple = res.protocols.find((x) => x.protocol === 'simple')!;
  return fetch(simple.uploadEndpoint, { method: 'PUT', body });
}

type WireRef = NonNullable<PartialMessage<ProviderRequest<'initiateFileDownload'>>['ref']>;

async function download(c: Cs3Client, ref: WireRef, headers: Record<string, string> = {}) {
  const res = await c.providerOk('initiateFileDownload', { ref });
  return fetch(res.protocols.find((x) => x.protocol === 'simple')!.downloadEndpoint, { headers });
}

const sha1 = (b: string | Buffer) => createHash('sha1').update(b).digest('hex');
/** The data plane's JSON error body. */
const errorOf = async (r: Response) => (await r.json()) as { code: string; reason?: string; message: string };

describe('cs3: authentication', () => {
  it('refuses missing, forged, expired and unsigned tokens, and unknown users, with CODE_UNAUTHENTICATED', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      user: { id: { opaque_id: 'u-alice', idp: 'x', type: 1 }, username: 'alice' },
      aud: ['reva'],
    };
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ ...claims, exp: now + 60 }),
    ).toString('base64url')}.`;
    const tokens = {
      missing: '',
      forged: signJwt({ ...claims, exp: now + 60 }, 'not-the-secret'),
      expired: signJwt({ ...claims, exp: now - 60 }, secret),
      unsigned: none,
      garbage: 'a.b.c',
      unknownUser: mintRevaToken({ id: 'u-nobody', username: 'nobody' }, secret),
      // Scoped as a Reva gateway scopes a public link's token (the owner as its user), one
      // resource's, a share's: not served, rather than served with all the owner's rights.
      ...Object.fromEntries(
        ['publicshare:link-1', 'resourceinfo:storage$space!node', 'share:s-1', 'lightweight'].map((key) => [
          key,
          signJwt(
            {
              ...claims,
              exp: now + 60,
              scope: { [key]: { resource: { decoder: 'json', value: 'e30=' }, role: 3 } },
            },
            secret,
          ),
        ]),
      ),
      withOwnerScopeToo: signJwt(
        {
          ...claims,
          exp: now + 60,
          scope: { user: { role: 1 }, 'publicshare:link-1': { role: 3 } },
        },
        secret,
      ),
      scopeNotAMap: signJwt({ ...claims, exp: now + 60, scope: 'user' }, secret),
    };
    for (const [what, token] of Object.entries(tokens)) {
      const c = new Cs3Client(env.server.grpcAddress, { token });
      try {
        const res = await c.provider('stat', { ref: rel('') });
        expect(res.status?.code, what).toBe(Code.CODE_UNAUTHENTICATED);
        expect(res.info, what).toBeUndefined();
        const spaces = await c.spaces('listStorageSpaces', {});
        expect(spaces.status?.code, what).toBe(Code.CODE_UNAUTHENTICATED);
        // A stream answers with one message that carries the status.
        await expect(
          (async () => {
            for await (const _ of c.providerStream('listContainerStream', { ref: rel('') })) void _;
          })(),
          what,
        ).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      } finally {
        c.close();
      }
    }
  });

  it('serves a token without a scope, or with the user’s own (owner) scope alone', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      user: { id: { opaque_id: 'u-alice', idp: 'x', type: 1 }, username: 'alice' },
      aud: ['reva'],
    };
    for (const token of [
      signJwt({ ...claims, exp: now + 60 }, secret),
      signJwt({ ...claims, exp: now + 60, scope: { user: { role: 'ROLE_OWNER' } } }, secret),
      mintRevaToken({ id: 'u-alice', username: 'alice' }, secret),
    ]) {
      const c = new Cs3Client(env.server.grpcAddress, { token });
      try {
        expect((await c.provider('stat', { ref: rel('') })).status?.code).toBe(Code.CODE_OK);
      } finally {
        c.close();
      }
    }
  });

  it('matches the token user by opaque id, or else by username', async () => {
    const byName = new Cs3Client(env.server.grpcAddress, {
      token: mintRevaToken({ id: 'some-other-id', username: 'alice' }, secret),
    });
    try {
      expect((await byName.provider('stat', { ref: rel('') })).status?.code).toBe(Code.CODE_OK);
    } finally {
      byName.close();
    }
  });
});

describe('cs3: authorisation through the wire', () => {
  it('hides what a user may not see, by path, by id and in listings', async () => {
    expect((await upload(env.alice, 'private.txt', 'alice only')).status).toBe(200);
    const info = (await env.alice.providerOk('stat', { ref: rel('private.txt') })).info!;
    for (const ref of [
      rel('private.txt'),
      { resourceId: info.id, path: '.' },
      { path: '/project/wire-tests/private.txt' },
    ]) {
      const res = await env.bob.provider('stat', { ref });
      expect(res.status?.code).toBe(Code.CODE_NOT_FOUND);
      expect(res.status?.message).toBe('not found');
    }
    expect((await env.bob.provider('initiateFileDownload', { ref: rel('private.txt') })).status?.code).toBe(
      Code.CODE_NOT_FOUND,
    );
    expect((await env.bob.provider('listContainer', { ref: rel('') })).status?.code).toBe(
      Code.CODE_NOT_FOUND,
    );
    const bobs = await env.bob.spacesOk('listStorageSpaces', {});
    expect(bobs.storageSpaces.map((s) => s.root?.spaceId)).not.toContain(space.id);
    // Alice's personal space, by id, for Bob: not found either.
    const home = await env.alice.spacesOk('createStorageSpace', {
      type: 'personal',
      name: 'alice',
      owner: { id: { opaqueId: 'u-alice' }, username: 'alice' },
    });
    const res = await env.bob.provider('listContainer', {
      ref: { resourceId: home.storageSpace!.root, path: '.' },
    });
    expect(res.status?.code).toBe(Code.CODE_NOT_FOUND);
  });

  it('keeps a lock its holder’s across users', async () => {
    await env.alice.providerOk('addGrant', {
      ref: rel(''),
      grant: {
        grantee: { type: GranteeType.GRANTEE_TYPE_USER, userId: { opaqueId: 'u-bob' } },
        permissions: Object.fromEntries(Object.entries(fromLetters(ROLES.editor))),
      },
    });
    expect((await upload(env.alice, 'locked.odt', 'v1')).status).toBe(200);
    const lock = { lockId: 'office-1', type: LockType.LOCK_TYPE_EXCL, appName: 'Office' };
    await env.alice.providerOk('setLock', { ref: rel('locked.odt'), lock });
    const got = await env.bob.providerOk('getLock', { ref: rel('locked.odt') });
    expect(got.lock?.user?.opaqueId).toBe('u-alice');
    for (const res of [
      await env.bob.provider('setLock', { ref: rel('locked.odt'), lock }),
      await env.bob.provider('refreshLock', { ref: rel('locked.odt'), lock }),
      await env.bob.provider('unlock', { ref: rel('locked.odt'), lock }),
      await env.bob.provider('delete', { ref: rel('locked.odt'), lockId: 'office-1' }),
    ]) {
      expect(res.status?.code).toBe(Code.CODE_LOCKED);
    }
    const put = await upload(env.alice, 'locked.odt', 'v2 without the lock id');
    expect(put.status).toBe(423);
    await env.alice.providerOk('unlock', { ref: rel('locked.odt'), lock });
  });
});

describe('cs3: bad input', () => {
  it('answers a request that is not protobuf with CODE_INVALID_ARGUMENT and changes nothing', async () => {
    const raw = new grpc.Client(env.server.grpcAddress, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set('x-access-token', env.token('u-alice'));
      for (const bytes of [
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]),
        Buffer.from([0x12, 0x7f, 0x01]), // a length beyond the message
        Buffer.from([0x0a, 0x02, 0x08]), // a truncated nested message
      ]) {
        const res = await new Promise<Buffer>((resolve, reject) =>
          raw.makeUnaryRequest(
            '/cs3.storage.provider.v1beta1.ProviderAPI/Delete',
            (b: Buffer) => b,
            (b: Buffer) => b,
            bytes,
            md,
            (err, r) => (err ? reject(err) : resolve(r!)),
          ),
        );
        // DeleteResponse: field 1 (status) holds code 4.
        const { DeleteResponse } = await import(
          '../../src/cs3/gen/cs3/storage/provider/v1beta1/provider_api.js'
        );
        expect(DeleteResponse.decode(res).status?.code).toBe(Code.CODE_INVALID_ARGUMENT);
      }
    } finally {
      raw.close();
    }
    expect((await env.alice.providerOk('stat', { ref: rel('private.txt') })).info?.name).toBe('private.txt');
  });

  it('refuses an oversized request at the transport, before it reaches the storage', async () => {
    const res = env.alice.provider('setArbitraryMetadata', {
      ref: rel('private.txt'),
      arbitraryMetadata: { metadata: { big: 'x'.repeat(5 * 1024 * 1024) } },
    });
    const err = await res.then(
      () => undefined,
      (e: { cause?: grpc.ServiceError }) => e,
    );
    expect(err?.cause?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const info = await env.alice.providerOk('stat', {
      ref: rel('private.txt'),
      arbitraryMetadataKeys: ['*'],
    });
    expect(info.info?.arbitraryMetadata?.metadata ?? {}).toEqual({});
  });

  it('refuses references with "..", outside any space, or without anything', async () => {
    const cases: [unknown, Code][] = [
      [{ resourceId: space.root, path: './../escape' }, Code.CODE_INVALID_ARGUMENT],
      [{ resourceId: space.root, path: './a/../../b' }, Code.CODE_INVALID_ARGUMENT],
      [{ path: '/project/wire-tests/../../etc/passwd' }, Code.CODE_INVALID_ARGUMENT],
      [{ path: '/nowhere/at-all/x' }, Code.CODE_NOT_FOUND],
      [{ path: '/' }, Code.CODE_NOT_FOUND],
      [{ path: 'relative/without/id' }, Code.CODE_INVALID_ARGUMENT],
      [{ resourceId: { ...space.root, opaqueId: 'no-such-node' }, path: '.' }, Code.CODE_NOT_FOUND],
      [
        { resourceId: { ...space.root, spaceId: 'no-such-space', opaqueId: 'no-such-space' } },
        Code.CODE_NOT_FOUND,
      ],
      [{ resourceId: space.root, path: './nul\u0000byte' }, Code.CODE_INVALID_ARGUMENT],
    ];
    for (const [ref, code] of cases) {
      const res = await env.alice.provider('stat', { ref: ref as { path: string } });
      expect(res.status?.code, JSON.stringify(ref)).toBe(code);
    }
    expect((await env.alice.provider('stat', {})).status?.code).toBe(Code.CODE_INVALID_ARGUMENT);
    const noGrantee = await env.alice.provider('addGrant', {
      ref: rel(''),
      grant: { permissions: { stat: true } },
    });
    expect(noGrantee.status?.code).toBe(Code.CODE_INVALID_ARGUMENT);
  });
});

describe('cs3: data plane, simple', () => {
  it('uploads with length, checksum and mtime, and answers with Reva’s headers', async () => {
    const body = 'hello from a sync client';
    const res = await upload(env.alice, 'docs-upload.txt', body, {
      'Upload-Length': String(body.length),
      'Upload-Checksum': `sha1 ${sha1(body)}`,
      'X-OC-Mtime': '1577836800.5',
    });
    expect(res.status).toBe(200);
    const info = (await env.alice.providerOk('stat', { ref: rel('docs-upload.txt') })).info!;
    expect(res.headers.get('oc-fileid')).toBe(
      `${info.id!.storageId}$${info.id!.spaceId}!${info.id!.opaqueId}`,
    );
    expect(res.headers.get('oc-etag')).toBe(info.etag);
    expect(res.headers.get('etag')).toBe(info.etag);
    expect(res.headers.get('oc-checksum')).toBe(`SHA1:${sha1(body)}`);
    expect(info.checksum?.sum).toBe(sha1(body));
    expect(info.mtime).toEqual({ seconds: 1577836800, nanos: 500_000_000 });
  });

  it('refuses a checksum mismatch (419) and a wrong length, keeping nothing', async () => {
    const bad = await upload(env.alice, 'mismatch.txt', 'abc', { 'Upload-Checksum': `sha1 ${sha1('xyz')}` });
    expect(bad.status).toBe(419);
    expect(((await bad.json()) as { reason: string }).reason).toBe('checksum-mismatch');
    const short = await upload(env.alice, 'short.txt', 'abc', { 'Upload-Length': '10' });
    expect(short.status).toBe(400);
    for (const p of ['mismatch.txt', 'short.txt']) {
      expect((await env.alice.provider('stat', { ref: rel(p) })).status?.code).toBe(Code.CODE_NOT_FOUND);
    }
  });

  it('stays up after refusing a simple upload part way (over quota, no length given)', async () => {
    const sp = await env.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Small wire' });
    await env.provider.updateSpace(sp.storageSpace!.root!.spaceId, { quota: 64 * 1024 });
    const init = await env.alice.providerOk('initiateFileUpload', {
      ref: { resourceId: sp.storageSpace!.root, path: './over.bin' },
    });
    const piece = new Uint8Array(64 * 1024);
    let left = 48; // 3 MiB, sent chunked (no length)
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (left-- > 0) c.enqueue(piece);
        else c.close();
      },
    });
    const res = await fetch(init.protocols.find((x) => x.protocol === 'simple')!.uploadEndpoint, {
      method: 'PUT',
      body,
      duplex: 'half',
    } as RequestInit).catch(() => undefined); // the server may close while the body is still going
    if (res) expect(res.status).toBe(507);
    await new Promise((r) => setTimeout(r, 200));
    expect((await env.alice.provider('stat', { ref: rel('.') })).status?.code).toBe(Code.CODE_OK);
  });

  it('honours if_not_exist and if_match of InitiateFileUpload', async () => {
    expect((await upload(env.alice, 'cond.txt', 'one')).status).toBe(200);
    const etag = (await env.alice.providerOk('stat', { ref: rel('cond.txt') })).info!.etag;
    const exists = await env.alice.provider('initiateFileUpload', { ref: rel('cond.txt'), ifNotExist: true });
    expect(exists.status?.code).toBe(Code.CODE_ALREADY_EXISTS);
    const stale = await env.alice.provider('initiateFileUpload', {
      ref: rel('cond.txt'),
      ifMatch: '"stale"',
    });
    expect(stale.status?.code).toBe(Code.CODE_ABORTED);
    const fresh = await env.alice.providerOk('initiateFileUpload', { ref: rel('cond.txt'), ifMatch: etag });
    const simple = fresh.protocols.find((x) => x.protocol === 'simple')!.uploadEndpoint;
    // The file changes between initiate and PUT: the condition is checked again when bytes arrive.
    expect((await upload(env.alice, 'cond.txt', 'two')).status).toBe(200);
    expect((await fetch(simple, { method: 'PUT', body: 'three' })).status).toBe(412);
    const created = await env.alice.providerOk('initiateFileUpload', { ref: rel('brand-new.txt') });
    expect(created.opaque?.map.created?.value.toString()).toBe('true');
  });

  it('downloads with ranges and conditions, and versions by <id>.REV.<key>', async () => {
    expect((await upload(env.alice, 'range.txt', '0123456789')).status).toBe(200);
    const part = await download(env.alice, rel('range.txt'), { range: 'bytes=2-4' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-4/10');
    expect(await part.text()).toBe('234');
    const whole = await download(env.alice, rel('range.txt'));
    expect(whole.headers.get('oc-checksum')).toBe(`SHA1:${sha1('0123456789')}`);
    expect(whole.headers.get('content-disposition')).toContain("filename*=UTF-8''range.txt");
    const etag = whole.headers.get('etag')!;
    await whole.text();
    expect((await download(env.alice, rel('range.txt'), { 'if-none-match': etag })).status).toBe(304);
    expect((await download(env.alice, rel('range.txt'), { range: 'bytes=50-60' })).status).toBe(416);
    // Several ranges: one multipart/byteranges answer, as Reva's data plane gives.
    const text = '0123456789'.repeat(30);
    expect((await upload(env.alice, 'ranges.txt', text)).status).toBe(200);
    const parts = await download(env.alice, rel('ranges.txt'), { range: 'bytes=0-1, 298-' });
    expect(parts.status).toBe(206);
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(
      parts.headers.get('content-type') ?? '',
    )?.[1];
    expect(boundary).toBeTruthy();
    expect(await parts.text()).toBe(
      `--${boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-1/300\r\n\r\n01` +
        `\r\n--${boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 298-299/300\r\n\r\n89\r\n--${boundary}--\r\n`,
    );
    expect((await upload(env.alice, 'range.txt', 'new content')).status).toBe(200);
    const [v] = (await env.alice.providerOk('listFileVersions', { ref: rel('range.txt') })).versions;
    const id = (await env.alice.providerOk('stat', { ref: rel('range.txt') })).info!.id!;
    const old = await download(env.alice, {
      resourceId: { ...id, opaqueId: `${id.opaqueId}.REV.${v!.key}` },
    });
    expect(await old.text()).toBe('0123456789');
  });

  it('refuses expired, tampered and misused transfer tokens, and accepts a gateway’s wrapping', async () => {
    const res = await env.alice.providerOk('initiateFileUpload', { ref: rel('token.txt') });
    const url = res.protocols.find((x) => x.protocol === 'simple')!.uploadEndpoint;
    const token = url.split('/').pop()!;
    const [h, p] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const expired = signJwt({ ...claims, exp: Math.floor(Date.now() / 1000) - 30 }, secret);
    const asBob = `${h}.${Buffer.from(JSON.stringify({ ...claims, stowage: { ...claims.stowage, u: 'u-bob' } })).toString('base64url')}.${token.split('.')[2]}`;
    const base = url.slice(0, -token.length);
    for (const [what, t] of [
      ['expired', expired],
      ['tampered', asBob],
      ['other secret', signJwt(claims, 'nope')],
    ]) {
      const r = await fetch(base + t, { method: 'PUT', body: 'x' });
      expect(r.status, what).toBe(401);
    }
    // A download token does not upload.
    expect((await upload(env.alice, 'token.txt', 'first')).status).toBe(200);
    const down = await env.alice.providerOk('initiateFileDownload', { ref: rel('token.txt') });
    const durl = down.protocols.find((x) => x.protocol === 'simple')!.downloadEndpoint;
    expect((await fetch(durl, { method: 'PUT', body: 'x' })).status).toBe(501);
    // A Reva datagateway forwards with its own token, whose target is our endpoint.
    const gateway = signJwt({ exp: Math.floor(Date.now() / 1000) + 60, aud: ['reva'], target: durl }, secret);
    const via = await fetch(`${env.server.dataUrl}/simple/`, { headers: { 'x-reva-transfer': gateway } });
    expect(via.status).toBe(200);
    expect(await via.text()).toBe('first');
    expect(
      await (await fetch(base + token, { method: 'PUT', body: 'replayed within its life' })).status,
    ).toBe(200);
  });

  it('takes a simple upload URL for one upload, and a TUS upload’s URL on its TUS endpoint only', async () => {
    const res = await env.alice.providerOk('initiateFileUpload', { ref: rel('once.txt') });
    const simple = res.protocols.find((x) => x.protocol === 'simple')!.uploadEndpoint;
    const tusUrl = res.protocols.find((x) => x.protocol === 'tus')!.uploadEndpoint;
    // One that failed (its checksum did not hold) leaves the URL good for another try.
    const bad = await fetch(simple, {
      method: 'PUT',
      body: 'one',
      headers: { 'oc-checksum': `SHA1:${sha1('x')}` },
    });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect((await fetch(simple, { method: 'PUT', body: 'one' })).status).toBe(200);
    // Used: a replay (the URL seen in a log) changes nothing.
    const again = await fetch(simple, { method: 'PUT', body: 'evil' });
    expect(again.status).toBe(404);
    expect(await again.text()).toContain('used already');
    const tusToken = tusUrl.split('/').pop()!;
    for (const put of [
      `${env.server.dataUrl}/simple/${tusToken}`,
      `${env.server.dataUrl}/spaces/${tusToken}`,
    ])
      expect((await fetch(put, { method: 'PUT', body: 'evil' })).status, put).toBe(403);
    expect(
      (
        await fetch(`${env.server.dataUrl}/simple/`, {
          method: 'PUT',
          body: 'evil',
          headers: { 'x-reva-transfer': tusToken },
        })
      ).status,
    ).toBe(403);
    // (and a simple upload's token does not start a TUS upload)
    const simpleToken = simple.split('/').pop()!;
    const asTus = await fetch(`${env.server.dataUrl}/tus`, {
      method: 'POST',
      headers: { 'tus-resumable': '1.0.0', 'x-reva-transfer': simpleToken, 'upload-length': '4' },
    });
    expect(asTus.status).toBe(403);
    expect(await (await download(env.alice, rel('once.txt'))).text()).toBe('one');
  });
});

describe('cs3: data plane, TUS', () => {
  const tus = { 'tus-resumable': '1.0.0' };
  /** A TUS PATCH of `body` at `offset`. */
  const tusPatch = (
    endpoint: string,
    offset: number,
    body: Buffer | string,
    extra: Record<string, string> = {},
  ) =>
    fetch(endpoint, {
      method: 'PATCH',
      headers: {
        ...tus,
        'content-type': 'application/offset+octet-stream',
        'upload-offset': String(offset),
        ...extra,
      },
      body,
    });

  it('announces itself', async () => {
    const r = await fetch(`${env.server.dataUrl}/tus/`, { method: 'OPTIONS' });
    expect(r.status).toBe(204);
    expect(r.headers.get('tus-version')).toBe('1.0.0');
    expect(r.headers.get('tus-extension')).toContain('creation-with-upload');
    expect(r.headers.get('tus-extension')).toContain('termination');
  });

  it('resumes an upload across a restart of the server, then verifies its checksum', async () => {
    const root = await tempRoot('cs3-tus');
    let e = await start(root);
    const data = Buffer.alloc(300_000, 7);
    const sp = await e.alice.spacesOk('createStorageSpace', { type: 'project', name: 'TUS' });
    const ref = { resourceId: sp.storageSpace!.root, path: './big.bin' };
    const map = {
      'Upload-Length': { decoder: 'plain', value: Buffer.from(String(data.length)) },
      'Upload-Checksum': { decoder: 'plain', value: Buffer.from(`sha1 ${sha1(data)}`) },
    };
    const init = await e.alice.providerOk('initiateFileUpload', { ref, opaque: { map } });
    const endpoint = init.protocols.find((x) => x.protocol === 'tus')!.uploadEndpoint;
    expect(init.protocols.find((x) => x.protocol === 'tus')!.expiration?.seconds).toBeGreaterThan(
      Date.now() / 1000,
    );
    let head = await fetch(endpoint, { method: 'HEAD', headers: tus });
    expect(head.headers.get('upload-offset')).toBe('0');
    expect(head.headers.get('upload-length')).toBe(String(data.length));
    const patch = (offset: number, body: Buffer, extra: Record<string, string> = {}) =>
      tusPatch(endpoint, offset, body, extra);
    expect((await patch(0, data.subarray(0, 100_000))).status).toBe(204);
    expect((await patch(0, data.subarray(0, 10))).status).toBe(409); // wrong offset
    // A chunk whose checksum does not match is dropped (460), the offset stays.
    const wrong = createHash('sha1').update('other').digest('base64');
    const mismatch = await patch(100_000, data.subarray(100_000, 150_000), {
      'upload-checksum': `sha1 ${wrong}`,
    });
    expect(mismatch.status).toBe(460);
    expect(mismatch.headers.get('upload-offset')).toBe('100000');
    expect(await errorOf(mismatch)).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'checksum-mismatch' });
    // Refusals say why, in the same JSON as every other error of the data plane.
    const unknownAlgo = await patch(100_000, data.subarray(100_000, 100_010), {
      'upload-checksum': 'crc99 AAAA',
    });
    expect(unknownAlgo.status).toBe(400);
    expect((await errorOf(unknownAlgo)).message).toMatch(/Upload-Checksum is "<algorithm> <base64 digest>"/);
    const notOctets = await fetch(endpoint, {
      method: 'PATCH',
      headers: { ...tus, 'upload-offset': '100000', 'content-type': 'text/plain' },
      body: 'x',
    });
    expect(notOctets.status).toBe(415);
    expect((await errorOf(notOctets)).message).toMatch(/application\/offset\+octet-stream/);
    const badLength = await patch(100_000, data.subarray(100_000, 100_010), { 'upload-length': '-1' });
    expect(badLength.status).toBe(400);
    expect((await errorOf(badLength)).message).toMatch(/Upload-Length must be a byte count/);

    // Restart: a new process on the same storage, ports and uploads folder.
    const ports = { grpc: e.server.grpcAddress, http: e.server.httpAddress };
    await e.close();
    e = await start(root, {}, ports);
    try {
      head = await fetch(endpoint, { method: 'HEAD', headers: tus });
      expect(head.status).toBe(200);
      expect(head.headers.get('upload-offset')).toBe('100000');
      const good = createHash('sha1').update(data.subarray(100_000)).digest('base64');
      const last = await patch(100_000, data.subarray(100_000), { 'upload-checksum': `sha1 ${good}` });
      expect(last.status).toBe(204);
      expect(last.headers.get('upload-offset')).toBe(String(data.length));
      expect(last.headers.get('oc-fileid')).toBeTruthy();
      const info = (await e.alice.providerOk('stat', { ref })).info!;
      expect(info.size).toBe(data.length);
      expect(info.checksum?.sum).toBe(sha1(data));
      expect((await fetch(endpoint, { method: 'HEAD', headers: tus })).status).toBe(404);
    } finally {
      await e.close();
    }
  });

  it('creates with POST (with and without a first chunk), terminates with DELETE', async () => {
    const init = await env.alice.providerOk('initiateFileUpload', { ref: rel('created.bin') });
    const token = init.protocols
      .find((x) => x.protocol === 'tus')!
      .uploadEndpoint.split('/')
      .pop()!;
    const created = await fetch(`${env.server.dataUrl}/tus`, {
      method: 'POST',
      headers: {
        ...tus,
        'x-reva-transfer': token,
        'upload-length': '6',
        'content-type': 'application/offset+octet-stream',
      },
      body: 'abc',
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('upload-offset')).toBe('3');
    const location = created.headers.get('location')!;
    const rest = await fetch(location, {
      method: 'PATCH',
      headers: { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': '3' },
      body: 'def',
    });
    expect(rest.status).toBe(204);
    const got = await download(env.alice, rel('created.bin'));
    expect(await got.text()).toBe('abcdef');

    const init2 = await env.alice.providerOk('initiateFileUpload', { ref: rel('dropped.bin') });
    const t2 = init2.protocols
      .find((x) => x.protocol === 'tus')!
      .uploadEndpoint.split('/')
      .pop()!;
    const c2 = await fetch(`${env.server.dataUrl}/tus/${t2}`, {
      method: 'POST',
      headers: { ...tus, 'upload-defer-length': '1' },
    });
    expect(c2.status).toBe(201);
    const loc2 = c2.headers.get('location')!;
    expect((await fetch(loc2, { method: 'DELETE', headers: tus })).status).toBe(204);
    expect((await fetch(loc2, { method: 'HEAD', headers: tus })).status).toBe(404);
    expect((await env.alice.provider('stat', { ref: rel('dropped.bin') })).status?.code).toBe(
      Code.CODE_NOT_FOUND,
    );
  });

  it('lets an unfinished upload expire', async () => {
    const root = await tempRoot('cs3-tus-exp');
    const e = await start(root, { uploadTtlSeconds: 1 });
    try {
      const sp = await e.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Expiring' });
      const init = await e.alice.providerOk('initiateFileUpload', {
        ref: { resourceId: sp.storageSpace!.root, path: './late.bin' },
        opaque: { map: { 'Upload-Length': { decoder: 'plain', value: Buffer.from('10') } } },
      });
      const endpoint = init.protocols.find((x) => x.protocol === 'tus')!.uploadEndpoint;
      const first = await fetch(endpoint, {
        method: 'PATCH',
        headers: { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' },
        body: '12345',
      });
      expect(first.status).toBe(204);
      expect(Date.parse(first.headers.get('upload-expires')!)).toBeGreaterThan(Date.now() - 1000);
      await new Promise((r) => setTimeout(r, 7_000)); // past expiry and the 5 s token leeway
      expect((await fetch(endpoint, { method: 'HEAD', headers: tus })).status).toBe(401);
    } finally {
      await e.close();
    }
  });

  it('bounds what uploads in progress may stage: their number per user, and each by the free quota', async () => {
    const root = await tempRoot('cs3-tus-bounds');
    let e = await start(root, { maxUploadsPerUser: 2 });
    const uploadsDir = path.join(root, 'uploads');
    const staged = async () => (await fsp.readdir(uploadsDir)).filter((n) => n.endsWith('.json')).length;
    try {
      const sp = await e.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Bounded' });
      await e.provider.updateSpace(sp.storageSpace!.root!.spaceId, { quota: 1000 });
      const ref = (name: string) => ({ resourceId: sp.storageSpace!.root, path: `./${name}` });
      const tusOf = async (name: string, length?: number) => {
        const map =
          length === undefined
            ? {}
            : { 'Upload-Length': { decoder: 'plain', value: Buffer.from(String(length)) } };
        const init = await e.alice.providerOk('initiateFileUpload', { ref: ref(name), opaque: { map } });
        return init.protocols.find((x) => x.protocol === 'tus')!.uploadEndpoint;
      };

      // A declared length beyond the space's free quota is refused before any byte is staged.
      const tooBig = await tusOf('too-big.bin', 5000);
      expect((await fetch(tooBig, { method: 'HEAD', headers: tus })).status).toBe(507);
      expect(await staged()).toBe(0);

      // Without a length, the free quota bounds the bytes: past it, 507 and the offset stays.
      const deferred = await tusOf('deferred.bin');
      const created = await fetch(deferred, {
        method: 'POST',
        headers: { ...tus, 'upload-defer-length': '1' },
      });
      expect(created.status).toBe(201);
      expect((await tusPatch(deferred, 0, 'x'.repeat(600))).status).toBe(204);
      const over = await tusPatch(deferred, 600, 'y'.repeat(600));
      expect(over.status).toBe(507);
      expect(((await over.json()) as { code: string }).code).toBe('INSUFFICIENT_STORAGE');
      const head = await fetch(deferred, { method: 'HEAD', headers: tus });
      expect(head.headers.get('upload-offset')).toBe('600');
      // Declaring a length later is checked the same way.
      expect((await tusPatch(deferred, 600, '', { 'upload-length': '5000' })).status).toBe(507);
      expect(
        (await fetch(deferred, { method: 'HEAD', headers: tus })).headers.get('upload-defer-length'),
      ).toBe('1');
      // So is a length a retried POST brings; once declared, it cannot change.
      const post = (length: string) =>
        fetch(deferred, { method: 'POST', headers: { ...tus, 'upload-length': length } });
      expect((await post('5000')).status).toBe(507);
      expect((await post('700')).status).toBe(201);
      expect((await fetch(deferred, { method: 'HEAD', headers: tus })).headers.get('upload-length')).toBe(
        '700',
      );
      expect((await post('800')).status).toBe(400);

      // Two in progress is the limit here: a third is refused and leaves nothing behind.
      const second = await tusOf('second.bin', 10);
      expect((await tusPatch(second, 0, '12345')).status).toBe(204);
      expect(await staged()).toBe(2);
      const third = await tusOf('third.bin', 10);
      const refused = await fetch(third, { method: 'HEAD', headers: tus });
      expect(refused.status).toBe(507);
      const why = JSON.parse(Buffer.from(refused.headers.get('x-stowage-error')!, 'base64url').toString());
      expect(why.message).toMatch(/at most 2 uploads in progress/);
      expect(await staged()).toBe(2);

      // The count survives a restart of the server (it is rebuilt from the uploads folder).
      const ports = { grpc: e.server.grpcAddress, http: e.server.httpAddress };
      await e.close();
      e = await start(root, { maxUploadsPerUser: 2 }, ports);
      expect((await fetch(third, { method: 'HEAD', headers: tus })).status).toBe(507);
      // Another user is not counted with alice.
      const bobSpace = await e.bob.provider('initiateFileUpload', { ref: ref('bob.bin') });
      expect(bobSpace.status?.code).not.toBe(Code.CODE_OK); // no grant on alice's space anyway

      // Finishing one upload and terminating another frees their places.
      expect((await tusPatch(second, 5, '67890')).status).toBe(204);
      expect((await fetch(deferred, { method: 'DELETE', headers: tus })).status).toBe(204);
      expect((await fetch(third, { method: 'HEAD', headers: tus })).status).toBe(200);
      expect((await tusPatch(third, 0, '0123456789')).status).toBe(204);
      const got = await e.alice.providerOk('stat', { ref: ref('third.bin') });
      expect(Number(got.info!.size)).toBe(10);
    } finally {
      await e.close();
    }
  });
});

describe('cs3: listings', () => {
  it('pages a unary ListContainer that would not fit, and streams all of it', async () => {
    const root = await tempRoot('cs3-page');
    const e = await start(root, { maxListBytes: 20_000 });
    try {
      const sp = await e.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Many' });
      const r = (p: string) => ({ resourceId: sp.storageSpace!.root, path: p });
      await e.alice.providerOk('createContainer', { ref: r('./many') });
      for (let i = 0; i < 300; i++) {
        await e.alice.providerOk('touchFile', { ref: r(`./many/f-${String(i).padStart(3, '0')}`) });
      }
      const names = new Set<string>();
      let token = '';
      let pages = 0;
      do {
        const page = await e.alice.providerOk('listContainer', { ref: r('./many'), pageToken: token });
        pages++;
        for (const i of page.infos) names.add(i.name);
        token = page.nextPageToken;
      } while (token);
      expect(names.size).toBe(300);
      expect(pages).toBeGreaterThan(1);
      const sized = await e.alice.providerOk('listContainer', { ref: r('./many'), pageSize: 7 });
      expect(sized.infos.length).toBe(7);
      expect(sized.nextPageToken).toBe('7');
      let streamed = 0;
      for await (const m of e.alice.providerStream('listContainerStream', { ref: r('./many') })) {
        if (m.info) streamed++;
      }
      expect(streamed).toBe(300);
    } finally {
      await e.close();
    }
  });

  it('passes field masks and metadata keys down', async () => {
    expect((await upload(env.alice, 'masked.txt', 'm')).status).toBe(200);
    await env.alice.providerOk('setArbitraryMetadata', {
      ref: rel('masked.txt'),
      arbitraryMetadata: { metadata: { a: '1', b: '2' } },
    });
    const slim = (await env.alice.providerOk('stat', { ref: rel('masked.txt'), fieldMask: ['mime_type'] }))
      .info!;
    expect(slim.mimeType).toBe('text/plain');
    expect(slim.checksum).toBeUndefined();
    expect(slim.permissionSet).toBeUndefined();
    const keyed = await env.alice.providerOk('stat', {
      ref: rel('masked.txt'),
      arbitraryMetadataKeys: ['b'],
    });
    expect(keyed.info?.arbitraryMetadata?.metadata).toEqual({ b: '2' });
    const full = (await env.alice.providerOk('stat', { ref: rel('masked.txt') })).info!;
    expect(full.permissionSet?.initiateFileUpload).toBe(true);
    expect(full.path).toBe('./masked.txt');
    const absolute = (await env.alice.providerOk('stat', { ref: { path: '/project/wire-tests/masked.txt' } }))
      .info!;
    expect(absolute.path).toBe('/project/wire-tests/masked.txt');
  });

  it('takes the arbitrary metadata key mtime as the file’s modification time, as Reva’s drivers do', async () => {
    expect((await upload(env.alice, 'timed.txt', 't')).status).toBe(200);
    await env.alice.providerOk('setArbitraryMetadata', {
      ref: rel('timed.txt'),
      arbitraryMetadata: { metadata: { mtime: '1000000000.5', color: 'red' } },
    });
    const info = (await env.alice.providerOk('stat', { ref: rel('timed.txt'), arbitraryMetadataKeys: ['*'] }))
      .info!;
    expect(Number(info.mtime?.seconds)).toBe(1_000_000_000);
    expect(info.mtime?.nanos).toBe(500_000_000);
    expect(info.arbitraryMetadata?.metadata).toEqual({ color: 'red' });
    const bad = await env.alice.provider('setArbitraryMetadata', {
      ref: rel('timed.txt'),
      arbitraryMetadata: { metadata: { mtime: 'yesterday' } },
    });
    expect(bad.status?.code).toBe(Code.CODE_INVALID_ARGUMENT);
    const folder = await env.alice.provider('setArbitraryMetadata', {
      ref: rel(''),
      arbitraryMetadata: { metadata: { mtime: '1000000000', color: 'blue' } },
    });
    expect(folder.status?.code).toBe(Code.CODE_FAILED_PRECONDITION);
    // Refused as a whole: the other key is not stored either.
    const root = (await env.alice.providerOk('stat', { ref: rel(''), arbitraryMetadataKeys: ['color'] }))
      .info!;
    expect(root.arbitraryMetadata?.metadata?.color).toBeUndefined();
  });

  it('takes the key http://owncloud.org/ns/favorite as the user’s own favorite mark, as Reva’s local storage does', async () => {
    const FAV = 'http://owncloud.org/ns/favorite';
    expect((await upload(env.alice, 'fav.txt', 'f')).status).toBe(200);
    const before = (await env.alice.providerOk('stat', { ref: rel('fav.txt') })).info!;
    const favOf = async (keys: string[]) =>
      (await env.alice.providerOk('stat', { ref: rel('fav.txt'), arbitraryMetadataKeys: keys })).info!
        .arbitraryMetadata?.metadata;
    expect(await favOf([FAV])).toEqual({ [FAV]: '0' });
    await env.alice.providerOk('setArbitraryMetadata', {
      ref: rel('fav.txt'),
      arbitraryMetadata: { metadata: { [FAV]: '1', color: 'green' } },
    });
    expect(await favOf([FAV, 'color'])).toEqual({ [FAV]: '1', color: 'green' });
    // Not stored as metadata: '*' does not show it, and the etag did not move.
    expect(await favOf(['*'])).toEqual({ color: 'green' });
    const after = (await env.alice.providerOk('stat', { ref: rel('fav.txt') })).info!;
    expect(after.etag).toBe(before.etag);
    const listed = await env.alice.providerOk('listContainer', {
      ref: rel(''),
      arbitraryMetadataKeys: [FAV],
    });
    const row = listed.infos.find((i) => i.path === './fav.txt');
    expect(row?.arbitraryMetadata?.metadata).toEqual({ [FAV]: '1' });
    // A value that is not one changes nothing; unsetting the key unmarks.
    const bad = await env.alice.provider('setArbitraryMetadata', {
      ref: rel('fav.txt'),
      arbitraryMetadata: { metadata: { [FAV]: 'maybe', color: 'red' } },
    });
    expect(bad.status?.code).toBe(Code.CODE_INVALID_ARGUMENT);
    expect(await favOf([FAV, 'color'])).toEqual({ [FAV]: '1', color: 'green' });
    await env.alice.providerOk('unsetArbitraryMetadata', {
      ref: rel('fav.txt'),
      arbitraryMetadataKeys: [FAV],
    });
    expect(await favOf([FAV, 'color'])).toEqual({ [FAV]: '0', color: 'green' });
    // Each user’s own: bob (granted access by an earlier test) marks it, alice's mark stays as it was.
    await env.bob.providerOk('setArbitraryMetadata', {
      ref: rel('fav.txt'),
      arbitraryMetadata: { metadata: { [FAV]: '1' } },
    });
    expect(await favOf([FAV])).toEqual({ [FAV]: '0' });
    const bobs = (await env.bob.providerOk('stat', { ref: rel('fav.txt'), arbitraryMetadataKeys: [FAV] }))
      .info!;
    expect(bobs.arbitraryMetadata?.metadata).toEqual({ [FAV]: '1' });
  });

  it('keeps the label "favorite" (AddLabel/RemoveLabel) as the user’s own mark, as CERN’s Reva sets it', async () => {
    const FAV = 'http://owncloud.org/ns/favorite';
    expect((await upload(env.alice, 'label.txt', 'l')).status).toBe(200);
    const favOf = async (c: Cs3Client) =>
      (await c.providerOk('stat', { ref: rel('label.txt'), arbitraryMetadataKeys: [FAV] })).info!
        .arbitraryMetadata?.metadata?.[FAV];
    const alice = { opaqueId: 'u-alice', idp: 'x', type: 1 };
    await env.alice.providerOk('addLabel', { ref: rel('label.txt'), userId: alice, label: 'favorite' });
    expect(await favOf(env.alice)).toBe('1');
    expect(await favOf(env.bob)).toBe('0');
    // (no user id: the token's user)
    await env.bob.providerOk('addLabel', { ref: rel('label.txt'), label: 'favorite' });
    expect(await favOf(env.bob)).toBe('1');
    // Another user's labels, or another label: refused, nothing changed.
    const other = await env.bob.provider('removeLabel', {
      ref: rel('label.txt'),
      userId: alice,
      label: 'favorite',
    });
    expect(other.status?.code).toBe(Code.CODE_PERMISSION_DENIED);
    const tag = await env.alice.provider('addLabel', {
      ref: rel('label.txt'),
      userId: alice,
      label: 'urgent',
    });
    expect(tag.status?.code).toBe(Code.CODE_UNIMPLEMENTED);
    expect(tag.status?.message).toContain('favorite');
    expect(await favOf(env.alice)).toBe('1');
    await env.alice.providerOk('removeLabel', { ref: rel('label.txt'), userId: alice, label: 'favorite' });
    expect(await favOf(env.alice)).toBe('0');
    expect(await favOf(env.bob)).toBe('1');
    const missing = await env.alice.provider('addLabel', { ref: rel('nope.txt'), label: 'favorite' });
    expect(missing.status?.code).toBe(Code.CODE_NOT_FOUND);
  });

  it('answers GetQuota as Reva: no total without a quota, and the room left in the opaque remaining', async () => {
    const q = await env.alice.providerOk('getQuota', { ref: rel('') });
    expect(q.totalBytes).toBe(0);
    // Without a quota, the storage's free space.
    const remaining = Number(Buffer.from(q.opaque!.map!.remaining!.value).toString());
    const disk = await fsp.statfs(env.root);
    expect(Math.abs(remaining - disk.bavail * disk.bsize)).toBeLessThan(256 * 1024 * 1024);
  });
});

describe('cs3: spaces', () => {
  it('answers what a spaces registry asks, and deletes in two steps', async () => {
    const pseudo = await env.alice.spacesOk('listStorageSpaces', {
      filters: [{ type: FilterType.TYPE_SPACE_TYPE, spaceType: '+grant' }],
    });
    expect(pseudo.storageSpaces).toEqual([]);
    const created = await env.alice.spacesOk('createStorageSpace', {
      type: 'project',
      name: 'Two steps',
      opaque: { map: { description: { decoder: 'plain', value: Buffer.from('about it') } } },
    });
    const sid = created.storageSpace!.id!;
    expect(created.storageSpace!.description).toBe('about it');
    const byId = await env.alice.spacesOk('listStorageSpaces', {
      filters: [{ type: FilterType.TYPE_ID, id: sid }],
    });
    expect(byId.storageSpaces.map((s) => s.name)).toEqual(['Two steps']);
    const first = await env.alice.spacesOk('deleteStorageSpace', { id: sid });
    expect(first.opaque?.map.spacename?.value.toString()).toBe('Two steps');
    const listed = await env.alice.spacesOk('listStorageSpaces', {
      filters: [{ type: FilterType.TYPE_ID, id: sid }],
    });
    expect(listed.storageSpaces[0]?.opaque?.map.trashed).toBeDefined();
    await env.alice.spacesOk('deleteStorageSpace', {
      id: sid,
      opaque: { map: { purge: { decoder: 'plain', value: Buffer.from('') } } },
    });
    const gone = await env.alice.spacesOk('listStorageSpaces', {
      filters: [{ type: FilterType.TYPE_ID, id: sid }],
    });
    expect(gone.storageSpaces).toEqual([]);
  });
  it('answers TYPE_USER with the spaces that user can see, as far as the caller may see them', async () => {
    const shared = await env.alice.spacesOk('createStorageSpace', {
      type: 'project',
      name: 'Shared with Bob',
    });
    const kept = await env.alice.spacesOk('createStorageSpace', { type: 'project', name: 'Kept from Bob' });
    await env.alice.providerOk('addGrant', {
      ref: { resourceId: shared.storageSpace!.root, path: '.' },
      grant: {
        grantee: { type: GranteeType.GRANTEE_TYPE_USER, userId: { opaqueId: 'u-bob' } },
        permissions: Object.fromEntries(Object.entries(fromLetters(ROLES.viewer))),
      },
    });
    const admin = new Cs3Client(env.server.grpcAddress, { token: env.token('u-root') });
    try {
      const unrestricted = { map: { unrestricted: { decoder: 'plain', value: Buffer.from('true') } } };
      const names = async (c: Cs3Client, user: string) =>
        (
          await c.spacesOk('listStorageSpaces', {
            opaque: unrestricted,
            filters: [{ type: FilterType.TYPE_USER, user: { opaqueId: user } }],
          })
        ).storageSpaces.map((sp) => sp.name);
      const bobs = await names(admin, 'u-bob');
      expect(bobs).toContain('Shared with Bob');
      expect(bobs).not.toContain('Kept from Bob');
      expect(await names(admin, 'u-alice')).toEqual(
        expect.arrayContaining(['Shared with Bob', 'Kept from Bob']),
      );
      expect(await names(admin, 'u-nobody')).toEqual([]);
      // Bob asking about Alice learns only what he can see himself.
      expect(await names(env.bob, 'u-alice')).not.toContain('Kept from Bob');
    } finally {
      admin.close();
    }
    expect(kept.storageSpace!.name).toBe('Kept from Bob');
  });
});
