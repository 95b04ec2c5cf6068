/**
 * The bytes each user has staged in chunked uploads (chunking NG), kept as a running count so a
 * chunk PUT does not stat every chunk of every transfer of its user first (next to 20,000 staged
 * chunks that took 300-420 ms per PUT, so a transfer's cost grew with the square of its chunks).
 *
 * The folder stays the truth: a user's count is made from it when first needed and made again
 * from it once a minute (another process may stage or remove chunks in the same folder); what
 * this process writes, finishes or removes meanwhile is added or taken off as it happens. Chunks
 * being written count from their first byte, so parallel PUTs see each other.
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

/** One user's staged bytes: those on disk (as last counted, plus changes since) and those being written. */
export class StagedTally {
  /** @internal */
  disk: Counts;
  private readonly writing: Counts = { total: 0, byTransfer: new Map() };

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

  /** `n` more bytes of a chunk of `transfer` being written (negative: given up). */
  grow(transfer: string, n: number): void {
    add(this.writing, transfer, n);
  }

  /** A chunk of `written` bytes is in place, replacing one of `replaced` bytes. */
  commit(transfer: string, written: number, replaced: number): void {
    add(this.writing, transfer, -written);
    add(this.disk, transfer, written - replaced);
  }

  /** A transfer's folder is gone (finished, cancelled or swept). */
  forget(transfer: string): void {
    const n = this.disk.byTransfer.get(transfer) ?? 0;
    this.disk.total -= n;
    this.disk.byTransfer.delete(transfer);
  }
}

/** The tallies of the users of one uploads folder. */
export class StagedChunks {
  private readonly users = new Map<string, { tally: StagedTally; at: number; counting?: Promise<void> }>();

  constructor(private readonly refreshMs = 60_000) {}

  /** The tally of the user whose transfers are the folders in `userDir`. */
  async of(userDir: string): Promise<StagedTally> {
    let u = this.users.get(userDir);
    if (!u) {
      // (users who stopped uploading are forgotten now and then: their count is made anew)
      if (this.users.size >= 10_000) this.users.clear();
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

/** The bytes of the chunks in each transfer folder of `userDir` (names starting with `.` are not chunks). */
async function countStaged(userDir: string): Promise<Counts> {
  const counts: Counts = { total: 0, byTransfer: new Map() };
  for (const t of await fsp.readdir(userDir).catch(() => [] as string[])) {
    if (t.startsWith('.')) continue;
    for (const n of await fsp.readdir(path.join(userDir, t)).catch(() => [] as string[])) {
      if (n.startsWith('.')) continue;
      const size = (await fsp.stat(path.join(userDir, t, n)).catch(() => undefined))?.size ?? 0;
      add(counts, t, size);
    }
  }
  return counts;
}
