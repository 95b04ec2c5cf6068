/**
 * The state folder of resumable uploads: what it counts against a user's bound, and how it
 * recovers from a state file cut short. And the data plane's uploads as a CS3 client starts them:
 * one upload per InitiateFileUpload, and a lock id that counts for its holder only.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cs3Client } from '../../src/cs3/client.js';
import { LockType } from '../../src/cs3/gen/cs3/storage/provider/v1beta1/resources.js';
import { mintRevaToken } from '../../src/cs3/jwt.js';
import { type Cs3Server, serveCs3 } from '../../src/cs3/serve.js';
import { IDLE_BEFORE_DROPPED_MS, TusUploads, type UploadState } from '../../src/cs3/tus.js';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { fromLetters, ROLES, StaticIdentitySource, StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';

const upload = (key: string, extra: Partial<UploadState> = {}): UploadState => ({
  id: TusUploads.idFor(key),
  offset: 0,
  expires: Date.now() + 60_000,
  target: undefined,
  user: 'u',
  ...extra,
});

describe('TusUploads: uploads in progress per user', () => {
  it('does not count an upload again once it ended, even when a read of it was under way', async () => {
    const uploads = new TusUploads(path.join(await tempRoot('tus-count'), 'uploads'));
    await uploads.open();
    const st = await uploads.create(upload('a'), { maxPerUser: 1 });
    expect(uploads.inProgress('u')).toBe(1);
    // A HEAD, or the hourly sweep, has read the state just before the upload ended.
    const readFile = fsp.readFile.bind(fsp);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const spy = vi.spyOn(fsp, 'readFile').mockImplementationOnce((async (
      ...args: Parameters<typeof fsp.readFile>
    ) => {
      const text = await readFile(...args);
      await gate;
      return text;
    }) as typeof fsp.readFile);
    const reading = uploads.get(st.id);
    await new Promise((r) => setTimeout(r, 20));
    await uploads.end(st);
    release();
    expect((await reading)?.done).toBeUndefined(); // it saw the upload still in progress
    spy.mockRestore();
    await uploads.get(st.id);
    expect(uploads.inProgress('u')).toBe(0);
    await expect(uploads.create(upload('b'), { maxPerUser: 1 })).resolves.toMatchObject({ user: 'u' });
    await expect(uploads.create(upload('c'), { maxPerUser: 1 })).rejects.toMatchObject({
      code: 'INSUFFICIENT_STORAGE',
    });
    uploads.close();
  });

  it('makes room for a new upload by dropping the least recently active idle one, never one with bytes coming in', async () => {
    // The ownCloud client never resumes a TUS upload: each interrupted sync leaves one behind.
    const uploads = new TusUploads(path.join(await tempRoot('tus-idle'), 'uploads'));
    await uploads.open();
    const hour = (key: string) => upload(key, { expires: Date.now() + 3_600_000 });
    const bytes = async function* (gate?: Promise<void>) {
      yield Buffer.from('abc');
      await gate;
    };
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      // (b first: with no bytes since, it would be the older of the two)
      const b = await uploads.create(hour('b'), { maxPerUser: 2 });
      const a = await uploads.create(hour('a'), { maxPerUser: 2 });
      vi.setSystemTime(Date.now() + 30_000);
      await uploads.append(b, bytes()); // b had bytes later than a was made
      // Both active within the last minute: no room.
      await expect(uploads.create(hour('c'), { maxPerUser: 2 })).rejects.toMatchObject({
        code: 'INSUFFICIENT_STORAGE',
      });
      // a idle for over a minute, b for 35 s: a goes.
      vi.setSystemTime(Date.now() + IDLE_BEFORE_DROPPED_MS - 25_000);
      // Two creations at once: one takes a's place, the other finds no room.
      const both = await Promise.allSettled([
        uploads.create(hour('c'), { maxPerUser: 2 }),
        uploads.create(hour('c2'), { maxPerUser: 2 }),
      ]);
      expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(uploads.inProgress('u')).toBe(2);
      expect(await uploads.get(a.id)).toBeUndefined();
      expect((await uploads.get(b.id))?.offset).toBe(3);
      // b is idle, but bytes are coming in right now: it stays, and there is no room.
      vi.setSystemTime(Date.now() + 30_000);
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const appending = uploads.append(b, bytes(gate));
      await new Promise((r) => setTimeout(r, 20));
      await expect(uploads.create(hour('d'), { maxPerUser: 2 })).rejects.toMatchObject({
        code: 'INSUFFICIENT_STORAGE',
      });
      release();
      expect(await appending).toBe(6);
      expect(uploads.inProgress('u')).toBe(2);
      // Another user's uploads are never dropped for this one.
      await uploads.create(upload('e', { user: 'v', expires: Date.now() + 3_600_000 }), { maxPerUser: 2 });
      vi.setSystemTime(Date.now() + IDLE_BEFORE_DROPPED_MS + 1);
      await uploads.create(upload('f', { user: 'v', expires: Date.now() + 3_600_000 }), { maxPerUser: 2 });
      expect(uploads.inProgress('u')).toBe(2);
      expect(uploads.inProgress('v')).toBe(2);
    } finally {
      vi.useRealTimers();
      uploads.close();
    }
  });

  it('never drops an upload being committed, however long its commit takes, and refuses a PATCH meanwhile', async () => {
    const uploads = new TusUploads(path.join(await tempRoot('tus-commit'), 'uploads'));
    await uploads.open();
    const hour = (key: string) => upload(key, { expires: Date.now() + 3_600_000, length: 3 });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const a = await uploads.create(hour('a'), { maxPerUser: 1 });
      await uploads.append(a, Readable.from([Buffer.from('abc')]));
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let read = '';
      const committing = uploads.commit(a, async (bytes) => {
        for await (const chunk of bytes) read += String(chunk);
        await gate; // (the driver checksumming a large file)
        return 'committed';
      });
      await new Promise((r) => setTimeout(r, 20));
      vi.setSystemTime(Date.now() + 2 * IDLE_BEFORE_DROPPED_MS);
      await expect(uploads.create(hour('b'), { maxPerUser: 1 })).rejects.toMatchObject({
        code: 'INSUFFICIENT_STORAGE',
      });
      await expect(uploads.append(a, Readable.from([Buffer.from('d')]))).rejects.toMatchObject({
        code: 'ABORTED',
      });
      release();
      expect(await committing).toBe('committed');
      expect(read).toBe('abc');
      expect((await uploads.get(a.id))?.done).toBe(true);
      // Ended: the place is free again.
      await expect(uploads.create(hour('b'), { maxPerUser: 1 })).resolves.toMatchObject({ offset: 0 });
    } finally {
      vi.useRealTimers();
      uploads.close();
    }
  });

  it('gives two requests creating the same upload at once the same one', async () => {
    const uploads = new TusUploads(path.join(await tempRoot('tus-same'), 'uploads'));
    await uploads.open();
    await uploads.create(upload('other'), { maxPerUser: 2 });
    const [a, b] = await Promise.allSettled([
      uploads.create(upload('same', { length: 10 }), { maxPerUser: 2 }),
      uploads.create(upload('same'), { maxPerUser: 2 }),
    ]);
    expect([a.status, b.status]).toEqual(['fulfilled', 'fulfilled']);
    expect(a.status === 'fulfilled' && b.status === 'fulfilled' && a.value === b.value).toBe(true);
    expect((await uploads.get(TusUploads.idFor('same')))?.length).toBe(10);
    expect(uploads.inProgress('u')).toBe(2);
    uploads.close();
  });

  it('counts every readable upload at start, and drops one whose state was cut short', async () => {
    const dir = path.join(await tempRoot('tus-sweep'), 'uploads');
    const first = new TusUploads(dir);
    await first.open();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await first.create(upload(`k${i}`))).id);
    first.close();
    fs.writeFileSync(path.join(dir, `${ids[7]}.json`), ''); // a crash left it empty

    const logged: string[] = [];
    const again = new TusUploads(dir, (m) => logged.push(m));
    await again.open();
    expect(again.inProgress('u')).toBe(19);
    expect(await again.get(ids[7]!)).toBeUndefined();
    expect(fs.existsSync(path.join(dir, `${ids[7]}.bin`))).toBe(false);
    expect(logged.join('\n')).toMatch(/unreadable state/);
    again.close();
  });

  it('drops at start the bytes of an upload that ended just before a stop (its marker stays)', async () => {
    const dir = path.join(await tempRoot('tus-ended'), 'uploads');
    const first = new TusUploads(dir);
    await first.open();
    const st = await first.create(upload('ended', { length: 3 }));
    await first.append(st, Readable.from([Buffer.from('abc')]));
    first.close();
    // A stop between end()'s two steps: the marker says done, the bytes are still there.
    fs.writeFileSync(
      path.join(dir, `${st.id}.json`),
      JSON.stringify({ id: st.id, offset: 3, expires: st.expires, done: true }),
    );
    expect(fs.existsSync(path.join(dir, `${st.id}.bin`))).toBe(true);
    const again = new TusUploads(dir);
    await again.open();
    expect(fs.existsSync(path.join(dir, `${st.id}.bin`))).toBe(false);
    expect((await again.get(st.id))?.done).toBe(true);
    expect(again.inProgress('u')).toBe(0);
    again.close();
  });
});

describe('DataPlane: uploads a CS3 client initiates', () => {
  const secret = 'tus-test-secret';
  const users = [
    { id: 'u-alice', username: 'alice', createSpaces: true },
    { id: 'u-bob', username: 'bob' },
  ];
  let provider: StorageProvider;
  let server: Cs3Server;
  let alice: Cs3Client;
  let bob: Cs3Client;
  let root: { storageId: string; spaceId: string; opaqueId: string };
  const TUS = { 'tus-resumable': '1.0.0' };

  beforeAll(async () => {
    const dir = await tempRoot('tus-plane');
    provider = new StorageProvider({
      drivers: await createPosixDriver({ root: path.join(dir, 'data') }),
      identity: await StaticIdentitySource.create({ users }),
    });
    server = await serveCs3({
      provider,
      jwtSecret: secret,
      grpc: '127.0.0.1:0',
      http: '127.0.0.1:0',
      uploadsDir: path.join(dir, 'uploads'),
    });
    const token = (id: string) => mintRevaToken(users.find((u) => u.id === id)!, secret);
    alice = new Cs3Client(server.grpcAddress, { token: token('u-alice') });
    bob = new Cs3Client(server.grpcAddress, { token: token('u-bob') });
    const made = await alice.spacesOk('createStorageSpace', { type: 'project', name: 'Plane' });
    root = made.storageSpace!.root as typeof root;
    await (await provider.as('alice')).setGrant(
      { space: root.spaceId, path: '' },
      { grantee: { type: 'user', id: 'u-bob' }, permissions: fromLetters(ROLES.editor) },
    );
  });
  afterAll(async () => {
    alice?.close();
    bob?.close();
    await server?.close();
    await provider?.close();
  });

  const ref = (name: string) => ({ resourceId: root, path: `./${name}` });
  const initiate = async (c: Cs3Client, name: string, length: number, lockId?: string) => {
    const map = { 'Upload-Length': { decoder: 'plain', value: Buffer.from(String(length)) } };
    const res = await c.providerOk('initiateFileUpload', {
      ref: ref(name),
      opaque: { map },
      ...(lockId && { lockId }),
    });
    const at = (p: string) => res.protocols.find((x) => x.protocol === p)!.uploadEndpoint;
    return { simple: at('simple'), tus: at('tus') };
  };
  const content = async (name: string) => {
    const res = await alice.providerOk('initiateFileDownload', { ref: ref(name) });
    return (await fetch(res.protocols.find((x) => x.protocol === 'simple')!.downloadEndpoint)).text();
  };
  const tusPost = (url: string, body: string, headers: Record<string, string> = {}) =>
    fetch(url, {
      method: 'POST',
      headers: {
        ...TUS,
        'upload-length': String(body.length),
        'content-type': 'application/offset+octet-stream',
        ...headers,
      },
      body,
    });

  it('hands out a new upload for every InitiateFileUpload, the same one twice within a second too', async () => {
    const eps = await Promise.all([1, 2, 3].map(() => initiate(alice, 'same.txt', 5)));
    expect(new Set(eps.map((e) => e.tus)).size).toBe(3);
    expect(new Set(eps.map((e) => e.simple)).size).toBe(3);
    for (const [i, e] of eps.entries()) expect((await tusPost(e.tus, `abcd${i}`)).status).toBe(201);
    expect(await content('same.txt')).toBe('abcd2');
    // The same endpoint is still the same upload: a second POST finds it finished.
    expect((await tusPost(eps[0]!.tus, 'abcd9')).status).toBe(404);
  });

  it('answers the last byte sent again after a stop during or right after the write as what happened: done, written, or a conflict', async () => {
    const head = async (url: string) => {
      const r = await fetch(url, { method: 'HEAD', headers: TUS });
      return r.status === 200 ? Number(r.headers.get('upload-offset')) : r.status;
    };
    const resend = (url: string, offset: number, byte: string) =>
      fetch(url, {
        method: 'PATCH',
        headers: {
          ...TUS,
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
        body: byte,
      });
    const put = async (c: Cs3Client, name: string, body: string) =>
      expect(
        (await fetch((await initiate(c, name, body.length)).simple, { method: 'PUT', body })).status,
      ).toBe(200);
    // The process stops during the write (before it lands) or right after it: what the upload's
    // end would have saved is not saved (its state: all the bytes, not done).
    const stopped = async (name: string, body: string, landed: boolean) => {
      const ep = await initiate(alice, name, body.length);
      const end = vi
        .spyOn(TusUploads.prototype as unknown as { finish: () => Promise<void> }, 'finish')
        .mockRejectedValueOnce(new Error('(stops here)'));
      const driver = provider.driverFor(root.storageId);
      const write = landed
        ? undefined
        : vi.spyOn(driver, 'write').mockRejectedValueOnce(new Error('(stops)'));
      try {
        expect((await tusPost(ep.tus, body)).status).toBe(500);
      } finally {
        end.mockRestore();
        write?.mockRestore();
      }
      expect(await head(ep.tus)).toBe(body.length - 1); // (the client sends the last byte again)
      return ep.tus;
    };

    // Landed, nobody wrote since: done, the file as it was written.
    const a = await stopped('resume-a.txt', 'abcde', true);
    const etag = (await alice.providerOk('stat', { ref: ref('resume-a.txt') })).info!.etag;
    const done = await resend(a, 4, 'e');
    expect(done.status).toBe(204);
    expect(done.headers.get('upload-offset')).toBe('5');
    expect((await alice.providerOk('stat', { ref: ref('resume-a.txt') })).info!.etag).toBe(etag);
    expect(await head(a)).toBe(404);

    // Landed, then Bob wrote the file: his stays, and alice's client is told of a conflict.
    const b = await stopped('resume-b.txt', 'abcde', true);
    await put(bob, 'resume-b.txt', 'bob-1');
    expect((await resend(b, 4, 'e')).status).toBe(412);
    expect(await content('resume-b.txt')).toBe('bob-1');
    expect(await head(b)).toBe(404);

    // Cut short during the write, then Bob wrote the file: a conflict too, never "done".
    await put(alice, 'resume-c.txt', 'old');
    const c = await stopped('resume-c.txt', 'new', false);
    expect(await content('resume-c.txt')).toBe('old');
    await put(bob, 'resume-c.txt', 'bob');
    expect((await resend(c, 2, 'w')).status).toBe(412);
    expect(await content('resume-c.txt')).toBe('bob');

    // Cut short during the write, nobody wrote since: the last byte sent again writes it.
    await put(alice, 'resume-d.txt', 'old');
    const d = await stopped('resume-d.txt', 'new', false);
    expect(await content('resume-d.txt')).toBe('old');
    expect((await resend(d, 2, 'w')).status).toBe(204);
    expect(await content('resume-d.txt')).toBe('new');
  });

  it('keeps CS3’s lock rule: a shared lock’s id is shared by who writes with it, an exclusive one is its holder’s', async () => {
    expect(
      (await fetch((await initiate(alice, 'locked.odt', 2)).simple, { method: 'PUT', body: 'v1' })).status,
    ).toBe(200);
    // Office editors of one document share the lock their app server took (WOPI).
    const lock = { lockId: 'office-shared-1', type: LockType.LOCK_TYPE_SHARED, appName: 'Office' };
    await alice.providerOk('setLock', { ref: ref('locked.odt'), lock });
    expect((await bob.providerOk('getLock', { ref: ref('locked.odt') })).lock?.lockId).toBe(lock.lockId);
    const x = { 'x-lock-id': lock.lockId };
    expect(
      (await fetch((await initiate(bob, 'locked.odt', 2)).simple, { method: 'PUT', body: 'v2' })).status,
    ).toBe(423);
    const withId = await initiate(bob, 'locked.odt', 2, lock.lockId);
    expect((await fetch(withId.simple, { method: 'PUT', body: 'v2' })).status).toBe(200);
    expect((await tusPost((await initiate(bob, 'locked.odt', 2)).tus, 'v3', x)).status).toBe(201);
    expect(await content('locked.odt')).toBe('v3');
    await alice.providerOk('unlock', { ref: ref('locked.odt'), lock });
    // An exclusive lock is its holder's: knowing its id is not enough.
    const mine = { lockId: 'alice-only', type: LockType.LOCK_TYPE_EXCL };
    await alice.providerOk('setLock', { ref: ref('locked.odt'), lock: mine });
    const refused = await fetch((await initiate(bob, 'locked.odt', 2, mine.lockId)).simple, {
      method: 'PUT',
      body: 'v4',
    });
    expect(refused.status).toBe(423);
    expect(
      (await tusPost((await initiate(bob, 'locked.odt', 2)).tus, 'v4', { 'x-lock-id': mine.lockId })).status,
    ).toBe(423);
    expect(await content('locked.odt')).toBe('v3');
    expect(
      (
        await fetch((await initiate(alice, 'locked.odt', 2, mine.lockId)).simple, {
          method: 'PUT',
          body: 'v5',
        })
      ).status,
    ).toBe(200);
    expect(await content('locked.odt')).toBe('v5');
  });
});
