/**
 * Resumable uploads (TUS 1.0) for the data plane: each upload is two files in a state folder,
 * `<id>.bin` (the bytes so far) and `<id>.json` (target, length, acknowledged offset, expiry),
 * so an upload survives a restart of the server. Bytes are fsynced before the offset that
 * acknowledges them is written (temp + rename), and bytes past that offset are cut off before
 * the next append: the offset a client is told is never more than what is on disk.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { StorageError } from '../core/errors.js';
import { replaceFile } from '../core/files.js';

/** What an upload is for, as stored. */
export interface UploadState {
  id: string;
  /** Total length; undefined until the client says (creation-defer-length). */
  length?: number;
  /** Bytes acknowledged. */
  offset: number;
  /** Expiry, ms since epoch. */
  expires: number;
  /** Whatever the data plane needs to finish it (user, target, write options). */
  target: unknown;
  /** Whose upload it is (counted against that user's uploads in progress). */
  user?: string;
  /** Finished or terminated: only a marker is left, so the same token cannot start it again. */
  done?: boolean;
  /**
   * Saved just before the file is written: the etag its target had then (null: there was none).
   * A state with all its bytes, this and no `done` was left by a stop of the process during the
   * write or right after it; when the client sends the last byte again, this tells whether that
   * write landed (see `landedBefore` in the HTTP doors' common code).
   */
  before?: string | null;
}

/**
 * How long an upload must have had no bytes before a user at the limit of uploads in progress
 * makes room by dropping it (the least recently active first), ms.
 */
export const IDLE_BEFORE_DROPPED_MS = 60_000;

/** The checksum algorithms the TUS checksum extension accepts here (`Upload-Checksum: <algo> <base64>`). */
export const TUS_CHECKSUMS = ['sha1', 'md5'] as const;

/** The state folder of resumable uploads. */
export class TusUploads {
  private readonly busy = new Set<string>();
  /**
   * Uploads terminated while a request was appending to them or committing them: that request
   * saves nothing more (its state would bring the upload back), and a commit's write is aborted.
   */
  private readonly terminated = new Set<string>();
  /** The commit under way of an upload, to abort when it is terminated. */
  private readonly committing = new Map<string, AbortController>();
  /** The last state save of each upload under way: saves of one upload land in the order made. */
  private readonly saving = new Map<string, Promise<void>>();
  /** Uploads in progress (not finished, terminated or expired), by user: expiry and last bytes, ms. */
  private readonly inFlight = new Map<string, Map<string, { expires: number; active: number }>>();
  /** Creations under way, by upload id. */
  private readonly creating = new Map<string, Promise<UploadState>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly dir: string,
    private readonly log?: (message: string, err?: unknown) => void,
  ) {}

  /** Create the folder, count the uploads in progress, drop expired ones, and keep doing so hourly. */
  async open(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.sweep(true);
    this.timer = setInterval(() => void this.sweep(false), 3_600_000);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** An upload id derived from a key (a transfer token), so the same token finds the same upload. */
  static idFor(key: string): string {
    return createHash('sha256').update(key).digest('hex').slice(0, 40);
  }

  private file(id: string, ext: 'bin' | 'json'): string {
    if (!/^[0-9a-f]{40}$/.test(id)) throw new StorageError('NOT_FOUND', 'no such upload');
    return path.join(this.dir, `${id}.${ext}`);
  }

  /**
   * The upload, or undefined: expired uploads are removed and read as absent, and so is one whose
   * state cannot be read (cut short by a crash: its bytes were never acknowledged past it).
   */
  async get(id: string): Promise<UploadState | undefined> {
    let raw: string;
    try {
      raw = await fsp.readFile(this.file(id, 'json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || StorageError.is(err, 'NOT_FOUND'))
        return undefined;
      throw err;
    }
    let st: UploadState;
    try {
      st = JSON.parse(raw) as UploadState;
      if (typeof st !== 'object' || st === null || st.id !== id || typeof st.expires !== 'number')
        throw new Error('not an upload state');
    } catch (err) {
      this.log?.(`upload ${id}: unreadable state, removed`, err);
      await this.remove(id);
      return undefined;
    }
    if (st.expires <= Date.now()) {
      await this.remove(id);
      return undefined;
    }
    if (st.done) this.untrack(id);
    return st;
  }

  /** How many uploads `user` has in progress (besides `except`). */
  inProgress(user: string, except?: string): number {
    const ids = this.inFlight.get(user);
    if (!ids) return 0;
    const now = Date.now();
    let n = 0;
    for (const [id, { expires }] of ids) if (expires > now && id !== except) n++;
    return n;
  }

  private track(st: UploadState, active = Date.now()): void {
    if (st.user === undefined) return;
    const ids = this.inFlight.get(st.user) ?? new Map<string, { expires: number; active: number }>();
    ids.set(st.id, { expires: st.expires, active });
    this.inFlight.set(st.user, ids);
  }

  /**
   * The least recently active upload of `user` (not `except`) that is still in progress, has had no
   * bytes for {@link IDLE_BEFORE_DROPPED_MS} and has none coming in now: what goes to make room
   * for a new one. A client that never resumes (the ownCloud client starts every interrupted
   * upload anew) would otherwise leave a user unable to upload until their abandoned ones expire.
   */
  private idlest(user: string, except: string): string | undefined {
    const ids = this.inFlight.get(user);
    if (!ids) return undefined;
    const now = Date.now();
    let oldest: [string, number] | undefined;
    for (const [id, { expires, active }] of ids) {
      if (id === except || expires <= now || this.busy.has(id) || active > now - IDLE_BEFORE_DROPPED_MS)
        continue;
      if (!oldest || active < oldest[1]) oldest = [id, active];
    }
    return oldest?.[0];
  }

  private untrack(id: string): void {
    for (const [user, ids] of this.inFlight) {
      if (ids.delete(id) && ids.size === 0) this.inFlight.delete(user);
    }
  }

  /**
   * Create an upload (or return the existing one of that id). With `maxPerUser`, a user who has
   * that many uploads in progress already loses their least recently active one that has had no
   * bytes for a minute, or when all are active gets INSUFFICIENT_STORAGE and
   * nothing is created. Two requests creating the same upload at once get the same one.
   */
  create(st: UploadState, opts: { maxPerUser?: number } = {}): Promise<UploadState> {
    const pending = this.creating.get(st.id);
    if (pending) return pending;
    const made = this.createOnce(st, opts).finally(() => this.creating.delete(st.id));
    this.creating.set(st.id, made);
    return made;
  }

  private async createOnce(st: UploadState, opts: { maxPerUser?: number }): Promise<UploadState> {
    const existing = await this.get(st.id);
    if (existing) return existing;
    // Counted, made room for and taken in one go (no await between): two creations at once
    // cannot both take the last place.
    let dropped: string | undefined;
    if (
      st.user !== undefined &&
      opts.maxPerUser !== undefined &&
      this.inProgress(st.user, st.id) >= opts.maxPerUser
    ) {
      dropped = this.idlest(st.user, st.id);
      if (!dropped)
        throw new StorageError(
          'INSUFFICIENT_STORAGE',
          `at most ${opts.maxPerUser} uploads in progress per user`,
        );
      this.untrack(dropped);
    }
    this.track(st);
    if (dropped) {
      this.log?.(`upload ${dropped}: dropped, idle, to make room for a new upload of the same user`);
      await this.remove(dropped);
    }
    try {
      await fsp.writeFile(this.file(st.id, 'bin'), '', { flag: 'a', mode: 0o600 });
      await this.save(st);
    } catch (err) {
      this.untrack(st.id);
      throw err;
    }
    return st;
  }

  private async save(st: UploadState): Promise<void> {
    // (synced before it replaces the last state: a power cut leaves one whole state or the other)
    const text = JSON.stringify(st);
    const before = this.saving.get(st.id);
    const now = (before ?? Promise.resolve()).then(() => replaceFile(this.file(st.id, 'json'), text));
    const settled = now.catch(() => {});
    this.saving.set(st.id, settled);
    void settled.then(() => {
      if (this.saving.get(st.id) === settled) this.saving.delete(st.id);
    });
    await now;
  }

  /** Refuse to go on with an upload terminated meanwhile (see {@link terminated}). */
  private checkLive(id: string): void {
    if (this.terminated.has(id)) throw new StorageError('NOT_FOUND', 'the upload was terminated');
  }

  /** Keep the etag the target has just before the upload's file is written (see {@link UploadState.before}). */
  async writing(st: UploadState, before: string | null): Promise<void> {
    st.before = before;
    await this.save(st);
  }

  /** Set the length of an upload created without one. */
  async setLength(st: UploadState, length: number): Promise<void> {
    st.length = length;
    await this.save(st);
  }

  /**
   * Append a body at `st.offset`. The body may end early (a dropped connection): what arrived is
   * kept and acknowledged. `verify` checks the chunk's checksum; on a mismatch the chunk is
   * dropped. Returns the new offset.
   */
  async append(
    st: UploadState,
    body: AsyncIterable<Uint8Array>,
    opts: { max?: number; checksum?: { algo: string; digest: string } } = {},
  ): Promise<number> {
    if (this.busy.has(st.id)) {
      throw new StorageError('ABORTED', 'another request is appending to this upload', {
        reason: 'condition',
      });
    }
    this.busy.add(st.id);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.file(st.id, 'bin'), 'r+');
    } catch (err) {
      this.busy.delete(st.id);
      // (dropped or expired since it was looked up)
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new StorageError('NOT_FOUND', 'no such upload');
      throw err;
    }
    let written = 0;
    let failure: unknown;
    const hash = opts.checksum ? createHash(opts.checksum.algo) : undefined;
    try {
      await fh.truncate(st.offset); // bytes past the acknowledged offset were never acknowledged
      try {
        for await (const chunk of body) {
          if (opts.max !== undefined && written + chunk.length > opts.max) {
            throw tooLong();
          }
          hash?.update(chunk);
          await fh.write(chunk, 0, chunk.length, st.offset + written);
          written += chunk.length;
        }
      } catch (err) {
        failure = err; // keep what arrived unless it must be dropped
      }
      const badSum = hash && !failure && hash.digest('base64') !== opts.checksum!.digest;
      if (badSum || StorageError.is(failure, 'INVALID_ARGUMENT')) {
        await fh.truncate(st.offset);
        if (badSum) {
          throw badChecksum();
        }
        throw failure;
      }
      if (hash && failure) {
        // A chunk with a checksum that did not arrive whole cannot be verified: drop it.
        await fh.truncate(st.offset);
        written = 0;
      }
      this.checkLive(st.id);
      if (written) {
        await fh.sync();
        this.checkLive(st.id);
        st.offset += written;
        await this.save(st);
        if (!st.done) this.track(st);
      }
      return st.offset;
    } finally {
      await fh.close();
      this.busy.delete(st.id);
      this.terminated.delete(st.id);
    }
  }

  /**
   * Check the body of a PATCH that sends a complete upload's last byte again (its file not yet
   * written: the data plane tells such an upload all its bytes but the last): the bytes are staged
   * already, so it may hold that byte or nothing, and its checksum must hold. Nothing is written.
   */
  static async verifyResent(
    body: AsyncIterable<Uint8Array>,
    checksum?: { algo: string; digest: string },
  ): Promise<void> {
    const hash = checksum && createHash(checksum.algo);
    let got = 0;
    for await (const chunk of body) {
      got += chunk.length;
      if (got > 1) throw tooLong();
      hash?.update(chunk);
    }
    if (hash && hash.digest('base64') !== checksum!.digest) throw badChecksum();
  }

  /**
   * Hand the bytes of a complete upload to `commit`, then end the upload whatever it did. The
   * upload counts as busy meanwhile: a commit that takes longer than the idle minute (a large
   * file being checksummed) is not taken for idle, and a
   * PATCH arriving meanwhile is refused rather than appended.
   */
  async commit<T>(
    st: UploadState,
    commit: (bytes: fs.ReadStream, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (this.busy.has(st.id)) {
      throw new StorageError('ABORTED', 'another request is appending to this upload', {
        reason: 'condition',
      });
    }
    this.busy.add(st.id);
    const ac = new AbortController();
    this.committing.set(st.id, ac);
    let fh: fsp.FileHandle;
    try {
      // (terminated since its last bytes came: its file is gone)
      fh = await fsp.open(this.file(st.id, 'bin'), 'r');
    } catch (err) {
      this.committing.delete(st.id);
      this.busy.delete(st.id);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new StorageError('NOT_FOUND', 'the upload was terminated');
      throw err;
    }
    const bytes = fh.createReadStream({ highWaterMark: 256 * 1024 });
    // (the commit reads it and hears of its errors; one that never does must not end the process)
    bytes.on('error', () => {});
    try {
      this.checkLive(st.id);
      return await commit(bytes, ac.signal);
    } finally {
      bytes.destroy(); // (closes the file if the commit failed before reading it)
      this.committing.delete(st.id);
      try {
        if (!this.terminated.has(st.id)) await this.finish(st);
      } finally {
        this.busy.delete(st.id);
        this.terminated.delete(st.id);
      }
    }
  }

  /**
   * Terminate an upload: its bytes go, a marker stays until it expires. A request appending to
   * it meanwhile saves nothing more, and a commit under way is aborted.
   */
  async end(st: UploadState): Promise<void> {
    if (this.busy.has(st.id)) {
      this.terminated.add(st.id);
      this.committing.get(st.id)?.abort(new StorageError('CANCELLED', 'the upload was terminated'));
    }
    await this.finish(st);
  }

  /** End an upload (finished or terminated): its bytes go, a marker stays until it expires. */
  private async finish(st: UploadState): Promise<void> {
    await this.save({ id: st.id, offset: st.offset, expires: st.expires, target: undefined, done: true });
    this.untrack(st.id);
    await fsp.rm(this.file(st.id, 'bin'), { force: true });
  }

  /** Remove an upload and its marker (expired). */
  async remove(id: string): Promise<void> {
    this.untrack(id);
    await fsp.rm(this.file(id, 'json'), { force: true });
    await fsp.rm(this.file(id, 'bin'), { force: true });
  }

  /** Drop expired uploads and stray files; with `count`, count the uploads in progress (at start). */
  private async sweep(count: boolean): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (err) {
      this.log?.('sweeping expired uploads failed', err);
      return;
    }
    for (const name of names) {
      try {
        const m = /^([0-9a-f]{40})\.json$/.exec(name);
        if (m) {
          const st = await this.get(m[1]!);
          // Ended, but stopped before its bytes went (end() marks it first): they go now.
          if (st?.done) await fsp.rm(this.file(st.id, 'bin'), { force: true });
          else if (count && st) {
            const bin = await fsp.stat(this.file(st.id, 'bin')).catch(() => undefined);
            this.track(st, bin?.mtimeMs ?? 0);
          }
        } else if (/^[0-9a-f]{40}\.json\..+$/.test(name))
          await fsp.rm(path.join(this.dir, name), { force: true });
        else if (/^[0-9a-f]{40}\.bin$/.test(name)) {
          // Bytes whose upload state is gone (or was never written: created over an hour ago).
          const id = name.slice(0, 40);
          const bin = await fsp.stat(path.join(this.dir, name)).catch(() => undefined);
          const json = await fsp.stat(this.file(id, 'json')).catch(() => undefined);
          if (bin && !json && Date.now() - bin.mtimeMs > 3_600_000) await this.remove(id);
        }
      } catch (err) {
        // One bad file does not stop the others from being counted or swept.
        this.log?.(`sweeping upload file ${name} failed`, err);
      }
    }
  }
}

/** A PATCH body longer than what is left of its upload. */
function tooLong(): StorageError {
  return new StorageError('INVALID_ARGUMENT', 'the body is longer than the upload', {
    reason: 'size-mismatch',
  });
}

/** A PATCH body whose `Upload-Checksum` does not hold. */
function badChecksum(): StorageError {
  return new StorageError('INVALID_ARGUMENT', 'the chunk does not match its checksum', {
    reason: 'checksum-mismatch',
  });
}
