/**
 * The shared driver conformance suite, exported as `stowage/testing`. Every driver passes it; protocol
 * doors pass it by wrapping a client in a Driver. One `describe` block per capability, skipped when
 * the driver does not advertise it.
 *
 * ```ts
 * // test/drivers/memory.test.ts
 * import { describeConformance } from 'stowage/testing';
 * import { createMemoryDriver } from 'stowage/drivers/memory';
 * await describeConformance({ name: 'memory', createDriver: async () => createMemoryDriver() });
 * ```
 *
 * Needs vitest (a peer dependency of this entry point only).
 *
 * @module stowage/testing
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { collect } from '../../src/core/body.js';
import type { Driver } from '../../src/core/driver.js';
import { StorageError } from '../../src/core/errors.js';
import { fromLetters, type Grant, ROLES } from '../../src/core/permissions.js';
import { StorageProvider } from '../../src/core/provider.js';
import { formatResourceId } from '../../src/core/refs.js';
import type { RecycleItem, Ref, ResourceInfo, Space, WriteOptions } from '../../src/core/types.js';
import { readOnly } from '../../src/core/wrappers.js';

/** What a driver's test file hands to {@link describeConformance}. */
export interface ConformanceTarget {
  /** Shown in test titles. */
  name: string;
  /** A fresh driver on fresh storage. Called once for the suite (and once more to probe features). */
  createDriver(): Promise<Driver>;
  /**
   * A fresh, empty space for one test. Needed only by drivers without the `spaces` capability (one
   * fixed space, say); others get a new project space per test.
   */
  freshSpace?(driver: Driver): Promise<Space>;
  /** Close a driver and open a new one on the same storage; enables the persistence block. */
  reopen?(old: Driver): Promise<Driver>;
  /** For drivers on a local filesystem. */
  disk?: {
    /** Where a space's root folder is, to plant symlinks there. */
    spaceRoot(driver: Driver, space: Space): Promise<string>;
    /**
     * Problems in a space as stored (tree sizes that disagree with the disk, leftovers of uploads),
     * checked after every test in each space the test created. Empty when all is well.
     */
    check?(driver: Driver, space: Space): Promise<string[]>;
  };
  /**
   * The driver acts as the user its credentials name, whatever `actor` a call passes (a protocol
   * client). Tests of driver-level actors are then the door's own (with two users' credentials).
   */
  fixedActor?: boolean;
  /**
   * The driver carries one lock id per call (a CS3 client: the protocol has no field for more),
   * so `heldLockIds` cannot reach the storage.
   */
  oneLockId?: boolean;
  /**
   * The driver cannot say when a resource came to be (`ResourceInfo.created`); skips the block
   * that checks it. Every driver of this package knows.
   */
  noCreationTimes?: boolean;
  /**
   * Metadata keys must name WebDAV properties (`<namespace>/<name>`, a WebDAV client): the suite's
   * keys without a `/` are put in a namespace of their own.
   */
  propertyKeys?: boolean;
  /** Scale knobs for slow transports (defaults in brackets). */
  scale?: { bigFileBytes?: number /* 5 MiB */; manyEntries?: number /* 1500 */; parallel?: number /* 24 */ };
}

const HELLO = {
  sha1: 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d',
  md5: '5d41402abc4b2a76b9719d911017c592',
  adler32: '062c0215',
};

/** Names every driver must store and return byte-exact. */
export const HARD_NAMES: readonly string[] = [
  'with space.txt',
  ' leading and trailing space ',
  'quote"double.txt',
  "quote'single.txt",
  'q?mark#hash%pct&amp+plus.txt',
  '%2e%2e',
  '%2F-not-a-slash',
  'caf\u00e9-nfc.txt',
  'cafe\u0301-nfd.txt',
  '.leading-dot',
  '..double-leading-dot',
  '...',
  'emoji-\u{1F600}.txt',
  '\u65e5\u672c\u8a9e.txt',
  'back\\slash',
  'tab\there',
  'semi;colon,comma=equals@at',
  '[brackets]{braces}(parens)',
  'x'.repeat(255),
];

async function expectCode(p: Promise<unknown>, code: string, reason?: string): Promise<StorageError> {
  try {
    await p;
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(StorageError);
    const e = err as StorageError;
    expect(e.code, e.message).toBe(code);
    if (reason) expect(e.reason, e.message).toBe(reason);
    return e;
  }
  throw new Error(`expected ${code}${reason ? `/${reason}` : ''}, but the call succeeded`);
}

async function* chunked(parts: (Buffer | Error)[], delayMs = 0): AsyncGenerator<Uint8Array> {
  for (const p of parts) {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    if (p instanceof Error) throw p;
    yield p;
  }
}

/**
 * Define the conformance suite for one driver. Call it at the top level of a test file with `await`.
 */
export async function describeConformance(target: ConformanceTarget): Promise<void> {
  const probe = await target.createDriver();
  const features = probe.features;
  await probe.close();
  const big = target.scale?.bigFileBytes ?? 5 * 1024 * 1024;
  const many = target.scale?.manyEntries ?? 1500;
  const parallel = target.scale?.parallel ?? 24;

  describe(`conformance: ${target.name}`, () => {
    let driver: Driver;
    let storage: StorageProvider;
    let n = 0;

    let before = new Set<string>();

    beforeAll(async () => {
      driver = await target.createDriver();
      storage = new StorageProvider({ drivers: driver });
    });
    afterAll(async () => {
      await storage?.close();
    });
    beforeEach(async () => {
      before = new Set();
      if (target.disk?.check)
        for await (const sp of driver.listSpaces({ includeDisabled: true })) before.add(sp.id);
    });
    afterEach(async () => {
      const check = target.disk?.check;
      if (!check) return;
      for await (const sp of driver.listSpaces({ includeDisabled: true })) {
        if (before.has(sp.id)) continue;
        expect(await check(driver, sp), `space ${sp.alias} as stored`).toEqual([]);
      }
    });

    async function newSpace(): Promise<Space> {
      if (!features.spaces) {
        if (!target.freshSpace)
          throw new Error(`${target.name}: without the spaces capability, pass freshSpace`);
        return target.freshSpace(driver);
      }
      return storage.createSpace({ type: 'project', name: `Test ${++n} ${randomUUID().slice(0, 8)}` });
    }
    const at = (space: Space, p = ''): Ref => ({ space: space.id, path: p });
    /** A metadata key of the suite as the driver takes it (see {@link ConformanceTarget.propertyKeys}). */
    const K = (k: string) => (target.propertyKeys && k && !k.includes('/') ? `urn:conformance/${k}` : k);
    /** Metadata with its keys as the driver takes them. */
    const M = (values: Record<string, string>) =>
      Object.fromEntries(Object.entries(values).map(([k, v]) => [K(k), v]));
    async function put(space: Space, p: string, content: string | Buffer, opts?: WriteOptions) {
      return storage.write(at(space, p), content, opts);
    }
    async function get(ref: Ref): Promise<string> {
      const r = await storage.read(ref);
      expect(r.status).toBe(200);
      return (await collect(r.body!)).toString('utf8');
    }
    async function names(ref: Ref): Promise<string[]> {
      const out: string[] = [];
      for await (const i of storage.list(ref)) out.push(i.name);
      return out.sort();
    }
    /** Bytes in the live tree of a space (trash and versions are counted separately). */
    async function liveBytes(space: Space): Promise<number> {
      return (await storage.stat(at(space))).size;
    }
    async function exists(ref: Ref): Promise<boolean> {
      try {
        await storage.stat(ref);
        return true;
      } catch (err) {
        if (StorageError.is(err, 'NOT_FOUND')) return false;
        throw err;
      }
    }

    // ------------------------------------------------------------------ spaces
    describe.skipIf(!features.spaces)('capability: spaces', () => {
      it('creates a project space whose root is a folder with the space id', async () => {
        const sp = await newSpace();
        expect(sp.type).toBe('project');
        expect(sp.storageId).toBe(driver.storageId);
        expect(sp.root.opaqueId).toBe(sp.id);
        expect(sp.alias.startsWith('project/')).toBe(true);
        expect(sp.used).toBe(0);
        const root = await storage.stat(at(sp));
        expect(root.type).toBe('folder');
        expect(root.id.spaceId).toBe(sp.id);
        expect(root.id.opaqueId).toBe(sp.id);
        expect(root.path).toBe('/');
        expect(root.parentId).toBeUndefined();
        expect(await names(at(sp))).toEqual([]);
      });

      it('finds a space by id and by alias, and resolves absolute alias paths', async () => {
        const sp = await newSpace();
        expect((await storage.getSpace(sp.id)).id).toBe(sp.id);
        expect((await storage.getSpace(sp.alias)).id).toBe(sp.id);
        await put(sp, 'a.txt', 'hello');
        expect(await get(`/${sp.alias}/a.txt`)).toBe('hello');
        expect(await get(`${formatResourceId(sp.root)}/a.txt`)).toBe('hello');
        await expectCode(storage.getSpace('project/no-such-space-here'), 'NOT_FOUND');
        await expectCode(storage.getSpace(randomUUID()), 'NOT_FOUND');
      });

      it('gives project spaces unique aliases for equal names', async () => {
        const a = await storage.createSpace({ type: 'project', name: `Same ${n}` });
        const b = await storage.createSpace({ type: 'project', name: `Same ${n}` });
        expect(a.alias).not.toBe(b.alias);
        expect(a.id).not.toBe(b.id);
      });

      it('creates one personal space per owner', async () => {
        const user = `user-${randomUUID().slice(0, 8)}`;
        const sp = await storage.createSpace({
          type: 'personal',
          name: user,
          owner: { id: randomUUID(), username: user },
        });
        expect(sp.alias).toBe(`personal/${user}`);
        expect(sp.owner?.username).toBe(user);
        await expectCode(
          storage.createSpace({ type: 'personal', name: user, owner: { id: randomUUID(), username: user } }),
          'ALREADY_EXISTS',
        );
      });

      it('lists spaces with filters', async () => {
        const sp = await newSpace();
        const all: Space[] = [];
        for await (const s of storage.listSpaces({ type: 'project' })) all.push(s);
        expect(all.some((s) => s.id === sp.id)).toBe(true);
        expect(all.every((s) => s.type === 'project')).toBe(true);
        const one: Space[] = [];
        for await (const s of storage.listSpaces({ id: sp.id })) one.push(s);
        expect(one.map((s) => s.id)).toEqual([sp.id]);
      });

      it('updates name, description and quota, and reports used bytes', async () => {
        const sp = await newSpace();
        await put(sp, 'x.bin', Buffer.alloc(1234));
        const up = await storage.updateSpace(sp.id, { name: 'Renamed', description: 'about', quota: 10_000 });
        expect(up.name).toBe('Renamed');
        expect(up.description).toBe('about');
        expect(up.quota).toBe(10_000);
        expect(up.alias).toBe(sp.alias);
        expect(up.used).toBe(1234);
        expect(up.usage?.files ?? up.used).toBe(1234);
        const cleared = await storage.updateSpace(sp.id, { description: null, quota: null });
        expect(cleared.description).toBeUndefined();
        expect(cleared.quota).toBeUndefined();
        expect((await storage.getSpace(sp.id)).name).toBe('Renamed');
      });

      it('deletes a space and everything in it, only once it is disabled', async () => {
        const sp = await newSpace();
        await put(sp, 'f.txt', 'x');
        await expectCode(storage.deleteSpace(sp.id), 'FAILED_PRECONDITION');
        expect(await get(at(sp, 'f.txt'))).toBe('x');
        const disabled = await storage.updateSpace(sp.id, { disabled: true });
        expect(disabled.disabled).toBe(true);
        await expectCode(storage.stat(at(sp, 'f.txt')), 'FAILED_PRECONDITION', 'space-disabled');
        const listed: string[] = [];
        for await (const x of storage.listSpaces({ includeDisabled: true })) listed.push(x.id);
        expect(listed).toContain(sp.id);
        const active: string[] = [];
        for await (const x of storage.listSpaces()) active.push(x.id);
        expect(active).not.toContain(sp.id);
        await storage.updateSpace(sp.id, { disabled: false });
        expect(await get(at(sp, 'f.txt'))).toBe('x');
        await storage.updateSpace(sp.id, { disabled: true });
        await storage.deleteSpace(sp.id);
        await expectCode(storage.getSpace(sp.id), 'NOT_FOUND');
        await expectCode(storage.stat(at(sp, 'f.txt')), 'NOT_FOUND');
      });

      it('refuses invalid space input', async () => {
        await expectCode(storage.createSpace({ type: 'project', name: '' }), 'INVALID_ARGUMENT');
        await expectCode(storage.createSpace({ type: 'nope' as 'project', name: 'x' }), 'INVALID_ARGUMENT');
        await expectCode(storage.createSpace({ type: 'project', name: 'q', quota: -1 }), 'INVALID_ARGUMENT');
      });
    });

    // ------------------------------------------------------------------ files
    describe('files', () => {
      it('writes and reads back, with sha1, md5 and adler32', async () => {
        const sp = await newSpace();
        const info = await put(sp, 'hello.txt', 'hello');
        expect(info.type).toBe('file');
        expect(info.name).toBe('hello.txt');
        expect(info.path).toBe('/hello.txt');
        expect(info.size).toBe(5);
        expect(info.mimeType).toBe('text/plain');
        expect(info.checksums).toEqual(HELLO);
        expect(info.etag).toMatch(/^[^"\s]+$/);
        expect(info.parentId?.opaqueId).toBe(sp.id);
        expect(await get(at(sp, 'hello.txt'))).toBe('hello');
        const st = await storage.stat(at(sp, 'hello.txt'));
        expect(st.id).toEqual(info.id);
        expect(st.etag).toBe(info.etag);
        expect(st.checksums).toEqual(HELLO);
      });

      it('writes an empty file', async () => {
        const sp = await newSpace();
        const info = await put(sp, 'empty', '');
        expect(info.size).toBe(0);
        expect(info.checksums?.sha1).toBe('da39a3ee5e6b4b0d3255bfef95601890afd80709');
        expect(info.checksums?.adler32).toBe('00000001');
        expect(await get(at(sp, 'empty'))).toBe('');
      });

      it('streams a large body of unknown size and checksums it', async () => {
        const sp = await newSpace();
        const data = randomBytes(big);
        const parts: Buffer[] = [];
        for (let o = 0; o < data.length; o += 65_537) parts.push(data.subarray(o, o + 65_537));
        const info = await storage.write(at(sp, 'big.bin'), chunked(parts));
        expect(info.size).toBe(big);
        const { createHash } = await import('node:crypto');
        expect(info.checksums?.sha1).toBe(createHash('sha1').update(data).digest('hex'));
        expect(info.checksums?.md5).toBe(createHash('md5').update(data).digest('hex'));
        const r = await storage.read(at(sp, 'big.bin'));
        expect((await collect(r.body!)).equals(data)).toBe(true);
      });

      it('keeps the client-supplied mtime', async () => {
        const sp = await newSpace();
        const mtime = Date.UTC(2001, 8, 9, 1, 46, 40);
        const info = await put(sp, 'old.txt', 'x', { mtime });
        expect(info.mtime).toBe(mtime);
        expect((await storage.stat(at(sp, 'old.txt'))).mtime).toBe(mtime);
      });

      it('keeps the id when a file is overwritten, and changes the etag', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'f.txt', 'one');
        const b = await put(sp, 'f.txt', 'two!');
        expect(b.id).toEqual(a.id);
        expect(b.etag).not.toBe(a.etag);
        expect(b.size).toBe(4);
        expect(await get(at(sp, 'f.txt'))).toBe('two!');
        expect(await names(at(sp))).toEqual(['f.txt']);
      });

      it('changes the etag on overwrite even with the same size and mtime', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'f.txt', 'aaaa', { mtime: 1_000_000 });
        const b = await put(sp, 'f.txt', 'bbbb', { mtime: 1_000_000 });
        expect(b.etag).not.toBe(a.etag);
        const c = await put(sp, 'f.txt', 'bbbb', { mtime: 1_000_000 });
        expect(c.etag).toBe(b.etag);
      });

      it('verifies expected checksums and leaves nothing on mismatch', async () => {
        const sp = await newSpace();
        await put(sp, 'ok.txt', 'hello', {
          checksums: { sha1: HELLO.sha1.toUpperCase(), adler32: HELLO.adler32 },
        });
        await expectCode(
          put(sp, 'bad.txt', 'hello', { checksums: { md5: '0'.repeat(32) } }),
          'INVALID_ARGUMENT',
          'checksum-mismatch',
        );
        expect(await exists(at(sp, 'bad.txt'))).toBe(false);
        await put(sp, 'keep.txt', 'old');
        await expectCode(
          put(sp, 'keep.txt', 'new', { checksums: { sha1: '1'.repeat(40) } }),
          'INVALID_ARGUMENT',
          'checksum-mismatch',
        );
        expect(await get(at(sp, 'keep.txt'))).toBe('old');
        expect(await names(at(sp))).toEqual(['keep.txt', 'ok.txt']);
      });

      it('refuses a body whose length differs from the declared size, leaving nothing', async () => {
        const sp = await newSpace();
        await expectCode(put(sp, 'short.txt', 'abc', { size: 10 }), 'INVALID_ARGUMENT', 'size-mismatch');
        await expectCode(
          put(sp, 'long.txt', 'abcdefghijkl', { size: 10 }),
          'INVALID_ARGUMENT',
          'size-mismatch',
        );
        expect(await liveBytes(sp)).toBe(0);
        expect(await names(at(sp))).toEqual([]);
      });

      it('leaves nothing when the body stream fails half way', async () => {
        const sp = await newSpace();
        const body = chunked([randomBytes(300_000), randomBytes(300_000), new Error('connection reset')]);
        await expectCode(storage.write(at(sp, 'broken.bin'), body), 'CANCELLED');
        expect(await exists(at(sp, 'broken.bin'))).toBe(false);
        await put(sp, 'keep.bin', 'original');
        const body2 = chunked([randomBytes(100_000), new Error('connection reset')]);
        await expectCode(storage.write(at(sp, 'keep.bin'), body2), 'CANCELLED');
        expect(await get(at(sp, 'keep.bin'))).toBe('original');
        expect(await liveBytes(sp)).toBe(8);
        expect(await names(at(sp))).toEqual(['keep.bin']);
      });

      it('stops an upload when its signal aborts, leaving nothing', async () => {
        const sp = await newSpace();
        const ac = new AbortController();
        async function* slow() {
          yield randomBytes(10_000);
          ac.abort();
          await new Promise((r) => setTimeout(r, 20));
          yield randomBytes(10_000);
        }
        await expectCode(storage.write(at(sp, 'aborted.bin'), slow(), { signal: ac.signal }), 'CANCELLED');
        expect(await exists(at(sp, 'aborted.bin'))).toBe(false);
      });

      it('serves byte ranges', async () => {
        const sp = await newSpace();
        await put(sp, 'r.txt', '0123456789');
        const read = async (range: { start?: number; end?: number; suffix?: number }) => {
          const r = await storage.read(at(sp, 'r.txt'), { range });
          return {
            status: r.status,
            range: r.range,
            body: r.body ? (await collect(r.body)).toString() : undefined,
          };
        };
        expect(await read({ start: 2, end: 4 })).toEqual({
          status: 206,
          range: { start: 2, end: 4 },
          body: '234',
        });
        expect(await read({ start: 7 })).toEqual({ status: 206, range: { start: 7, end: 9 }, body: '789' });
        expect(await read({ suffix: 3 })).toEqual({ status: 206, range: { start: 7, end: 9 }, body: '789' });
        expect(await read({ start: 8, end: 100 })).toEqual({
          status: 206,
          range: { start: 8, end: 9 },
          body: '89',
        });
        expect((await read({ start: 10 })).status).toBe(416);
        expect((await read({ start: 10 })).body).toBeUndefined();
      });

      it('answers conditional reads without a body', async () => {
        const sp = await newSpace();
        const info = await put(sp, 'c.txt', 'content', { mtime: Date.UTC(2020, 0, 1) });
        const r304 = await storage.read(at(sp, 'c.txt'), { conditions: { ifNoneMatch: [`"${info.etag}"`] } });
        expect(r304.status).toBe(304);
        expect(r304.body).toBeUndefined();
        expect(r304.info.etag).toBe(info.etag);
        const r412 = await storage.read(at(sp, 'c.txt'), { conditions: { ifMatch: ['"nope"'] } });
        expect(r412.status).toBe(412);
        expect(r412.body).toBeUndefined();
        // Its time is years old, but it was written just now: not unmodified since 2021 (a copy
        // fetched then is stale), but since a second from now.
        const since2021 = await storage.read(at(sp, 'c.txt'), {
          conditions: { ifModifiedSince: Date.UTC(2021, 0, 1) },
        });
        expect(since2021.status).toBe(200);
        await collect(since2021.body!);
        const ims = await storage.read(at(sp, 'c.txt'), {
          conditions: { ifModifiedSince: Date.now() + 1000 },
        });
        expect(ims.status).toBe(304);
        const ok = await storage.read(at(sp, 'c.txt'), {
          conditions: { ifMatch: [info.etag], ifModifiedSince: Date.UTC(2019, 0, 1) },
        });
        expect(ok.status).toBe(200);
        expect((await collect(ok.body!)).toString()).toBe('content');
        const stale = await storage.read(at(sp, 'c.txt'), { range: { start: 0, end: 1 }, ifRange: '"old"' });
        expect(stale.status).toBe(200);
        await collect(stale.body!);
        const fresh = await storage.read(at(sp, 'c.txt'), {
          range: { start: 0, end: 1 },
          ifRange: `"${info.etag}"`,
        });
        expect(fresh.status).toBe(206);
        await collect(fresh.body!);
        // A failed If-Range serves the whole content, even when the range would not fit it.
        const past = await storage.read(at(sp, 'c.txt'), { range: { start: 100 }, ifRange: '"old"' });
        expect(past.status).toBe(200);
        expect((await collect(past.body!)).toString()).toBe('content');
        // A date does not name content written after it, whatever its time says (it was given
        // one years old): the whole content.
        const dated = await storage.read(at(sp, 'c.txt'), {
          range: { start: 0, end: 1 },
          ifRange: new Date(Date.UTC(2020, 0, 1)).toUTCString(),
        });
        expect(dated.status).toBe(200);
        expect((await collect(dated.body!)).toString()).toBe('content');
      });

      it('tells a file given an older time apart from what a date condition saw (If-Modified-Since, If-Range)', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'd.txt', 'first', { mtime: Date.UTC(2024, 5, 1) });
        const seen = a.mtime; // (what a client read as its Last-Modified)
        expect((await storage.read(at(sp, 'd.txt'), { conditions: { ifModifiedSince: seen } })).status).toBe(
          200,
        );
        // Replaced by content with an older time (a sync client keeps its file's, or a backup restored)
        await put(sp, 'd.txt', 'second', { mtime: Date.UTC(2024, 0, 1) });
        const again = await storage.read(at(sp, 'd.txt'), { conditions: { ifModifiedSince: seen } });
        expect(again.status).toBe(200);
        expect((await collect(again.body!)).toString()).toBe('second');
        // Even with the very same time as before
        await put(sp, 'd.txt', 'third!', { mtime: seen });
        const same = await storage.read(at(sp, 'd.txt'), { conditions: { ifModifiedSince: seen } });
        expect(same.status).toBe(200);
        expect((await collect(same.body!)).toString()).toBe('third!');
        const resumed = await storage.read(at(sp, 'd.txt'), {
          range: { start: 2 },
          ifRange: new Date(seen).toUTCString(),
        });
        expect(resumed.status).toBe(200);
        expect((await collect(resumed.body!)).toString()).toBe('third!');
        if (features.mtime) {
          await storage.setMtime(at(sp, 'd.txt'), Date.UTC(2023, 0, 1));
          expect(
            (await storage.read(at(sp, 'd.txt'), { conditions: { ifModifiedSince: seen } })).status,
          ).toBe(200);
        }
      });

      it('honours write conditions and changes nothing when they fail', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'w.txt', 'v1');
        await expectCode(
          put(sp, 'w.txt', 'v2', { conditions: { ifMatch: ['"other"'] } }),
          'FAILED_PRECONDITION',
          'condition',
        );
        await expectCode(
          put(sp, 'w.txt', 'v2', { conditions: { ifNoneMatch: '*' } }),
          'FAILED_PRECONDITION',
          'condition',
        );
        await expectCode(
          put(sp, 'new.txt', 'v2', { conditions: { ifMatch: '*' } }),
          'FAILED_PRECONDITION',
          'condition',
        );
        expect(await get(at(sp, 'w.txt'))).toBe('v1');
        expect(await exists(at(sp, 'new.txt'))).toBe(false);
        const b = await put(sp, 'w.txt', 'v2', { conditions: { ifMatch: [a.etag] } });
        expect(b.id).toEqual(a.id);
        await put(sp, 'created.txt', 'x', { conditions: { ifNoneMatch: '*' } });
        expect(await get(at(sp, 'created.txt'))).toBe('x');
      });

      it('writes many files in parallel, all complete, sizes exact', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'p'));
        const sizes = Array.from({ length: parallel }, (_, i) => 1000 + i * 37);
        await Promise.all(sizes.map((s, i) => put(sp, `p/f${i}.bin`, randomBytes(s))));
        const total = sizes.reduce((a, b) => a + b, 0);
        expect((await storage.stat(at(sp, 'p'))).size).toBe(total);
        expect(await liveBytes(sp)).toBe(total);
        expect((await names(at(sp, 'p'))).length).toBe(parallel);
      });

      it('keeps one complete version when the same file is written concurrently', async () => {
        const sp = await newSpace();
        const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(10_000 + i * 1000, i + 65));
        await Promise.all(bodies.map((b) => put(sp, 'same.bin', b)));
        const st = await storage.stat(at(sp, 'same.bin'));
        const r = await storage.read(at(sp, 'same.bin'));
        const content = await collect(r.body!);
        expect(bodies.some((b) => b.equals(content))).toBe(true);
        expect(st.size).toBe(content.length);
        const { createHash } = await import('node:crypto');
        expect(st.checksums?.sha1).toBe(createHash('sha1').update(content).digest('hex'));
        expect(await liveBytes(sp)).toBe(content.length);
      });
    });

    // ------------------------------------------------------------------ names
    describe('names', () => {
      it('stores hard names byte-exact: spaces, quotes, ? # % & +, NFC and NFD, leading dots', async () => {
        const sp = await newSpace();
        for (const name of HARD_NAMES) {
          const info = await put(sp, name, `content of ${name}`);
          expect(info.name).toBe(name);
        }
        expect(await names(at(sp))).toEqual([...HARD_NAMES].sort());
        for (const name of HARD_NAMES) {
          expect(await get(at(sp, name))).toBe(`content of ${name}`);
          const st = await storage.stat(at(sp, name));
          expect(st.name).toBe(name);
          expect(st.path).toBe(`/${name}`);
        }
        // NFC and NFD are different names; both exist side by side.
        expect((await storage.stat(at(sp, 'caf\u00e9-nfc.txt'))).id).not.toEqual(
          (await storage.stat(at(sp, 'cafe\u0301-nfd.txt'))).id,
        );
        await expectCode(storage.stat(at(sp, 'cafe\u0301-nfc.txt')), 'NOT_FOUND');
      });

      it('works with hard names as folders and in moves', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'dir with #%&+ and caf\u00e9'));
        await put(sp, 'dir with #%&+ and caf\u00e9/.hidden', 'h');
        await storage.move(at(sp, 'dir with #%&+ and caf\u00e9'), at(sp, "it's \u{1F4C1}"));
        expect(await get(at(sp, "it's \u{1F4C1}/.hidden"))).toBe('h');
      });

      it('refuses names over 255 bytes and paths with NUL, "..", or bad unicode', async () => {
        const sp = await newSpace();
        await expectCode(put(sp, 'x'.repeat(256), 'x'), 'INVALID_ARGUMENT', 'name-too-long');
        await expectCode(put(sp, '\u00e9'.repeat(128), 'x'), 'INVALID_ARGUMENT', 'name-too-long');
        await expectCode(put(sp, 'nul\0byte', 'x'), 'INVALID_ARGUMENT', 'invalid-path');
        await expectCode(put(sp, 'a/../b', 'x'), 'INVALID_ARGUMENT', 'invalid-path');
        await expectCode(put(sp, '../escape.txt', 'x'), 'INVALID_ARGUMENT', 'invalid-path');
        await expectCode(
          storage.stat(at(sp, '../../../../../../etc/passwd')),
          'INVALID_ARGUMENT',
          'invalid-path',
        );
        await expectCode(storage.stat(`/${sp.alias}/../../etc/passwd`), 'INVALID_ARGUMENT', 'invalid-path');
        await expectCode(put(sp, 'lone\ud800surrogate', 'x'), 'INVALID_ARGUMENT', 'invalid-path');
        await expectCode(storage.mkdir(at(sp, 'a'.repeat(300))), 'INVALID_ARGUMENT');
        expect(await names(at(sp))).toEqual([]);
      });

      it('treats absolute-looking relative paths as inside the space', async () => {
        const sp = await newSpace();
        await expectCode(storage.stat(at(sp, '/etc/passwd')), 'NOT_FOUND');
        await expectCode(storage.read(at(sp, '//etc//passwd')), 'NOT_FOUND');
        await put(sp, '/etc-in-space.txt', 'mine');
        expect(await get(at(sp, 'etc-in-space.txt'))).toBe('mine');
      });

      it('reserves the driver folder name at the space root only', async () => {
        const sp = await newSpace();
        await expectCode(put(sp, '.stowage', 'x'), 'INVALID_ARGUMENT', 'reserved-name');
        await expectCode(storage.mkdir(at(sp, '.stowage')), 'INVALID_ARGUMENT', 'reserved-name');
        await expectCode(storage.stat(at(sp, '.stowage/anything')), 'INVALID_ARGUMENT', 'reserved-name');
        await expectCode(storage.list(at(sp, '.stowage')).next(), 'INVALID_ARGUMENT', 'reserved-name');
        await storage.mkdir(at(sp, 'sub'));
        await put(sp, 'sub/.stowage', 'fine below the root');
        expect(await get(at(sp, 'sub/.stowage'))).toBe('fine below the root');
        expect(await names(at(sp))).toEqual(['sub']);
      });

      it('never resolves ".." even when a driver is called directly', async () => {
        const sp = await newSpace();
        for (const segments of [['..'], ['..', '..', 'etc', 'passwd'], ['a/b'], ['nul\0']]) {
          try {
            const info = await driver.stat({ spaceId: sp.id, segments });
            throw new Error(`driver resolved ${JSON.stringify(segments)} to ${info.path}`);
          } catch (err) {
            expect(err).toBeInstanceOf(StorageError);
            expect(['INVALID_ARGUMENT', 'NOT_FOUND']).toContain((err as StorageError).code);
          }
        }
      });
    });

    // ------------------------------------------------------------------ errors
    describe('not-found, is-a-folder, already-exists', () => {
      it('tells them apart', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'dir'));
        await put(sp, 'file.txt', 'x');
        await expectCode(storage.stat(at(sp, 'missing')), 'NOT_FOUND');
        await expectCode(storage.stat(at(sp, 'file.txt/below')), 'NOT_FOUND');
        await expectCode(storage.read(at(sp, 'missing')), 'NOT_FOUND');
        await expectCode(storage.read(at(sp, 'dir')), 'FAILED_PRECONDITION', 'is-folder');
        await expectCode(storage.list(at(sp, 'file.txt')).next(), 'FAILED_PRECONDITION', 'not-folder');
        await expectCode(storage.list(at(sp, 'missing')).next(), 'NOT_FOUND');
        await expectCode(storage.mkdir(at(sp, 'dir')), 'ALREADY_EXISTS');
        await expectCode(storage.mkdir(at(sp, 'file.txt')), 'ALREADY_EXISTS');
        await expectCode(put(sp, 'dir', 'x'), 'FAILED_PRECONDITION', 'is-folder');
        await expectCode(put(sp, 'missing/new.txt', 'x'), 'FAILED_PRECONDITION', 'parent-missing');
        await expectCode(put(sp, 'file.txt/new.txt', 'x'), 'FAILED_PRECONDITION', 'parent-missing');
        await expectCode(storage.mkdir(at(sp, 'missing/sub')), 'FAILED_PRECONDITION', 'parent-missing');
        await expectCode(storage.delete(at(sp, 'missing')), 'NOT_FOUND');
        await expectCode(storage.move(at(sp, 'missing'), at(sp, 'x')), 'NOT_FOUND');
        await expectCode(
          storage.move(at(sp, 'file.txt'), at(sp, 'missing/x')),
          'FAILED_PRECONDITION',
          'parent-missing',
        );
        expect(await names(at(sp))).toEqual(['dir', 'file.txt']);
      });

      it('creates parents with mkdir -p and accepts existing folders', async () => {
        const sp = await newSpace();
        const info = await storage.mkdir(at(sp, 'a/b/c'), { parents: true });
        expect(info.path).toBe('/a/b/c');
        await storage.mkdir(at(sp, 'a/b/c'), { parents: true });
        await put(sp, 'a/f', 'x');
        await expectCode(storage.mkdir(at(sp, 'a/f/g'), { parents: true }), 'ALREADY_EXISTS');
      });
    });

    // ------------------------------------------------------------------ folders & propagation
    describe('folders and propagation', () => {
      it('lists children with ids, types and sizes', async () => {
        const sp = await newSpace();
        const d = await storage.mkdir(at(sp, 'docs'));
        expect(d.type).toBe('folder');
        expect(d.size).toBe(0);
        expect(d.mimeType).toBe('httpd/unix-directory');
        await put(sp, 'docs/a.txt', 'aaa');
        await storage.mkdir(at(sp, 'docs/sub'));
        const kids: ResourceInfo[] = [];
        for await (const i of storage.list(at(sp, 'docs'))) kids.push(i);
        kids.sort((x, y) => x.name.localeCompare(y.name));
        expect(kids.map((k) => [k.name, k.type, k.size, k.path])).toEqual([
          ['a.txt', 'file', 3, '/docs/a.txt'],
          ['sub', 'folder', 0, '/docs/sub'],
        ]);
        for (const k of kids) expect(k.parentId?.opaqueId).toBe(d.id.opaqueId);
        expect(new Set(kids.map((k) => k.id.opaqueId)).size).toBe(2);
      });

      it('propagates tree size, mtime and etag to the space root', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'a/b/c'), { parents: true });
        await storage.mkdir(at(sp, 'side'));
        const before = await Promise.all(
          ['', 'a', 'a/b', 'a/b/c', 'side'].map((p) => storage.stat(at(sp, p))),
        );
        await new Promise((r) => setTimeout(r, 2));
        await put(sp, 'a/b/c/deep.bin', Buffer.alloc(1000));
        const after = await Promise.all(
          ['', 'a', 'a/b', 'a/b/c', 'side'].map((p) => storage.stat(at(sp, p))),
        );
        for (let i = 0; i < 4; i++) {
          expect(after[i]!.size).toBe(1000);
          expect(after[i]!.etag).not.toBe(before[i]!.etag);
          expect(after[i]!.mtime).toBeGreaterThan(before[i]!.mtime);
        }
        expect(after[4]!.etag).toBe(before[4]!.etag);
        expect(after[4]!.size).toBe(0);
        expect(await liveBytes(sp)).toBe(1000);
        await put(sp, 'a/b/c/deep.bin', Buffer.alloc(400));
        expect((await storage.stat(at(sp, 'a'))).size).toBe(400);
        await storage.delete(at(sp, 'a/b/c/deep.bin'));
        expect((await storage.stat(at(sp, 'a'))).size).toBe(0);
        expect(await liveBytes(sp)).toBe(0);
      });

      it('changes the root etag on every kind of change', async () => {
        const sp = await newSpace();
        const etags = new Set<string>();
        const snap = async () => etags.add((await storage.stat(at(sp))).etag);
        await snap();
        await storage.mkdir(at(sp, 'd'));
        await snap();
        await put(sp, 'd/f', 'x');
        await snap();
        await put(sp, 'd/f', 'y');
        await snap();
        await storage.move(at(sp, 'd/f'), at(sp, 'd/g'));
        await snap();
        await storage.delete(at(sp, 'd/g'));
        await snap();
        expect(etags.size).toBe(6);
      });

      it('deletes folders recursively; their children are gone by path and by id', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'x/y'), { parents: true });
        const f = await put(sp, 'x/y/f.txt', '12345');
        const deleted = await storage.delete(at(sp, 'x'));
        expect(deleted.name).toBe('x');
        expect(deleted.type).toBe('folder');
        await expectCode(storage.stat(at(sp, 'x/y/f.txt')), 'NOT_FOUND');
        await expectCode(storage.stat({ resourceId: f.id }), 'NOT_FOUND');
        expect(await liveBytes(sp)).toBe(0);
        expect(await names(at(sp))).toEqual([]);
      });

      it(`streams a folder of ${many} entries`, async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'many'));
        for (let i = 0; i < many; i += 50) {
          await Promise.all(
            Array.from({ length: Math.min(50, many - i) }, (_, j) => put(sp, `many/f-${i + j}`, `${i + j}`)),
          );
        }
        let written = 0;
        for (let i = 0; i < many; i++) written += String(i).length;
        expect((await storage.stat(at(sp, 'many'))).size).toBe(written);
        const ids = new Set<string>();
        let bytes = 0;
        for await (const e of storage.list(at(sp, 'many'), { fields: [] })) {
          ids.add(e.id.opaqueId);
          bytes += e.size;
          expect(e.etag).toBeTruthy();
        }
        expect(ids.size).toBe(many);
        expect(bytes).toBe(written);
      });
    });

    // ------------------------------------------------------------------ ids
    describe('ids', () => {
      it('resolves ids, and ids with relative paths', async () => {
        const sp = await newSpace();
        const d = await storage.mkdir(at(sp, 'folder'));
        const f = await put(sp, 'folder/file.txt', 'by id');
        expect((await storage.stat({ resourceId: f.id })).path).toBe('/folder/file.txt');
        expect(await get({ resourceId: f.id })).toBe('by id');
        expect(await get({ resourceId: d.id, path: 'file.txt' })).toBe('by id');
        expect(await get({ resourceId: d.id, path: './file.txt' })).toBe('by id');
        expect(await get(formatResourceId(f.id))).toBe('by id');
        expect(await get({ resourceId: { ...f.id, storageId: '' } })).toBe('by id');
        await expectCode(storage.stat({ resourceId: { ...f.id, opaqueId: randomUUID() } }), 'NOT_FOUND');
        await expectCode(storage.stat({ resourceId: { ...f.id, spaceId: randomUUID() } }), 'NOT_FOUND');
        await expectCode(storage.stat({ resourceId: 'not an id/x' }), 'INVALID_ARGUMENT');
      });

      it('keeps ids across renames and moves of files and folders', async () => {
        const sp = await newSpace();
        const d = await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'x');
        await storage.mkdir(at(sp, 'e'));
        const moved = await storage.move(at(sp, 'd/f.txt'), at(sp, 'e/g.txt'));
        expect(moved.id).toEqual(f.id);
        expect(moved.path).toBe('/e/g.txt');
        expect((await storage.stat({ resourceId: f.id })).path).toBe('/e/g.txt');
        await storage.move(at(sp, 'e/g.txt'), at(sp, 'd/f.txt'));
        const dm = await storage.move(at(sp, 'd'), at(sp, 'e/renamed'));
        expect(dm.id).toEqual(d.id);
        const again = await storage.stat({ resourceId: f.id });
        expect(again.path).toBe('/e/renamed/f.txt');
        expect(again.parentId?.opaqueId).toBe(d.id.opaqueId);
        expect(await get({ resourceId: d.id, path: 'f.txt' })).toBe('x');
      });

      it('gives every resource its own id', async () => {
        const sp = await newSpace();
        const ids = new Set<string>([sp.id]);
        await storage.mkdir(at(sp, 'a'));
        for (let i = 0; i < 20; i++) ids.add((await put(sp, `a/${i}`, `${i}`)).id.opaqueId);
        ids.add((await storage.stat(at(sp, 'a'))).id.opaqueId);
        expect(ids.size).toBe(22);
      });
    });

    // ------------------------------------------------------------------ move
    describe('move', () => {
      it('renames, replaces with overwrite, and refuses otherwise', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'a.txt', 'A');
        const b = await put(sp, 'b.txt', 'BB');
        await expectCode(storage.move(at(sp, 'a.txt'), at(sp, 'b.txt')), 'ALREADY_EXISTS');
        expect(await get(at(sp, 'b.txt'))).toBe('BB');
        const m = await storage.move(at(sp, 'a.txt'), at(sp, 'b.txt'), { overwrite: true });
        expect(m.id).toEqual(a.id);
        expect(await get(at(sp, 'b.txt'))).toBe('A');
        await expectCode(storage.stat({ resourceId: b.id }), 'NOT_FOUND');
        expect(await liveBytes(sp)).toBe(1);
        expect(await names(at(sp))).toEqual(['b.txt']);
      });

      it('replaces a folder with overwrite and keeps sizes exact', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'src'));
        await put(sp, 'src/1', '1111');
        await storage.mkdir(at(sp, 'dst/deep'), { parents: true });
        await put(sp, 'dst/deep/2', '22');
        await storage.move(at(sp, 'src'), at(sp, 'dst'), { overwrite: true });
        expect(await liveBytes(sp)).toBe(4);
        expect(await names(at(sp, 'dst'))).toEqual(['1']);
      });

      it('refuses to move a folder into itself or onto itself', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'p/q'), { parents: true });
        await expectCode(storage.move(at(sp, 'p'), at(sp, 'p/q/p')), 'INVALID_ARGUMENT', 'into-itself');
        await expectCode(storage.move(at(sp, 'p'), at(sp, 'p')), 'INVALID_ARGUMENT', 'into-itself');
        await expectCode(
          storage.move(at(sp, 'p/q'), at(sp, 'p'), { overwrite: true }),
          'INVALID_ARGUMENT',
          'into-itself',
        );
        expect(await names(at(sp, 'p'))).toEqual(['q']);
      });

      it('refuses to move across spaces', async () => {
        const a = await newSpace();
        const b = await newSpace();
        await put(a, 'f', 'x');
        await expectCode(storage.move(at(a, 'f'), at(b, 'f')), 'UNIMPLEMENTED', 'cross-space');
        expect(await get(at(a, 'f'))).toBe('x');
      });

      it('moves between folders and updates both trees', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'from/x'), { parents: true });
        await storage.mkdir(at(sp, 'to'));
        await put(sp, 'from/x/f', Buffer.alloc(300));
        const e1 = (await storage.stat(at(sp, 'to'))).etag;
        await storage.move(at(sp, 'from/x'), at(sp, 'to/x'));
        expect((await storage.stat(at(sp, 'from'))).size).toBe(0);
        const to = await storage.stat(at(sp, 'to'));
        expect(to.size).toBe(300);
        expect(to.etag).not.toBe(e1);
        expect(await liveBytes(sp)).toBe(300);
      });
    });

    // ------------------------------------------------------------------ copy
    describe.skipIf(!features.copy)('capability: copy', () => {
      it('copies a file with a new id and the same content and checksums', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'a.txt', 'hello', { mtime: Date.UTC(2010, 0, 1) });
        const c = await storage.copy(at(sp, 'a.txt'), at(sp, 'c.txt'));
        expect(c.id).not.toEqual(a.id);
        expect(c.checksums).toEqual(HELLO);
        expect(c.mtime).toBe(a.mtime);
        expect(await get(at(sp, 'c.txt'))).toBe('hello');
        expect(await liveBytes(sp)).toBe(10);
      });

      it('copies folders recursively with new ids', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'src/sub'), { parents: true });
        const f = await put(sp, 'src/sub/f', 'abc');
        await put(sp, 'src/g', 'de');
        const c = await storage.copy(at(sp, 'src'), at(sp, 'dst'));
        expect(c.size).toBe(5);
        expect(await get(at(sp, 'dst/sub/f'))).toBe('abc');
        const cf = await storage.stat(at(sp, 'dst/sub/f'));
        expect(cf.id).not.toEqual(f.id);
        expect((await storage.stat({ resourceId: cf.id })).path).toBe('/dst/sub/f');
        expect((await storage.stat({ resourceId: f.id })).path).toBe('/src/sub/f');
        expect(await liveBytes(sp)).toBe(10);
      });

      it('honours overwrite and refuses copies into themselves', async () => {
        const sp = await newSpace();
        await put(sp, 'a', 'A');
        await put(sp, 'b', 'B');
        await expectCode(storage.copy(at(sp, 'a'), at(sp, 'b')), 'ALREADY_EXISTS');
        await storage.copy(at(sp, 'a'), at(sp, 'b'), { overwrite: true });
        expect(await get(at(sp, 'b'))).toBe('A');
        await storage.mkdir(at(sp, 'd'));
        await expectCode(storage.copy(at(sp, 'd'), at(sp, 'd/inner')), 'INVALID_ARGUMENT', 'into-itself');
        await expectCode(storage.copy(at(sp, 'missing'), at(sp, 'x')), 'NOT_FOUND');
        await expectCode(
          storage.copy(at(sp, 'a'), at(sp, 'missing/x')),
          'FAILED_PRECONDITION',
          'parent-missing',
        );
      });

      it('copies across spaces', async () => {
        const a = await newSpace();
        const b = await newSpace();
        await put(a, 'f', 'cross');
        await storage.copy(at(a, 'f'), at(b, 'f'));
        expect(await get(at(b, 'f'))).toBe('cross');
        expect(await liveBytes(b)).toBe(5);
      });
    });

    // ------------------------------------------------------------------ metadata
    describe.skipIf(!features.mtime)('capability: mtime', () => {
      it("sets a file's mtime in place: new etags up to the root, same content and checksums", async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'hello');
        const d = await storage.stat(at(sp, 'd'));
        const root = await storage.stat(at(sp));
        const when = Date.UTC(2001, 8, 9, 1, 46, 40); // whole seconds: what every door carries
        const set = await storage.setMtime(at(sp, 'd/f.txt'), when);
        expect(set.mtime).toBe(when);
        expect(set.id).toEqual(f.id);
        expect(set.etag).not.toBe(f.etag);
        const now = await storage.stat(at(sp, 'd/f.txt'), { fields: ['checksums'] });
        expect(now).toMatchObject({ mtime: when, size: 5, etag: set.etag });
        expect(now.checksums?.sha1).toBe(HELLO.sha1);
        expect(await get(at(sp, 'd/f.txt'))).toBe('hello');
        expect((await storage.stat(at(sp, 'd'))).etag).not.toBe(d.etag);
        expect((await storage.stat(at(sp))).etag).not.toBe(root.etag);
        expect((await storage.stat(at(sp))).size).toBe(root.size);
        const listed: ResourceInfo[] = [];
        for await (const i of storage.list(at(sp, 'd'))) listed.push(i);
        expect(listed.map((i) => [i.name, i.mtime, i.etag])).toEqual([['f.txt', when, set.etag]]);
        // Later than now works as well, and by id.
        const later = Date.UTC(2031, 0, 1);
        expect((await storage.setMtime({ resourceId: f.id }, later)).mtime).toBe(later);
        if (features.versions) expect(await storage.listVersions(at(sp, 'd/f.txt'))).toHaveLength(0);
      });

      it('refuses folders, missing files and bad times, and changes nothing', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'x');
        const d = await storage.stat(at(sp, 'd'));
        await expectCode(
          storage.setMtime(at(sp, 'd'), Date.UTC(2001, 0, 1)),
          'FAILED_PRECONDITION',
          'is-folder',
        );
        await expectCode(storage.setMtime(at(sp), Date.UTC(2001, 0, 1)), 'FAILED_PRECONDITION', 'is-folder');
        await expectCode(storage.setMtime(at(sp, 'd/missing'), Date.UTC(2001, 0, 1)), 'NOT_FOUND');
        await expectCode(storage.setMtime(at(sp, 'd/f.txt'), Number.NaN), 'INVALID_ARGUMENT');
        await expectCode(storage.setMtime(at(sp, 'd/f.txt'), Number.POSITIVE_INFINITY), 'INVALID_ARGUMENT');
        expect(await storage.stat(at(sp, 'd/f.txt'))).toMatchObject({ mtime: f.mtime, etag: f.etag });
        expect((await storage.stat(at(sp, 'd'))).etag).toBe(d.etag);
      });

      it('keeps the mtime across moves and copies, and a rewrite replaces it', async () => {
        const sp = await newSpace();
        await put(sp, 'f', 'x');
        const when = Date.UTC(1999, 11, 31, 23, 59, 59);
        await storage.setMtime(at(sp, 'f'), when);
        await storage.move(at(sp, 'f'), at(sp, 'g'));
        expect((await storage.stat(at(sp, 'g'))).mtime).toBe(when);
        if (features.copy) {
          await storage.copy(at(sp, 'g'), at(sp, 'h'));
          expect((await storage.stat(at(sp, 'h'))).mtime).toBe(when);
        }
        const rewritten = await put(sp, 'g', 'y');
        expect(rewritten.mtime).toBeGreaterThan(when);
      });

      it('sets the time a file lands with, as part of a move or a copy', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'f', 'hello');
        const d = await storage.stat(at(sp, 'd'));
        const when = Date.UTC(2002, 1, 3, 4, 5, 6);
        const moved = await storage.move(at(sp, 'f'), at(sp, 'd/g'), { mtime: when });
        expect(moved).toMatchObject({ id: f.id, mtime: when, size: 5 });
        const now = await storage.stat(at(sp, 'd/g'), { fields: ['checksums'] });
        expect(now).toMatchObject({ mtime: when, etag: moved.etag });
        expect(now.checksums?.sha1).toBe(HELLO.sha1);
        expect((await storage.stat(at(sp, 'd'))).etag).not.toBe(d.etag);
        // Over a file that is there, which goes as any replaced file goes.
        await put(sp, 'd/h', 'old');
        const over = await storage.move(at(sp, 'd/g'), at(sp, 'd/h'), {
          mtime: when + 1000,
          overwrite: true,
        });
        expect(over).toMatchObject({ id: f.id, mtime: when + 1000 });
        expect(await get(at(sp, 'd/h'))).toBe('hello');
        if (features.copy) {
          const later = Date.UTC(2030, 6, 7);
          const copied = await storage.copy(at(sp, 'd/h'), at(sp, 'c'), { mtime: later });
          expect(copied.id).not.toEqual(f.id);
          expect(copied.mtime).toBe(later);
          const c = await storage.stat(at(sp, 'c'), { fields: ['checksums'] });
          expect(c).toMatchObject({ mtime: later, size: 5 });
          expect(c.checksums?.sha1).toBe(HELLO.sha1);
          // The source keeps its own time.
          expect((await storage.stat(at(sp, 'd/h'))).mtime).toBe(when + 1000);
        }
      });

      it('refuses a landing time for a folder or a bad one before moving or copying anything', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        await put(sp, 'd/f', 'x');
        await put(sp, 'keep', 'kept');
        const when = Date.UTC(2001, 0, 1);
        await expectCode(
          storage.move(at(sp, 'd'), at(sp, 'e'), { mtime: when }),
          'FAILED_PRECONDITION',
          'is-folder',
        );
        await expectCode(storage.move(at(sp, 'd/f'), at(sp, 'g'), { mtime: Number.NaN }), 'INVALID_ARGUMENT');
        await expectCode(
          storage.move(at(sp, 'd/f'), at(sp, 'keep'), { mtime: Number.POSITIVE_INFINITY, overwrite: true }),
          'INVALID_ARGUMENT',
        );
        if (features.copy) {
          await expectCode(
            storage.copy(at(sp, 'd'), at(sp, 'e'), { mtime: when }),
            'FAILED_PRECONDITION',
            'is-folder',
          );
          await expectCode(
            storage.copy(at(sp, 'd'), at(sp, 'e'), { mtime: when, shallow: true }),
            'FAILED_PRECONDITION',
            'is-folder',
          );
          await expectCode(
            storage.copy(at(sp, 'd/f'), at(sp, 'keep'), { mtime: Number.NaN, overwrite: true }),
            'INVALID_ARGUMENT',
          );
        }
        expect(await names(at(sp))).toEqual(['d', 'keep']);
        expect(await names(at(sp, 'd'))).toEqual(['f']);
        expect(await get(at(sp, 'keep'))).toBe('kept');
        if (features.trash) for await (const item of storage.listTrash(sp.id)) expect(item).toBeUndefined();
      });
    });

    // ------------------------------------------------------------------ creation times
    describe.skipIf(target.noCreationTimes)('creation times', () => {
      const pause = () => new Promise((r) => setTimeout(r, 25));

      it('tells when files, folders and space roots came to be, in stats and listings', async () => {
        const t0 = Date.now();
        const sp = await newSpace();
        const d = await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'x');
        const t1 = Date.now();
        for (const info of [await storage.stat(at(sp)), d, f]) {
          expect(info.created, info.path).toBeGreaterThanOrEqual(t0);
          expect(info.created, info.path).toBeLessThanOrEqual(t1);
        }
        expect((await storage.stat(at(sp, 'd'))).created).toBe(d.created);
        const listed: ResourceInfo[] = [];
        for await (const i of storage.list(at(sp, 'd'))) listed.push(i);
        expect(listed.map((i) => i.created)).toEqual([f.created]);
        const top: ResourceInfo[] = [];
        for await (const i of storage.list(at(sp))) top.push(i);
        expect(top.map((i) => i.created)).toEqual([d.created]);
      });

      it('keeps it across rewrites, moves and a new mtime; a copy is new', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'one');
        await pause();
        const rewritten = await put(sp, 'd/f.txt', 'two, longer');
        expect(rewritten.id).toEqual(f.id);
        expect(rewritten.created).toBe(f.created);
        expect(rewritten.mtime).toBeGreaterThan(f.created!);
        if (features.mtime) {
          const set = await storage.setMtime(at(sp, 'd/f.txt'), Date.UTC(1990, 0, 1));
          expect(set.created).toBe(f.created);
        }
        const d = await storage.stat(at(sp, 'd'));
        await storage.move(at(sp, 'd'), at(sp, 'e'));
        expect((await storage.stat(at(sp, 'e'))).created).toBe(d.created);
        expect((await storage.stat(at(sp, 'e/f.txt'))).created).toBe(f.created);
        await storage.move(at(sp, 'e/f.txt'), at(sp, 'g.txt'));
        expect((await storage.stat({ resourceId: f.id })).created).toBe(f.created);
        if (features.copy) {
          await pause();
          const t0 = Date.now();
          const copy = await storage.copy(at(sp, 'g.txt'), at(sp, 'h.txt'));
          expect(copy.created).toBeGreaterThanOrEqual(t0);
          expect((await storage.stat(at(sp, 'h.txt'))).created).toBe(copy.created);
          expect((await storage.stat(at(sp, 'g.txt'))).created).toBe(f.created);
        }
      });

      it.skipIf(!features.trash && !features.versions)(
        'keeps it across restores from the trash and of versions',
        async () => {
          const sp = await newSpace();
          await storage.mkdir(at(sp, 'd'));
          const f = await put(sp, 'd/f.txt', 'one');
          await pause();
          await put(sp, 'd/f.txt', 'two');
          if (features.versions) {
            const [old] = await storage.listVersions(at(sp, 'd/f.txt'));
            expect(old).toBeDefined();
            await pause();
            expect((await storage.restoreVersion(at(sp, 'd/f.txt'), old!.key)).created).toBe(f.created);
            expect((await storage.stat(at(sp, 'd/f.txt'))).created).toBe(f.created);
          }
          if (features.trash) {
            const d = await storage.stat(at(sp, 'd'));
            await storage.delete(at(sp, 'd'));
            await pause();
            await storage.restoreTrash(sp.id, d.id.opaqueId);
            expect((await storage.stat(at(sp, 'd'))).created).toBe(d.created);
            expect((await storage.stat(at(sp, 'd/f.txt'))).created).toBe(f.created);
          }
        },
      );
    });

    describe.skipIf(!features.favorites)('capability: favorites', () => {
      it("keeps each user's marks apart, by id, and hands back the same marks while unchanged", async () => {
        const fav = driver.features.favorites!;
        const sp = await newSpace();
        const f = await put(sp, 'f.txt', 'x');
        const d = await storage.mkdir(at(sp, 'd'));
        const ann = `ann-${randomUUID()}`;
        const bob = `bob-${randomUUID()}`;
        const none = await fav.list(ann);
        expect(none.size).toBe(0);
        await fav.set(ann, f.id, true);
        await fav.set(ann, f.id, true); // (twice is once)
        await fav.set(ann, d.id, true);
        const marks = await fav.list(ann);
        expect([...marks].sort()).toEqual(
          [
            [f.id.opaqueId, sp.id],
            [d.id.opaqueId, sp.id],
          ].sort(),
        );
        expect((await fav.list(bob)).size).toBe(0);
        expect(await fav.list(ann)).toBe(marks);
        await fav.set(ann, d.id, false);
        await fav.set(ann, d.id, false); // (unmarking what is not marked is fine)
        await fav.set(bob, d.id, true);
        const after = await fav.list(ann);
        expect(after).not.toBe(marks);
        expect([...after]).toEqual([[f.id.opaqueId, sp.id]]);
        expect([...(await fav.list(bob))]).toEqual([[d.id.opaqueId, sp.id]]);
      });

      it('follows a resource through moves and rewrites, and changes neither its etag nor its metadata', async () => {
        const fav = driver.features.favorites!;
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'a'));
        const f = await put(sp, 'a/f.txt', 'one');
        const user = `u-${randomUUID()}`;
        await fav.set(user, f.id, true);
        expect((await storage.stat(at(sp, 'a/f.txt'))).etag).toBe(f.etag);
        if (features.metadata)
          expect((await storage.stat(at(sp, 'a/f.txt'), { metadataKeys: '*' })).metadata ?? {}).toEqual({});
        await storage.move(at(sp, 'a'), at(sp, 'b'));
        await put(sp, 'b/f.txt', 'two');
        const now = await storage.stat(at(sp, 'b/f.txt'));
        expect(now.id).toEqual(f.id);
        expect((await fav.list(user)).get(now.id.opaqueId)).toBe(sp.id);
      });

      it.skipIf(!features.trash)('keeps marks through the trash and drops them when purged', async () => {
        const fav = driver.features.favorites!;
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const inner = await put(sp, 'd/in.txt', 'x');
        const d = await storage.stat(at(sp, 'd'));
        const g = await put(sp, 'g.txt', 'y');
        const stays = await put(sp, 'stays.txt', 'z');
        const ann = `ann-${randomUUID()}`;
        const bob = `bob-${randomUUID()}`;
        for (const id of [inner.id, d.id, g.id, stays.id]) await fav.set(ann, id, true);
        await fav.set(bob, inner.id, true);
        await storage.delete(at(sp, 'd'));
        await storage.delete(at(sp, 'g.txt'));
        await storage.restoreTrash(sp.id, d.id.opaqueId);
        expect((await fav.list(ann)).size).toBe(4);
        expect((await fav.list(bob)).has(inner.id.opaqueId)).toBe(true);
        await storage.delete(at(sp, 'd'));
        await storage.purgeTrash(sp.id, g.id.opaqueId);
        // (what was purged may go in the background)
        const ids = async (user: string) => [...(await fav.list(user)).keys()].sort();
        await expect
          .poll(() => ids(ann), { timeout: 5000 })
          .toEqual([inner.id.opaqueId, d.id.opaqueId, stays.id.opaqueId].sort());
        await storage.purgeTrash(sp.id);
        await expect.poll(() => ids(ann), { timeout: 5000 }).toEqual([stays.id.opaqueId]);
        await expect.poll(() => ids(bob), { timeout: 5000 }).toEqual([]);
        expect((await fav.list(ann)).get(stays.id.opaqueId)).toBe(sp.id);
      });

      it('takes any user id, each its own', async () => {
        const fav = driver.features.favorites!;
        const sp = await newSpace();
        const f = await put(sp, 'f.txt', 'x');
        const ids = ['auth0|5f/..', 'a/b', 'a_b', '.', '..', 'é ü', 'x'.repeat(300), `~${'0'.repeat(64)}`];
        for (const [i, u] of ids.entries()) if (i % 2 === 0) await fav.set(u, f.id, true);
        for (const [i, u] of ids.entries())
          expect((await fav.list(u)).has(f.id.opaqueId), JSON.stringify(u.slice(0, 20))).toBe(i % 2 === 0);
      });
    });

    describe.skipIf(!features.metadata)('capability: metadata', () => {
      it('sets, reads only when asked, and unsets keys', async () => {
        const sp = await newSpace();
        await put(sp, 'm.txt', 'x');
        await storage.setMetadata(at(sp, 'm.txt'), M({ 'http://example.org/ns/color': 'blue', tag: 'a' }));
        expect((await storage.stat(at(sp, 'm.txt'))).metadata).toBeUndefined();
        expect(
          (await storage.stat(at(sp, 'm.txt'), { metadataKeys: [K('tag'), K('absent')] })).metadata,
        ).toEqual(
          M({
            tag: 'a',
          }),
        );
        expect((await storage.stat(at(sp, 'm.txt'), { metadataKeys: '*' })).metadata).toEqual(
          M({
            'http://example.org/ns/color': 'blue',
            tag: 'a',
          }),
        );
        await storage.setMetadata(at(sp, 'm.txt'), M({ tag: 'b' }));
        await storage.unsetMetadata(at(sp, 'm.txt'), ['http://example.org/ns/color', K('never-set')]);
        expect((await storage.stat(at(sp, 'm.txt'), { metadataKeys: '*' })).metadata).toEqual(
          M({ tag: 'b' }),
        );
        const listed: ResourceInfo[] = [];
        for await (const i of storage.list(at(sp), { metadataKeys: [K('tag')] })) listed.push(i);
        expect(listed[0]!.metadata).toEqual(M({ tag: 'b' }));
      });

      it('keeps metadata on folders, across moves and overwrites, without changing the etag', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        await storage.setMetadata(at(sp, 'd'), M({ k: 'folder' }));
        const f = await put(sp, 'd/f', 'x');
        await storage.setMetadata(at(sp, 'd/f'), M({ k: 'file' }));
        expect((await storage.stat(at(sp, 'd/f'))).etag).toBe(f.etag);
        await storage.move(at(sp, 'd'), at(sp, 'e'));
        await put(sp, 'e/f', 'y');
        expect((await storage.stat(at(sp, 'e'), { metadataKeys: [K('k')] })).metadata).toEqual(
          M({ k: 'folder' }),
        );
        expect((await storage.stat(at(sp, 'e/f'), { metadataKeys: [K('k')] })).metadata).toEqual(
          M({ k: 'file' }),
        );
      });

      it('holds large metadata (beyond what fits in xattrs)', async () => {
        const sp = await newSpace();
        await put(sp, 'big-md', 'x');
        const values: Record<string, string> = {};
        for (let i = 0; i < 40; i++) values[`key-${i}`] = `${i}:`.padEnd(1000, 'v');
        values.huge = 'h'.repeat(60_000);
        await storage.setMetadata(at(sp, 'big-md'), M(values));
        expect((await storage.stat(at(sp, 'big-md'), { metadataKeys: '*' })).metadata).toEqual(M(values));
        await storage.unsetMetadata(
          at(sp, 'big-md'),
          Object.keys(values)
            .filter((k) => k !== 'key-7')
            .map(K),
        );
        expect((await storage.stat(at(sp, 'big-md'), { metadataKeys: '*' })).metadata).toEqual(
          M({
            'key-7': values['key-7']!,
          }),
        );
      });

      it('refuses invalid metadata and changes nothing', async () => {
        const sp = await newSpace();
        await put(sp, 'f', 'x');
        await storage.setMetadata(at(sp, 'f'), M({ a: '1' }));
        await expectCode(
          storage.setMetadata(at(sp, 'f'), M({ a: '2', '': 'empty key' })),
          'INVALID_ARGUMENT',
        );
        await expectCode(storage.setMetadata(at(sp, 'f'), M({ a: '2', b: 'nul\0' })), 'INVALID_ARGUMENT');
        await expectCode(
          storage.setMetadata(at(sp, 'f'), M({ a: 'x'.repeat(70_000) })),
          'INVALID_ARGUMENT',
          'metadata-too-large',
        );
        expect((await storage.stat(at(sp, 'f'), { metadataKeys: '*' })).metadata).toEqual(M({ a: '1' }));
        await expectCode(storage.setMetadata(at(sp, 'missing'), M({ a: '1' })), 'NOT_FOUND');
        // Bounded per resource, in keys and in bytes, whatever each call adds.
        const many = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`k${i}`, 'v']));
        await storage.setMetadata(at(sp, 'f'), M(many));
        await expectCode(
          storage.setMetadata(
            at(sp, 'f'),
            M(Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`j${i}`, 'v']))),
          ),
          'INVALID_ARGUMENT',
          'metadata-too-large',
        );
        const big = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`b${i}`, 'x'.repeat(60_000)]));
        await put(sp, 'g', 'x');
        await storage.setMetadata(at(sp, 'g'), M(big));
        await expectCode(
          storage.setMetadata(at(sp, 'g'), M({ more: 'x'.repeat(60_000) })),
          'INVALID_ARGUMENT',
          'metadata-too-large',
        );
      });

      it('copies metadata with copy', async () => {
        if (!features.copy) return;
        const sp = await newSpace();
        await put(sp, 'f', 'x');
        await storage.setMetadata(at(sp, 'f'), M({ a: '1' }));
        await storage.copy(at(sp, 'f'), at(sp, 'g'));
        expect((await storage.stat(at(sp, 'g'), { metadataKeys: '*' })).metadata).toEqual(M({ a: '1' }));
      });
    });

    // ------------------------------------------------------------------ trash
    describe.skipIf(!features.trash)('capability: trash', () => {
      async function trashItems(sp: Space, key?: string): Promise<RecycleItem[]> {
        const out: RecycleItem[] = [];
        for await (const i of storage.listTrash(sp.id, key ? { key } : undefined)) out.push(i);
        return out.sort((a, b) => a.path.localeCompare(b.path));
      }

      it('moves deleted resources to the trash with their id, path, size and time', async () => {
        const sp = await newSpace();
        const d = await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', '12345');
        const t0 = Date.now();
        await storage.delete(at(sp, 'd/f.txt'));
        await expectCode(storage.stat(at(sp, 'd/f.txt')), 'NOT_FOUND');
        await expectCode(storage.stat({ resourceId: f.id }), 'NOT_FOUND');
        const [item, ...more] = await trashItems(sp);
        expect(more).toEqual([]);
        expect(item!.key).toBe(f.id.opaqueId);
        expect(item!.id).toEqual(f.id);
        expect(item!.path).toBe('/d/f.txt');
        expect(item!.parentId).toEqual(d.id);
        expect(item!.type).toBe('file');
        expect(item!.size).toBe(5);
        expect(item!.deleted).toBeGreaterThanOrEqual(t0 - 1000);
        expect(item!.deleted).toBeLessThanOrEqual(Date.now() + 1000);
        expect(await liveBytes(sp)).toBe(0);
        const space = await storage.getSpace(sp.id);
        expect(space.usage?.trash).toBe(5);
        expect(space.used).toBe(5);
      });

      it('gets one item by key, inside a deleted folder too, with its own grants', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        await put(sp, 'd/inner.txt', 'abc');
        if (features.grants) {
          await storage.setGrant(at(sp, 'd/inner.txt'), {
            grantee: { type: 'user', id: 'someone' },
            permissions: fromLetters(ROLES.viewer),
          });
        }
        const d = await storage.stat(at(sp, 'd'));
        await storage.delete(at(sp, 'd'));
        const trash = driver.features.trash!;
        const [listed] = await trashItems(sp);
        expect(await trash.get(sp.id, d.id.opaqueId)).toEqual(listed);
        const inner = await trash.get(sp.id, `${d.id.opaqueId}/inner.txt`);
        expect(inner).toMatchObject({ key: `${d.id.opaqueId}/inner.txt`, path: '/d/inner.txt', size: 3 });
        expect(inner).toEqual((await trashItems(sp, d.id.opaqueId))[0]);
        if (features.grants) expect(inner.grants?.map((g) => g.grantee.id)).toEqual(['someone']);
        await expectCode(trash.get(sp.id, `${d.id.opaqueId}/nope`), 'NOT_FOUND');
        await expectCode(trash.get(sp.id, randomUUID()), 'NOT_FOUND');
      });

      it('restores items where they were, keeping ids (a folder with everything in it)', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'a/b'), { parents: true });
        const f = await put(sp, 'a/b/f.txt', 'restored');
        const b = await storage.stat(at(sp, 'a/b'));
        await storage.delete(at(sp, 'a/b'));
        expect(await liveBytes(sp)).toBe(0);
        const restored = await storage.restoreTrash(sp.id, b.id.opaqueId);
        expect(restored.id).toEqual(b.id);
        expect(restored.path).toBe('/a/b');
        expect(await get({ resourceId: f.id })).toBe('restored');
        expect((await storage.stat({ resourceId: f.id })).path).toBe('/a/b/f.txt');
        expect(await trashItems(sp)).toEqual([]);
        expect(await liveBytes(sp)).toBe(8);
        expect((await storage.getSpace(sp.id)).usage?.trash).toBe(0);
      });

      it('restores to another place, refuses an occupied or missing target', async () => {
        const sp = await newSpace();
        const f = await put(sp, 'f.txt', 'x');
        await storage.delete(at(sp, 'f.txt'));
        await put(sp, 'f.txt', 'new one');
        await expectCode(storage.restoreTrash(sp.id, f.id.opaqueId), 'ALREADY_EXISTS');
        await expectCode(
          storage.restoreTrash(sp.id, f.id.opaqueId, { target: at(sp, 'no/such/dir/f.txt') }),
          'FAILED_PRECONDITION',
          'parent-missing',
        );
        await storage.mkdir(at(sp, 'elsewhere'));
        const r = await storage.restoreTrash(sp.id, f.id.opaqueId, { target: at(sp, 'elsewhere/old-f.txt') });
        expect(r.id).toEqual(f.id);
        expect(await get(at(sp, 'elsewhere/old-f.txt'))).toBe('x');
        expect(await get(at(sp, 'f.txt'))).toBe('new one');
        await expectCode(storage.restoreTrash(sp.id, f.id.opaqueId), 'NOT_FOUND');
        await expectCode(storage.restoreTrash(sp.id, 'no-such-key'), 'NOT_FOUND');
      });

      it('lists inside a deleted folder and restores or purges a single file from it', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'proj/sub'), { parents: true });
        const one = await put(sp, 'proj/one.txt', '1');
        await put(sp, 'proj/sub/two.txt', '22');
        const proj = await storage.stat(at(sp, 'proj'));
        await storage.delete(at(sp, 'proj'));
        const inside = await trashItems(sp, proj.id.opaqueId);
        expect(inside.map((i) => [i.path, i.type])).toEqual([
          ['/proj/one.txt', 'file'],
          ['/proj/sub', 'folder'],
        ]);
        const oneItem = inside.find((i) => i.path === '/proj/one.txt')!;
        expect(oneItem.key).toBe(`${proj.id.opaqueId}/one.txt`);
        const r = await storage.restoreTrash(sp.id, oneItem.key, { target: at(sp, 'one.txt') });
        expect(r.id).toEqual(one.id);
        expect(await get(at(sp, 'one.txt'))).toBe('1');
        await storage.purgeTrash(sp.id, `${proj.id.opaqueId}/sub`);
        expect((await trashItems(sp, proj.id.opaqueId)).map((i) => i.path)).toEqual([]);
        const [top] = await trashItems(sp);
        expect(top!.size).toBe(0);
        expect((await storage.getSpace(sp.id)).usage?.trash).toBe(0);
      });

      it('purges one item or the whole trash, freeing the space', async () => {
        const sp = await newSpace();
        const a = await put(sp, 'a', 'aaaa');
        await put(sp, 'b', 'bb');
        await put(sp, 'c', 'c');
        for (const n of ['a', 'b', 'c']) await storage.delete(at(sp, n));
        expect((await storage.getSpace(sp.id)).used).toBe(7);
        await storage.purgeTrash(sp.id, a.id.opaqueId);
        expect((await trashItems(sp)).map((i) => i.path)).toEqual(['/b', '/c']);
        expect((await storage.getSpace(sp.id)).used).toBe(3);
        await storage.purgeTrash(sp.id);
        expect(await trashItems(sp)).toEqual([]);
        expect((await storage.getSpace(sp.id)).used).toBe(0);
        await expectCode(storage.restoreTrash(sp.id, a.id.opaqueId), 'NOT_FOUND');
      });

      it('expires what was deleted before a time: in one space, or in every space', async () => {
        const [sp, other] = [await newSpace(), await newSpace()];
        for (const s of [sp, other]) await put(s, 'old.txt', 'old');
        await put(sp, 'new.txt', 'new!');
        await storage.delete(at(sp, 'old.txt'));
        await storage.delete(at(other, 'old.txt'));
        await new Promise((r) => setTimeout(r, 20));
        await storage.delete(at(sp, 'new.txt'));
        const byPath = new Map((await trashItems(sp)).map((i) => [i.path, i]));
        const [old, recent] = [byPath.get('/old.txt')!, byPath.get('/new.txt')!];
        expect(recent.deleted).toBeGreaterThan(old.deleted);
        // Strictly before: an item deleted at the very time stays.
        expect(await storage.expireTrash(old.deleted, sp.id)).toBe(0);
        expect(await storage.expireTrash(recent.deleted, sp.id)).toBe(1);
        expect((await trashItems(sp)).map((i) => i.path)).toEqual(['/new.txt']);
        expect((await storage.getSpace(sp.id)).usage?.trash).toBe(4);
        expect(await trashItems(other)).toHaveLength(1);
        // Every space: the other one's old item goes, the recent one stays.
        expect(await storage.expireTrash(recent.deleted)).toBeGreaterThanOrEqual(1);
        expect(await trashItems(other)).toEqual([]);
        expect((await storage.getSpace(other.id)).usage?.trash).toBe(0);
        expect((await trashItems(sp)).map((i) => i.path)).toEqual(['/new.txt']);
        await expectCode(storage.expireTrash(Number.NaN, sp.id), 'INVALID_ARGUMENT');
      });

      it('sends what a move replaces to the trash', async () => {
        const sp = await newSpace();
        await put(sp, 'src', 'new');
        const old = await put(sp, 'dst', 'old!');
        await storage.move(at(sp, 'src'), at(sp, 'dst'), { overwrite: true });
        const items = await trashItems(sp);
        expect(items.map((i) => [i.key, i.path, i.size])).toEqual([[old.id.opaqueId, '/dst', 4]]);
        expect(await get(at(sp, 'dst'))).toBe('new');
      });
    });

    // ------------------------------------------------------------------ versions
    describe.skipIf(!features.versions)('capability: versions', () => {
      it('keeps the previous content on every overwrite, newest first, with its own etag and checksums', async () => {
        const sp = await newSpace();
        const v1 = await put(sp, 'doc.txt', 'hello', { mtime: Date.UTC(2020, 0, 1) });
        const v2 = await put(sp, 'doc.txt', 'hello, world', { mtime: Date.UTC(2021, 0, 1) });
        await put(sp, 'doc.txt', 'third');
        const versions = await storage.listVersions(at(sp, 'doc.txt'));
        expect(versions.map((v) => [v.size, v.mtime])).toEqual([
          [12, Date.UTC(2021, 0, 1)],
          [5, Date.UTC(2020, 0, 1)],
        ]);
        expect(versions[1]!.checksums?.sha1).toBe(HELLO.sha1);
        expect(new Set([...versions.map((v) => v.etag), v1.etag, v2.etag]).size).toBeGreaterThanOrEqual(3);
        const r = await storage.readVersion(at(sp, 'doc.txt'), versions[1]!.key);
        expect((await collect(r.body!)).toString()).toBe('hello');
        const part = await storage.readVersion(at(sp, 'doc.txt'), versions[0]!.key, { range: { start: 7 } });
        expect(part.status).toBe(206);
        expect((await collect(part.body!)).toString()).toBe('world');
        const space = await storage.getSpace(sp.id);
        expect(space.usage?.versions).toBe(17);
        expect(space.used).toBe(5 + 17);
        await expectCode(storage.readVersion(at(sp, 'doc.txt'), 'no-such-version'), 'NOT_FOUND');
      });

      it('keeps no version of an empty file (Finder and Windows make one before they write it)', async () => {
        const sp = await newSpace();
        const made = await put(sp, 'new.docx', '');
        const written = await put(sp, 'new.docx', 'the content');
        expect(written.id).toEqual(made.id);
        expect(await storage.listVersions(at(sp, 'new.docx'))).toEqual([]);
        await put(sp, 'new.docx', '');
        expect((await storage.listVersions(at(sp, 'new.docx'))).map((v) => v.size)).toEqual([11]);
        await put(sp, 'new.docx', 'again');
        expect((await storage.listVersions(at(sp, 'new.docx'))).map((v) => v.size)).toEqual([11]);
      });

      it('restores a version: same id, the current content becomes a version', async () => {
        const sp = await newSpace();
        const first = await put(sp, 'r.txt', 'one');
        await put(sp, 'r.txt', 'two');
        const [old] = await storage.listVersions(at(sp, 'r.txt'));
        const restored = await storage.restoreVersion(at(sp, 'r.txt'), old!.key);
        expect(restored.id).toEqual(first.id);
        expect(await get(at(sp, 'r.txt'))).toBe('one');
        expect(restored.checksums?.sha1).toBe((await storage.stat(at(sp, 'r.txt'))).checksums?.sha1);
        const versions = await storage.listVersions(at(sp, 'r.txt'));
        expect(versions.length).toBe(1);
        const back = await storage.readVersion(at(sp, 'r.txt'), versions[0]!.key);
        expect((await collect(back.body!)).toString()).toBe('two');
        expect(await liveBytes(sp)).toBe(3);
        expect((await storage.getSpace(sp.id)).used).toBe(6);
      });

      it('keeps a bounded number of versions', async () => {
        const sp = await newSpace();
        for (let i = 0; i < 13; i++) await put(sp, 'many.txt', `v${i}`);
        const versions = await storage.listVersions(at(sp, 'many.txt'));
        expect(versions.length).toBe(10);
        const newest = await storage.readVersion(at(sp, 'many.txt'), versions[0]!.key);
        expect((await collect(newest.body!)).toString()).toBe('v11');
        expect((await storage.getSpace(sp.id)).usage?.versions).toBe(
          versions.reduce((a, v) => a + v.size, 0),
        );
      });

      it('brings versions back with a file restored from the trash, and copies start without', async () => {
        const sp = await newSpace();
        await put(sp, 'f', 'a');
        const f = await put(sp, 'f', 'bb');
        if (features.copy) {
          await storage.copy(at(sp, 'f'), at(sp, 'g'));
          expect(await storage.listVersions(at(sp, 'g'))).toEqual([]);
        }
        if (!features.trash) return;
        await storage.delete(at(sp, 'f'));
        await storage.restoreTrash(sp.id, f.id.opaqueId);
        expect((await storage.listVersions(at(sp, 'f'))).map((v) => v.size)).toEqual([1]);
        await expectCode(storage.listVersions(at(sp, '')), 'FAILED_PRECONDITION', 'is-folder');
      });

      it('counts a deleted file as trash and its versions as versions, until purged', async () => {
        if (!features.trash) return;
        const sp = await newSpace();
        await put(sp, 'doc', 'first');
        const doc = await put(sp, 'doc', 'second!');
        await storage.delete(at(sp, 'doc'));
        const usage = async () => (await storage.getSpace(sp.id)).usage;
        expect(await usage()).toEqual({ files: 0, trash: 7, versions: 5 });
        await storage.restoreTrash(sp.id, doc.id.opaqueId);
        expect(await usage()).toEqual({ files: 7, trash: 0, versions: 5 });
        await storage.delete(at(sp, 'doc'));
        await storage.purgeTrash(sp.id, doc.id.opaqueId);
        // Purged content may be removed in the background: the count follows shortly.
        const until = Date.now() + 5000;
        while ((await usage())?.versions && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        expect(await usage()).toEqual({ files: 0, trash: 0, versions: 0 });
      });
    });

    // ------------------------------------------------------------------ locks
    describe.skipIf(!features.locks)('capability: locks', () => {
      it('guards writes, deletes, moves and metadata with the lock id', async () => {
        const sp = await newSpace();
        await put(sp, 'l.txt', 'v1');
        const lock = await storage.setLock(at(sp, 'l.txt'), {
          lockId: 'lock-1',
          type: 'exclusive',
          appName: 'editor',
        });
        expect(lock.lockId).toBe('lock-1');
        expect(await storage.getLock(at(sp, 'l.txt'))).toMatchObject({
          lockId: 'lock-1',
          type: 'exclusive',
          appName: 'editor',
        });
        expect((await storage.stat(at(sp, 'l.txt'))).lock?.lockId).toBe('lock-1');
        await expectCode(put(sp, 'l.txt', 'v2'), 'LOCKED');
        await expectCode(put(sp, 'l.txt', 'v2', { lockId: 'wrong' }), 'ABORTED');
        await expectCode(storage.delete(at(sp, 'l.txt')), 'LOCKED');
        await expectCode(storage.move(at(sp, 'l.txt'), at(sp, 'm.txt')), 'LOCKED');
        if (features.metadata) await expectCode(storage.setMetadata(at(sp, 'l.txt'), { a: 'b' }), 'LOCKED');
        if (features.mtime) {
          await expectCode(storage.setMtime(at(sp, 'l.txt'), 1_500_000_000_000), 'LOCKED');
          await storage.setMtime(at(sp, 'l.txt'), 1_500_000_000_000, { lockId: 'lock-1' });
          expect((await storage.stat(at(sp, 'l.txt'))).mtime).toBe(1_500_000_000_000);
        }
        expect(await get(at(sp, 'l.txt'))).toBe('v1');
        await put(sp, 'l.txt', 'v2', { lockId: 'lock-1' });
        expect(await get(at(sp, 'l.txt'))).toBe('v2');
        if (features.metadata) {
          await storage.setMetadata(at(sp, 'l.txt'), { a: 'b' }, { lockId: 'lock-1' });
          await storage.unsetMetadata(at(sp, 'l.txt'), ['a'], { lockId: 'lock-1' });
          await expectCode(storage.unsetMetadata(at(sp, 'l.txt'), ['a']), 'LOCKED');
        }
        if (features.grants) {
          const g = { grantee: { type: 'user' as const, id: 'x' }, permissions: fromLetters('s') };
          await expectCode(storage.setGrant(at(sp, 'l.txt'), g), 'LOCKED');
          await storage.setGrant(at(sp, 'l.txt'), g, { lockId: 'lock-1' });
          await storage.removeGrant(at(sp, 'l.txt'), g.grantee, { lockId: 'lock-1' });
        }
        await storage.move(at(sp, 'l.txt'), at(sp, 'm.txt'), { lockId: 'lock-1' });
        expect((await storage.getLock(at(sp, 'm.txt')))?.lockId).toBe('lock-1');
        await put(sp, 'other.txt', 'x');
        await expectCode(put(sp, 'other.txt', 'y', { lockId: 'lock-1' }), 'ABORTED');
        if (features.metadata) {
          await expectCode(
            storage.setMetadata(at(sp, 'other.txt'), { a: 'b' }, { lockId: 'lock-1' }),
            'ABORTED',
          );
        }
        await expectCode(storage.move(at(sp, 'other.txt'), at(sp, 'm.txt'), { overwrite: true }), 'LOCKED');
      });

      it('refuses a second lock, refreshes and unlocks with the right id only', async () => {
        const sp = await newSpace();
        await put(sp, 'f', 'x');
        await storage.setLock(at(sp, 'f'), { lockId: 'a', type: 'write' });
        await expectCode(storage.setLock(at(sp, 'f'), { lockId: 'b', type: 'write' }), 'LOCKED');
        const exp = Date.now() + 3_600_000;
        await expectCode(
          storage.refreshLock(at(sp, 'f'), { lockId: 'b', type: 'write', expires: exp }),
          'ABORTED',
        );
        const r = await storage.refreshLock(at(sp, 'f'), { lockId: 'a', type: 'write', expires: exp });
        expect(r.expires).toBe(exp);
        const renamed = await storage.refreshLock(
          at(sp, 'f'),
          { lockId: 'a2', type: 'write', expires: exp },
          'a',
        );
        expect(renamed.lockId).toBe('a2');
        await expectCode(storage.unlock(at(sp, 'f'), 'a'), 'ABORTED');
        await storage.unlock(at(sp, 'f'), 'a2');
        expect(await storage.getLock(at(sp, 'f'))).toBeUndefined();
        await expectCode(storage.unlock(at(sp, 'f'), 'a2'), 'FAILED_PRECONDITION');
        await put(sp, 'f', 'free again');
        await expectCode(storage.setLock(at(sp, 'f'), { lockId: '', type: 'write' }), 'INVALID_ARGUMENT');
        await expectCode(
          storage.setLock(at(sp, 'f'), { lockId: 'x', type: 'bogus' as 'write' }),
          'INVALID_ARGUMENT',
        );
      });

      it.skipIf(target.fixedActor)(
        'keeps a non-shared lock its holder’s, whatever id another actor brings',
        async () => {
          const sp = await newSpace();
          await put(sp, 'o', 'x');
          const node = { spaceId: sp.id, segments: ['o'] };
          const locks = driver.features.locks!;
          await locks.set(node, { lockId: 'k', type: 'exclusive' }, { actor: 'u' });
          expect((await locks.get(node))?.user).toBe('u');
          await expectCode(locks.set(node, { lockId: 'k', type: 'exclusive' }, { actor: 'mary' }), 'LOCKED');
          await expectCode(locks.refresh(node, { lockId: 'k', type: 'exclusive', user: 'mary' }), 'LOCKED');
          await expectCode(locks.unlock(node, 'k', { actor: 'mary' }), 'LOCKED');
          await expectCode(driver.write(node, 'y', { lockId: 'k', actor: 'mary' }), 'LOCKED');
          await expectCode(driver.delete(node, { lockId: 'k', actor: 'mary' }), 'LOCKED');
          expect(await get(at(sp, 'o'))).toBe('x');
          await driver.write(node, 'y', { lockId: 'k', actor: 'u' });
          await locks.unlock(node, 'k', { actor: 'u' });
          // A shared lock refreshed by someone else stays its holder's.
          await locks.set(node, { lockId: 's', type: 'shared' }, { actor: 'u' });
          const until = Date.now() + 60_000;
          const r = await locks.refresh(node, {
            lockId: 's',
            type: 'exclusive',
            user: 'mary',
            expires: until,
          });
          expect(r).toMatchObject({ lockId: 's', type: 'shared', user: 'u', expires: until });
          await locks.unlock(node, 's', { actor: 'mary' });
        },
      );

      it('guards a folder by the locks inside it: delete, move and replace need their id', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd/e'), { parents: true });
        await put(sp, 'd/e/f.txt', 'x');
        await storage.setLock(at(sp, 'd/e/f.txt'), { lockId: 'in', type: 'exclusive' });
        await storage.mkdir(at(sp, 'x'));
        await expectCode(storage.delete(at(sp, 'd')), 'LOCKED');
        await expectCode(storage.delete(at(sp, 'd'), { lockId: 'other' }), 'LOCKED');
        await expectCode(storage.move(at(sp, 'd'), at(sp, 'd2')), 'LOCKED');
        await expectCode(storage.move(at(sp, 'x'), at(sp, 'd'), { overwrite: true }), 'LOCKED');
        if (features.copy)
          await expectCode(storage.copy(at(sp, 'x'), at(sp, 'd'), { overwrite: true }), 'LOCKED');
        expect(await get(at(sp, 'd/e/f.txt'))).toBe('x');
        // With the id, the folder moves, and the lock goes along and guards its new place.
        await storage.mkdir(at(sp, 'outer'));
        await storage.move(at(sp, 'd'), at(sp, 'outer/d'), { lockId: 'in' });
        expect((await storage.getLock(at(sp, 'outer/d/e/f.txt')))?.lockId).toBe('in');
        await expectCode(storage.delete(at(sp, 'outer')), 'LOCKED');
        if (features.trash) {
          const outer = await storage.delete(at(sp, 'outer'), { lockId: 'in' });
          await storage.restoreTrash(sp.id, outer.id.opaqueId);
          await expectCode(storage.delete(at(sp, 'outer')), 'LOCKED');
        }
        await storage.unlock(at(sp, 'outer/d/e/f.txt'), 'in');
        await storage.delete(at(sp, 'outer'));
        // Expired locks inside do not count.
        await storage.mkdir(at(sp, 'g'));
        await put(sp, 'g/h', 'y');
        await storage.setLock(at(sp, 'g/h'), {
          lockId: 'short',
          type: 'exclusive',
          expires: Date.now() + 100,
        });
        await expectCode(storage.move(at(sp, 'g'), at(sp, 'g2')), 'LOCKED');
        await new Promise((r) => setTimeout(r, 200));
        await storage.move(at(sp, 'g'), at(sp, 'g2'));
        await storage.delete(at(sp, 'g2'));
      });

      it.skipIf(target.oneLockId)(
        'takes locked members along when the call also holds their ids (heldLockIds), for nothing else',
        async () => {
          const sp = await newSpace();
          await storage.mkdir(at(sp, 'h/in'), { parents: true });
          await put(sp, 'h/in/a', 'a');
          await put(sp, 'h/b', 'b');
          await storage.setLock(at(sp, 'h/in/a'), { lockId: 'la', type: 'exclusive' });
          await storage.setLock(at(sp, 'h/b'), { lockId: 'lb', type: 'exclusive' });
          // One id of two is not enough, as lock id or held.
          await expectCode(storage.move(at(sp, 'h'), at(sp, 'h2'), { lockId: 'la' }), 'LOCKED');
          await expectCode(storage.move(at(sp, 'h'), at(sp, 'h2'), { heldLockIds: ['lb'] }), 'LOCKED');
          // Held ids do not stand for the lock id of the resource the call is about.
          await expectCode(put(sp, 'h/b', 'x', { heldLockIds: ['lb'] }), 'LOCKED');
          await expectCode(storage.delete(at(sp, 'h/b'), { heldLockIds: ['lb'] }), 'LOCKED');
          await storage.move(at(sp, 'h'), at(sp, 'h2'), { heldLockIds: ['la', 'lb'] });
          expect((await storage.getLock(at(sp, 'h2/in/a')))?.lockId).toBe('la');
          // A replace and a delete take them along the same way.
          await storage.mkdir(at(sp, 'y'));
          await expectCode(storage.move(at(sp, 'y'), at(sp, 'h2'), { overwrite: true }), 'LOCKED');
          await storage.move(at(sp, 'y'), at(sp, 'h2'), { overwrite: true, heldLockIds: ['la', 'lb'] });
          expect((await storage.stat(at(sp, 'h2'))).type).toBe('folder');
          await expectCode(storage.stat(at(sp, 'h2/b')), 'NOT_FOUND');
          await storage.mkdir(at(sp, 'z'));
          await put(sp, 'z/c', 'c');
          await storage.setLock(at(sp, 'z/c'), { lockId: 'lc', type: 'exclusive' });
          await expectCode(storage.delete(at(sp, 'z'), { heldLockIds: ['la'] }), 'LOCKED');
          await storage.delete(at(sp, 'z'), { heldLockIds: ['lc'] });
        },
      );

      it('forgets expired locks', async () => {
        const sp = await newSpace();
        await put(sp, 'e', 'x');
        await storage.setLock(at(sp, 'e'), { lockId: 'short', type: 'exclusive', expires: Date.now() + 150 });
        await expectCode(put(sp, 'e', 'y'), 'LOCKED');
        await new Promise((r) => setTimeout(r, 300));
        expect(await storage.getLock(at(sp, 'e'))).toBeUndefined();
        expect((await storage.stat(at(sp, 'e'))).lock).toBeUndefined();
        await put(sp, 'e', 'y');
        await storage.setLock(at(sp, 'e'), { lockId: 'next', type: 'exclusive' });
      });
    });

    // ------------------------------------------------------------------ grants
    describe.skipIf(!features.grants)('capability: grants', () => {
      const viewer = fromLetters(ROLES.viewer);
      const editor = fromLetters(ROLES.editor);
      /**
       * Grants a new space starts with: none on a bare driver; a door that acts as a user (the CS3
       * wire) makes its creator a manager. Tests look at what they add on top.
       */
      const startingGrants = async (sp: Space) =>
        new Set((await storage.listGrants(at(sp, ''))).map((g) => `${g.grantee.type}:${g.grantee.id}`));
      const added = (grants: readonly Grant[], start: Set<string>) =>
        grants.filter((g) => !start.has(`${g.grantee.type}:${g.grantee.id}`));

      it('stores, replaces and removes grants per grantee, and reports inherited ones', async () => {
        const sp = await newSpace();
        const start = await startingGrants(sp);
        await storage.mkdir(at(sp, 'team/docs'), { parents: true });
        await put(sp, 'team/docs/f.txt', 'x');
        await storage.setGrant(at(sp, ''), { grantee: { type: 'group', id: 'staff' }, permissions: viewer });
        await storage.setGrant(at(sp, 'team'), {
          grantee: { type: 'user', id: 'alice' },
          permissions: viewer,
        });
        await storage.setGrant(at(sp, 'team'), {
          grantee: { type: 'user', id: 'alice' },
          permissions: editor,
        });
        await storage.setGrant(at(sp, 'team'), {
          grantee: { type: 'user', id: 'eve' },
          permissions: viewer,
          deny: true,
        });
        const grants = await storage.listGrants(at(sp, 'team'));
        const byKey = Object.fromEntries(grants.map((g) => [`${g.grantee.type}:${g.grantee.id}`, g]));
        expect(Object.keys(byKey).sort()).toEqual(['user:alice', 'user:eve']);
        expect(byKey['user:alice']!.permissions).toEqual(editor);
        expect(byKey['user:eve']!.deny).toBe(true);
        expect((await storage.stat(at(sp, 'team'), { fields: ['grants'] })).grants?.length).toBe(2);
        expect((await storage.stat(at(sp, 'team'))).grants).toBeUndefined();
        const inspected = await driver.features.grants!.inspect(
          (await storage.resolve(at(sp, 'team/docs/f.txt'))).node,
        );
        expect(inspected.inherited.length).toBe(3);
        expect(added(inspected.inherited[0]!, start).map((g) => g.grantee.id)).toEqual(['staff']);
        expect(inspected.inherited[1]!.map((g) => g.grantee.id).sort()).toEqual(['alice', 'eve']);
        expect(inspected.inherited[2]).toEqual([]);
        expect(inspected.info.grants).toEqual([]);
        await storage.removeGrant(at(sp, 'team'), { type: 'user', id: 'eve' });
        await expectCode(storage.removeGrant(at(sp, 'team'), { type: 'user', id: 'eve' }), 'NOT_FOUND');
        expect((await storage.listGrants(at(sp, 'team'))).map((g) => g.grantee.id)).toEqual(['alice']);
      });

      it('keeps grants with a node that moves, drops expired ones, and copies start without', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'shared'));
        await storage.setGrant(at(sp, 'shared'), {
          grantee: { type: 'user', id: 'bob' },
          permissions: viewer,
        });
        await storage.setGrant(at(sp, 'shared'), {
          grantee: { type: 'user', id: 'tmp' },
          permissions: viewer,
          expires: Date.now() - 1,
        });
        await storage.move(at(sp, 'shared'), at(sp, 'moved'));
        expect((await storage.listGrants(at(sp, 'moved'))).map((g) => g.grantee.id)).toEqual(['bob']);
        if (features.copy) {
          await storage.copy(at(sp, 'moved'), at(sp, 'copied'));
          expect(await storage.listGrants(at(sp, 'copied'))).toEqual([]);
        }
      });

      it('refuses malformed grants', async () => {
        const sp = await newSpace();
        const start = await startingGrants(sp);
        await expectCode(
          storage.setGrant(at(sp, ''), {
            grantee: { type: 'robot' as 'user', id: 'x' },
            permissions: viewer,
          }),
          'INVALID_ARGUMENT',
        );
        await expectCode(
          storage.setGrant(at(sp, ''), { grantee: { type: 'user', id: '' }, permissions: viewer }),
          'INVALID_ARGUMENT',
        );
        await expectCode(
          storage.setGrant(at(sp, ''), { grantee: { type: 'user', id: 'x' }, permissions: fromLetters('') }),
          'INVALID_ARGUMENT',
        );
        expect(added(await storage.listGrants(at(sp, '')), start)).toEqual([]);
      });
    });

    // ------------------------------------------------------------------ quota
    describe.skipIf(!features.quota)('capability: quota', () => {
      it('refuses writes over quota before any byte lands, also of unknown size', async () => {
        const sp = await newSpace();
        await storage.updateSpace(sp.id, { quota: 10_000 });
        await put(sp, 'a.bin', Buffer.alloc(6000));
        await expectCode(put(sp, 'b.bin', Buffer.alloc(5000), { size: 5000 }), 'INSUFFICIENT_STORAGE');
        await expectCode(
          storage.write(at(sp, 'c.bin'), chunked([Buffer.alloc(3000), Buffer.alloc(3000)])),
          'INSUFFICIENT_STORAGE',
        );
        expect(await names(at(sp))).toEqual(['a.bin']);
        expect((await storage.getSpace(sp.id)).used).toBe(6000);
        const q = await storage.getQuota(at(sp, ''));
        expect(q).toMatchObject({ total: 10_000, used: 6000, remaining: 4000 });
        // What can still be written: the quota's rest, less only if the storage beneath is fuller.
        expect(q.available).toBeLessThanOrEqual(4000);
        expect(q.available).toBeGreaterThanOrEqual(0);
        await put(sp, 'd.bin', Buffer.alloc(4000));
        await expectCode(put(sp, 'e.bin', 'x'), 'INSUFFICIENT_STORAGE');
        if (features.copy)
          await expectCode(storage.copy(at(sp, 'd.bin'), at(sp, 'd2.bin')), 'INSUFFICIENT_STORAGE');
      });

      it('counts trash and versions, and frees space when the trash is purged', async () => {
        const sp = await newSpace();
        await storage.updateSpace(sp.id, { quota: 1000 });
        await put(sp, 'f', Buffer.alloc(600));
        if (features.versions) await expectCode(put(sp, 'f', Buffer.alloc(500)), 'INSUFFICIENT_STORAGE');
        if (features.trash) {
          await storage.delete(at(sp, 'f'));
          await expectCode(put(sp, 'g', Buffer.alloc(500)), 'INSUFFICIENT_STORAGE');
          await storage.purgeTrash(sp.id);
        } else {
          await storage.delete(at(sp, 'f'));
        }
        await put(sp, 'g', Buffer.alloc(500));
        expect((await storage.getSpace(sp.id)).used).toBe(500);
      });

      it('does not let concurrent writers overshoot the quota together', async () => {
        const sp = await newSpace();
        await storage.updateSpace(sp.id, { quota: 10_000 });
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => put(sp, `p${i}`, Buffer.alloc(2000))),
        );
        const ok = results.filter((r) => r.status === 'fulfilled').length;
        expect(ok).toBe(5);
        for (const r of results)
          if (r.status === 'rejected') expect((r.reason as StorageError).code).toBe('INSUFFICIENT_STORAGE');
        expect((await storage.getSpace(sp.id)).used).toBe(10_000);
      });
    });

    // ------------------------------------------------------------------ symlinks on disk
    describe.skipIf(!target.disk)('symlinks on disk', () => {
      it('never follows symlinks that point outside the space', async () => {
        const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-outside-'));
        onTestFinished(() => fs.rm(outside, { recursive: true, force: true }));
        await fs.writeFile(path.join(outside, 'secret.txt'), 'TOP SECRET');
        const sp = await newSpace();
        const root = await target.disk!.spaceRoot(driver, sp);
        await fs.mkdir(path.join(root, 'real'));
        await fs.symlink(outside, path.join(root, 'real', 'out-dir'));
        await fs.symlink(path.join(outside, 'secret.txt'), path.join(root, 'out-file'));
        await fs.symlink('../../../../../../../../../../', path.join(root, 'up'));
        await expectCode(storage.read(at(sp, 'out-file')), 'NOT_FOUND');
        await expectCode(storage.stat(at(sp, 'out-file')), 'NOT_FOUND');
        await expectCode(storage.read(at(sp, 'real/out-dir/secret.txt')), 'NOT_FOUND');
        await expectCode(storage.stat(at(sp, 'real/out-dir')), 'NOT_FOUND');
        await expectCode(storage.list(at(sp, 'real/out-dir')).next(), 'NOT_FOUND');
        await expectCode(storage.stat(at(sp, 'up/etc/passwd')), 'NOT_FOUND');
        await expectCode(put(sp, 'real/out-dir/planted.txt', 'x'), 'FAILED_PRECONDITION', 'parent-missing');
        await expectCode(put(sp, 'out-file', 'overwrite through link'), 'FAILED_PRECONDITION');
        await expectCode(
          storage.mkdir(at(sp, 'real/out-dir/newdir')),
          'FAILED_PRECONDITION',
          'parent-missing',
        );
        if (features.metadata)
          await expectCode(storage.setMetadata(at(sp, 'out-file'), { a: 'b' }), 'NOT_FOUND');
        await expectCode(storage.move(at(sp, 'real/out-dir/secret.txt'), at(sp, 'stolen.txt')), 'NOT_FOUND');
        if (features.copy)
          await expectCode(
            storage.copy(at(sp, 'real/out-dir/secret.txt'), at(sp, 'stolen.txt')),
            'NOT_FOUND',
          );
        expect(await names(at(sp, 'real'))).toEqual([]);
        expect(await names(at(sp))).toEqual(['real']);
        expect(await fs.readdir(outside)).toEqual(['secret.txt']);
        expect(await fs.readFile(path.join(outside, 'secret.txt'), 'utf8')).toBe('TOP SECRET');
        // Deleting or copying the folder that holds a link must not touch the link's target.
        if (features.copy) {
          await storage.copy(at(sp, 'real'), at(sp, 'real-copy'));
          expect(await names(at(sp, 'real-copy'))).toEqual([]);
          await expectCode(storage.stat(at(sp, 'real-copy/out-dir/secret.txt')), 'NOT_FOUND');
          expect((await storage.stat(at(sp, 'real-copy'))).size).toBe(0);
        }
        await storage.delete(at(sp, 'real'));
        expect(await fs.readFile(path.join(outside, 'secret.txt'), 'utf8')).toBe('TOP SECRET');
      });
    });

    // ------------------------------------------------------------------ persistence
    describe.skipIf(!target.reopen)('persistence', () => {
      it('keeps content, ids, etags and sizes across a restart', async () => {
        const sp = await newSpace();
        await storage.mkdir(at(sp, 'd'));
        const f = await put(sp, 'd/f.txt', 'persist me', { mtime: Date.UTC(2015, 5, 5) });
        if (features.metadata) await storage.setMetadata(at(sp, 'd/f.txt'), { k: 'v' });
        const fan = `fan-${randomUUID()}`;
        if (features.favorites) await driver.features.favorites!.set(fan, f.id, true);
        if (features.mtime) {
          await put(sp, 'd/t.txt', 'touched');
          await storage.setMtime(at(sp, 'd/t.txt'), Date.UTC(2003, 2, 3));
        }
        const touched = features.mtime ? await storage.stat(at(sp, 'd/t.txt')) : undefined;
        const root = await storage.stat(at(sp));
        const folder = await storage.stat(at(sp, 'd'));
        driver = await target.reopen!(driver);
        storage = new StorageProvider({ drivers: driver });
        const again = await storage.stat({ resourceId: f.id });
        expect(again.path).toBe('/d/f.txt');
        expect(again.etag).toBe(f.etag);
        expect(again.mtime).toBe(f.mtime);
        expect(again.checksums).toEqual(f.checksums);
        expect(again.created).toBe(f.created);
        expect((await storage.stat(at(sp, 'd'))).created).toBe(folder.created);
        expect((await storage.stat(at(sp))).created).toBe(root.created);
        expect(await get(at(sp, 'd/f.txt'))).toBe('persist me');
        const root2 = await storage.stat(at(sp));
        expect(root2.etag).toBe(root.etag);
        expect(root2.size).toBe(touched ? 17 : 10);
        if (touched) {
          const t = await storage.stat(at(sp, 'd/t.txt'));
          expect(t).toMatchObject({ mtime: Date.UTC(2003, 2, 3), etag: touched.etag });
          expect(t.checksums).toEqual(touched.checksums);
          expect(t.checksums?.sha1).toBeDefined();
        }
        if (features.metadata) {
          expect((await storage.stat(at(sp, 'd/f.txt'), { metadataKeys: '*' })).metadata).toEqual({ k: 'v' });
        }
        if (features.favorites)
          expect([...(await driver.features.favorites!.list(fan))]).toEqual([[f.id.opaqueId, sp.id]]);
        expect((await storage.getSpace(sp.alias)).name).toBe(sp.name);
      });
    });

    // ------------------------------------------------------------------ wrappers
    describe('wrappers', () => {
      it('readOnly forwards every capability, reads pass and writes are refused', async () => {
        const sp = await newSpace();
        await put(sp, 'r.txt', 'read me');
        const ro = new StorageProvider({ drivers: readOnly(driver) });
        expect(Object.keys(readOnly(driver).features).sort()).toEqual(Object.keys(driver.features).sort());
        expect(await (async () => (await collect((await ro.read(at(sp, 'r.txt'))).body!)).toString())()).toBe(
          'read me',
        );
        await expectCode(ro.write(at(sp, 'w.txt'), 'x'), 'PERMISSION_DENIED');
        await expectCode(ro.mkdir(at(sp, 'd')), 'PERMISSION_DENIED');
        await expectCode(ro.delete(at(sp, 'r.txt')), 'PERMISSION_DENIED');
        await expectCode(ro.move(at(sp, 'r.txt'), at(sp, 'x')), 'PERMISSION_DENIED');
        if (features.copy) await expectCode(ro.copy(at(sp, 'r.txt'), at(sp, 'x')), 'PERMISSION_DENIED');
        if (features.metadata)
          await expectCode(ro.setMetadata(at(sp, 'r.txt'), M({ a: 'b' })), 'PERMISSION_DENIED');
        if (features.mtime) await expectCode(ro.setMtime(at(sp, 'r.txt'), 0), 'PERMISSION_DENIED');
        if (features.spaces)
          await expectCode(ro.createSpace({ type: 'project', name: 'no' }), 'PERMISSION_DENIED');
        expect(await names(at(sp))).toEqual(['r.txt']);
      });
    });
  });
}
