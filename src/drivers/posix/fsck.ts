/**
 * Check (and optionally repair) one space of the POSIX driver against what is on disk: records,
 * duplicate ids, parent ids, tree sizes, the id index, stale checksums and leftovers in tmp.
 * Everything it repairs is derived state; file contents are never changed.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type fs from 'node:fs';
import fsp from 'node:fs/promises';
import { ChecksumAccumulator } from '../../core/checksums.js';
import { nextTreeTime } from '../../core/etag.js';
import { decodeGrant } from '../../core/permissions.js';
import { RESERVED_ROOT_NAME } from '../../core/refs.js';
import type { PosixFavorites } from './favorites.js';
import type { Native } from './native.js';
import {
  bornAt,
  checksumsValid,
  encodeRecord,
  type NodeRecord,
  sameChecksums,
  XATTR_NODE,
} from './record.js';
import { keyOf, type PosixSpace, segsOf } from './space.js';

/** Kinds of problems fsck finds. */
export type FsckProblemKind =
  | 'missing-record'
  | 'duplicate-id'
  | 'wrong-parent'
  | 'tree-size'
  | 'index-entry'
  | 'index-orphan'
  | 'favorite-orphan'
  | 'stale-checksums'
  | 'skipped-special'
  | 'pending-intent'
  | 'usage-totals'
  | 'unreadable-grants'
  | 'litter';

/** One problem. */
export interface FsckProblem {
  kind: FsckProblemKind;
  path: string;
  detail?: string;
}

/** What fsck found (and fixed) in one space. */
export interface FsckSpaceReport {
  space: string;
  alias: string;
  files: number;
  folders: number;
  bytes: number;
  problems: Record<string, number>;
  /** The first problems found, with paths (at most 100). */
  examples: FsckProblem[];
  repaired: boolean;
}

/** Options for fsck. */
export interface FsckOptions {
  /** Fix what is found (default: only report). */
  repair?: boolean;
  /**
   * Read files whose checksums may be stale (touched since they were confirmed: reported as
   * `stale-checksums` when their bytes changed) and, with `repair`, compute those missing or stale.
   */
  checksums?: boolean;
  /**
   * Read every file with checksums and compare (implies `checksums`): a file whose bytes no longer
   * match is reported as `stale-checksums` however it was changed (a rewrite that kept its size,
   * mtime and, within a second or two of Stowage's own change, its ctime too; bit rot). `repair`
   * never records new checksums for such a file: only a person can tell a rewrite from damage
   * (`touch` the file to have the bytes taken as they are; restore a version otherwise). Reads
   * every byte under the space's commit lock: writes to the space wait meanwhile.
   */
  verify?: boolean;
}

/** Check one space; runs under its commit lock so the tree holds still. */
export async function fsckSpace(
  native: Native,
  sp: PosixSpace,
  opts: FsckOptions,
  favorites?: PosixFavorites,
): Promise<FsckSpaceReport> {
  const repair = !!opts.repair;
  const report: FsckSpaceReport = {
    space: sp.id,
    alias: sp.alias,
    files: 0,
    folders: 0,
    bytes: 0,
    problems: {},
    examples: [],
    repaired: repair,
  };
  const problem = (kind: FsckProblemKind, segs: readonly string[], detail?: string) => {
    report.problems[kind] = (report.problems[kind] ?? 0) + 1;
    if (report.examples.length < 100)
      report.examples.push({ kind, path: `/${segs.join('/')}`, ...(detail && { detail }) });
  };

  await sp.commit(
    async (journal) => {
      const started = Date.now();
      // A commit that died half way and could not be repaired automatically: the walk below recomputes
      // everything it covers; only its undo of a replace needs doing first.
      if (journal.leftover) {
        problem('pending-intent', [], JSON.stringify(journal.leftover).slice(0, 200));
        if (repair) await sp.undoHeld(journal.leftover);
      }
      const seen = new Map<string, string>(); // id -> key of the node keeping it

      /** Give the node at `segs` a new id; its children follow. Returns the new record. */
      const reidentify = async (segs: string[]): Promise<NodeRecord | undefined> => {
        const rec = sp.recordHeld(segs);
        if (!rec) return undefined;
        const st = await fsp.lstat(sp.abs(segs));
        // A copy (cp -a): a resource of its own, made when it was made on disk.
        const fresh: NodeRecord = { ...rec, id: randomUUID(), bt: bornAt(st) };
        sp.writeHeld(segs, fresh);
        await sp.index.write(fresh.id, fresh.p ?? sp.id, keyOf(segs));
        seen.set(fresh.id, keyOf(segs));
        if (st.isDirectory()) {
          for (const name of await fsp.readdir(sp.abs(segs))) {
            const child = [...segs, name];
            const cst = await fsp.lstat(sp.abs(child)).catch(() => undefined);
            if (!cst || !(cst.isFile() || cst.isDirectory())) continue; // never through a symlink
            const crec = sp.recordHeld(child);
            if (crec && crec.p === rec.id) sp.writeHeld(child, { ...crec, p: fresh.id });
          }
        }
        return fresh;
      };

      const check = async (segs: string[], st: fs.Stats, parentId: string | undefined): Promise<number> => {
        const key = keyOf(segs);
        let rec = sp.recordHeld(segs);
        if (!rec) {
          problem('missing-record', segs);
          if (!repair) return st.isDirectory() ? walk(segs, undefined) : st.size;
          rec = await sp.assimilateHeld(segs);
        }
        if (segs.length > 0) {
          const other = seen.get(rec.id);
          if (other !== undefined) {
            problem('duplicate-id', segs, `same id as /${other}`);
            if (repair) {
              // The index entry names the original; the other one is a copy made around Stowage.
              if ((await sp.index.read(rec.id))?.rel === key) await reidentify(segsOf(other));
              else rec = (await reidentify(segs)) ?? rec;
            }
          }
          if (parentId !== undefined && rec.p !== parentId) {
            problem('wrong-parent', segs);
            if (repair) {
              rec.p = parentId;
              sp.writeHeld(segs, rec);
            }
          }
          seen.set(rec.id, key);
          // An entry below a folder that moved keeps its old path by design: it still leads here
          // through its parent's entry (checked on the way down) and its own name.
          const entry = await sp.index.read(rec.id);
          const name = segs[segs.length - 1]!;
          const leads =
            entry !== undefined &&
            entry.parent === rec.p &&
            (entry.rel === name || entry.rel.endsWith(`/${name}`));
          if (!leads) {
            problem('index-entry', segs);
            if (repair && rec.p) await sp.index.write(rec.id, rec.p, key);
          }
        } else {
          seen.set(rec.id, key);
        }
        // Grants that cannot be read make the node unreachable (they fail closed); a person decides
        // what they should be, so this is reported, never repaired.
        if (rec.g && !(await grantsReadable(sp, segs, rec))) problem('unreadable-grants', segs);
        if (st.isDirectory()) {
          report.folders++;
          const size = await walk(segs, rec.id);
          if (rec.ts !== size) {
            problem('tree-size', segs, `recorded ${rec.ts ?? 'none'}, on disk ${size}`);
            if (repair) {
              rec.ts = size;
              rec.tm = nextTreeTime(rec.tm);
              sp.writeHeld(segs, rec);
            }
          }
          return size;
        }
        report.files++;
        report.bytes += st.size;
        const valid = checksumsValid(rec, st);
        if (!valid && rec.ck !== undefined) problem('stale-checksums', segs);
        // Touched since they were confirmed (see checksumsSuspect): only reading tells.
        const touched = valid && sp.checksumsSuspect(rec, st);
        const suspect = touched || (valid && !!opts.verify);
        const reading = opts.checksums || opts.verify;
        if ((!valid && reading && repair) || (suspect && reading)) {
          const acc = new ChecksumAccumulator();
          const fh = await fsp.open(sp.abs(segs), 'r');
          try {
            for await (const chunk of fh.createReadStream({ autoClose: false, highWaterMark: 1 << 20 }))
              acc.update(chunk);
            const after = await fh.stat();
            if (after.mtimeMs === st.mtimeMs && after.size === st.size) {
              const ck = acc.digest();
              const changed = !suspect || !sameChecksums(ck, rec.ck!);
              if (suspect && changed)
                problem(
                  'stale-checksums',
                  segs,
                  'its bytes do not match its checksums (size and mtime kept)',
                );
              // A file read only to verify it needs nothing written when it matched, and when it
              // did not, a person decides (see verify).
              if (repair && (!suspect || touched)) {
                const updated: NodeRecord = {
                  ...rec,
                  ck,
                  ckm: st.mtimeMs,
                  cks: st.size,
                  ...sp.checksumsConfirmed(),
                };
                // The etag stays what it was (see NodeRecord.en), as the observer keeps it.
                if (!valid) updated.en = 1;
                else if (changed) delete updated.en;
                native.setxattrSync(sp.abs(segs), XATTR_NODE, encodeRecord(updated));
              }
            }
          } finally {
            await fh.close();
          }
        }
        return st.size;
      };

      const walk = async (segs: string[], id: string | undefined): Promise<number> => {
        let total = 0;
        const dir = await fsp.opendir(sp.abs(segs), { bufferSize: 256 });
        for await (const d of dir) {
          if (segs.length === 0 && d.name === RESERVED_ROOT_NAME) continue;
          const child = [...segs, d.name];
          const st = await fsp.lstat(sp.abs(child)).catch(() => undefined);
          if (!st) continue;
          if (!(st.isFile() || st.isDirectory())) {
            problem(
              'skipped-special',
              child,
              st.isSymbolicLink() ? 'symbolic link (never followed)' : 'special file',
            );
            continue;
          }
          total += await check(child, st, id);
        }
        return total;
      };

      const rootSt = await fsp.lstat(sp.root);
      await check([], rootSt, undefined);

      // Bytes in the trash and in versions, as the root records them, against the disk.
      const totals = await sp.countTotals();
      const root = sp.recordHeld([]);
      if (root && ((root.tts ?? 0) !== totals.tts || (root.vts ?? 0) !== totals.vts)) {
        problem(
          'usage-totals',
          [],
          `trash ${root.tts ?? 0}/${totals.tts}, versions ${root.vts ?? 0}/${totals.vts} (recorded/on disk)`,
        );
        if (repair) await sp.recountTotalsHeld();
      }

      const trashed = await sp.trashIds();
      for await (const e of sp.index.entries()) {
        if (!seen.has(e.id) && !trashed.has(e.id) && e.mtimeMs < started) {
          problem('index-orphan', [], e.id);
          if (repair) await sp.index.remove(e.id);
        }
      }
      sp.index.forgetAll();
      // Users' favorite marks of resources neither in the space nor in its trash (deleted around
      // Stowage, or by a process that died before it dropped them).
      if (favorites) {
        const orphans = new Set<string>();
        for await (const m of favorites.marksOf(sp.id)) {
          if (m.opaqueId === sp.id || seen.has(m.opaqueId) || trashed.has(m.opaqueId)) continue;
          const st = await fsp.lstat(m.file).catch(() => undefined);
          if (!st || st.mtimeMs >= started) continue;
          problem('favorite-orphan', [], m.opaqueId);
          orphans.add(m.opaqueId);
        }
        if (repair) await favorites.forget(sp.id, orphans);
      }
      if (repair) journal.clearLeftover();
    },
    { recover: false },
  );

  // Leftovers of dead processes: reported always, removed by the normal start-up clean.
  try {
    for (const name of await fsp.readdir(sp.tmp)) {
      if (!name.startsWith('live-')) problem('litter', ['.stowage', 'tmp', name]);
    }
  } catch {
    // no tmp folder yet
  }
  return report;
}

async function grantsReadable(sp: PosixSpace, segs: string[], rec: NodeRecord): Promise<boolean> {
  try {
    const raw = await sp.readGrantsDocument(sp.abs(segs), rec);
    if (!raw) return true;
    const stored: unknown = JSON.parse(raw.toString('utf8'));
    return Array.isArray(stored) && stored.every((g) => decodeGrant(g) !== undefined);
  } catch {
    return false;
  }
}
