/**
 * The bytes each user has staged in chunked uploads (chunking NG), kept as a running count so a
 * chunk PUT does not stat every chunk of every transfer of its user first (next to 20,000 staged
 * chunks that took 300-420 ms per PUT, so a transfer's cost grew with the square of its chunks).
 *
 * The folder stays the truth: a user's count is made from it when first needed and made again
 * from it once a minute (another process may stage or remove chunks in the same folder); what
 * this process writes, finishes or removes meanwhile is added or taken off as it happens (a
 * change that lands while a count is being made may be missed or counted twice until the next).
 * Chunks being written count from their first byte, so parallel PUTs see each other.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Bytes by transfer, and all together. */
interface Counts {
  total: number;
  byTransfer: Map<string, number>;
}

function add(c: Counts, transfer: string, n: number): void {
  c.total += n;
  const now = (c.byTransfer.get(transfer) ?? 0) + n;
  if (now === 0) c.byTransfer.delete(transfer);
  else c.byTransfer.set(transfer, now);
}

/** A chunk being written: its bytes count until it is in place or given up, or another write of the same chunk starts. */
export interface ChunkWrite {
  /** `n` more bytes written. */
  grow(n: number): void;
  /** In place (renamed over one of `replaced` bytes, 0 when there was none). */
  commit(replaced: number): void;
  /**
   * Put the chunk in place with `move` (which measures what is there, renames over it and says
   * how many bytes it replaced), then {@link commit}, after any other try of the same chunk has
   * done so: two tries landing together each measured the other's chunk as not there yet, and the
   * chunk counted twice (its transfer then refused its next chunk 413 until the next count). When
   * `move` throws, the write is given up.
   */
  place(move: () => Promise<number>): Promise<void>;
  /** Given up: its bytes no longer count. */
  abandon(): void;
  /**
   * The bytes of the chunk in place now, which this write replaces: as this process last put it
   * there (another try of the same chunk may have landed since this one started), else `found`
   * (what was there when it started).
   */
  replacing(found: number): number;
}

/** One user's staged bytes: those on disk (as last counted, plus changes since) and those being written. */
export class StagedTally {
  /** @internal */
  disk: Counts;
  private readonly writing: Counts = { total: 0, byTransfer: new Map() };
  /** The latest write of each chunk (`transfer/chunk`), and its bytes so far. */
  private readonly writes = new Map<string, { bytes: number }>();
  /** The size of each chunk this process put in place, by transfer and chunk. */
  private readonly placed = new Map<string, Map<string, number>>();
  /** The last try of each chunk (`transfer/chunk`) being put in place: the next waits for it. */
  private readonly placing = new Map<string, Promise<void>>();

  /** @internal */
  constructor(disk: Counts) {
    this.disk = disk;
  }

  /** Bytes staged for `transfer`. */
  used(transfer: string): number {
    return (this.disk.byTransfer.get(transfer) ?? 0) + (this.writing.byTransfer.get(transfer) ?? 0);
  }

  /** Bytes staged for all the user's transfers. */
  usedAll(): number {
    return this.disk.total + this.writing.total;
  }

  /** Whether a chunk of `transfer` is being written. */
  writingTo(transfer: string): boolean {
    return this.writing.byTransfer.has(transfer);
  }

  /** Whether no chunk is being written. */
  get idle(): boolean {
    return this.writes.size === 0;
  }

  /**
   * A chunk of `transfer` starts being written. A client that sends a chunk again while its first
   * try is still coming (a stalled connection not yet timed out) is not counted twice: only the
   * latest write of a chunk counts.
   */
  start(transfer: string, chunk: string): ChunkWrite {
    const key = `${transfer}/${chunk}`;
    const before = this.writes.get(key);
    if (before) {
      add(this.writing, transfer, -before.bytes);
      before.bytes = 0;
    }
    const me = { bytes: 0 };
    this.writes.set(key, me);
    const end = () => {
      if (this.writes.get(key) !== me) return;
      add(this.writing, transfer, -me.bytes);
      this.writes.delete(key);
    };
    let written = 0;
    const commit = (replaced: number) => {
      end();
      add(this.disk, transfer, written - replaced);
      let m = this.placed.get(transfer);
      if (!m) {
        m = new Map();
        this.placed.set(transfer, m);
      }
      m.set(chunk, written);
    };
    return {
      grow: (n) => {
        written += n;
        if (this.writes.get(key) !== me) return;
        me.bytes += n;
        add(this.writing, transfer, n);
      },
      commit,
      place: async (move) => {
        const before = this.placing.get(key);
        let done!: () => void;
        const mine = new Promise<void>((r) => {
          done = r;
        });
        this.placing.set(key, mine);
        try {
          await before;
          commit(await move());
        } catch (err) {
          end();
          throw err;
        } finally {
          done();
          if (this.placing.get(key) === mine) this.placing.delete(key);
        }
      },
      abandon: end,
      replacing: (found) => this.placed.get(transfer)?.get(chunk) ?? found,
    };
  }

  /** A transfer's folder is gone (finished, cancelled or swept). */
  forget(transfer: string): void {
    this.placed.delete(transfer);
    const n = this.disk.byTransfer.get(transfer) ?? 0;
    this.disk.total -= n;
    this.disk.byTransfer.delete(transfer);
  }
}

/** The tallies of the users of one uploads folder. */
export class StagedChunks {
  private readonly users = new Map<string, { tally: StagedTally; at: number; counting?: Promise<void> }>();

  constructor(private readonly refreshMs = 60_000) {}

  /** A transfer of the user whose transfers are in `userDir` is gone (when that user is counted). */
  forget(userDir: string, transfer: string): void {
    this.users.get(userDir)?.tally.forget(transfer);
  }

  /** The tally of the user whose transfers are the folders in `userDir`. */
  async of(userDir: string): Promise<StagedTally> {
    let u = this.users.get(userDir);
    if (!u) {
      // Users who stopped uploading are forgotten, the longest known first: their count is made
      // anew when they come back (one with a chunk being written is kept).
      if (this.users.size >= 10_000)
        for (const [k, v] of this.users) {
          if (this.users.size < 9_000) break;
          if (v.tally.idle) this.users.delete(k);
        }
      const tally = new StagedTally(await countStaged(userDir));
      u = this.users.get(userDir) ?? { tally, at: Date.now() };
      this.users.set(userDir, u);
      return u.tally;
    }
    if (Date.now() - u.at >= this.refreshMs) {
      const entry = u;
      entry.counting ??= countStaged(userDir).then(
        (disk) => {
          entry.tally.disk = disk;
          entry.at = Date.now();
          entry.counting = undefined;
        },
        () => {
          entry.counting = undefined;
        },
      );
      await entry.counting;
    }
    return u.tally;
  }
}

/**
 * The bytes of the chunks in each transfer folder of `userDir` (names starting with `.` are not
 * chunks). What is gone meanwhile counts nothing; a folder that cannot be read fails the count
 * (it would read as nothing staged, and let a user past the quota).
 */
async function countStaged(userDir: string): Promise<Counts> {
  const counts: Counts = { total: 0, byTransfer: new Map() };
  for (const t of await fsp.readdir(userDir).catch(gone)) {
    if (t.startsWith('.')) continue;
    for (const n of await fsp.readdir(path.join(userDir, t)).catch(gone)) {
      if (n.startsWith('.')) continue;
      const size = (await fsp.stat(path.join(userDir, t, n)).catch(() => undefined))?.size ?? 0;
      add(counts, t, size);
    }
  }
  return counts;
}

/** No entries for a folder that is not there (ENOENT, ENOTDIR); anything else is thrown. */
function gone(err: NodeJS.ErrnoException): string[] {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
  throw err;
}
