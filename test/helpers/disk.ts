import fs from 'node:fs/promises';
import * as xattr from 'fs-xattr';

export interface DiskNode {
  rel: string;
  type: 'file' | 'folder';
  size: number;
  rec?: {
    id: string;
    p?: string;
    ts?: number;
    tm?: number;
    tts?: number;
    vts?: number;
    tr?: unknown;
    /** A modification time still to be set (see the POSIX driver's `pm`). */
    pm?: number;
  };
}

async function record(p: string): Promise<DiskNode['rec']> {
  try {
    return JSON.parse((await xattr.getAttribute(p, 'user.stowage.n')).toString());
  } catch {
    return undefined;
  }
}

/** Every file and folder of a space as it is on disk (the internal folder excluded), root first. */
export async function walkSpace(root: string): Promise<DiskNode[]> {
  const out: DiskNode[] = [{ rel: '', type: 'folder', size: 0, rec: await record(root) }];
  const walk = async (rel: string) => {
    for (const name of await fs.readdir(rel ? `${root}/${rel}` : root)) {
      if (!rel && name === '.stowage') continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(`${root}/${r}`);
      if (st.isFile()) out.push({ rel: r, type: 'file', size: st.size, rec: await record(`${root}/${r}`) });
      else if (st.isDirectory()) {
        out.push({ rel: r, type: 'folder', size: 0, rec: await record(`${root}/${r}`) });
        await walk(r);
      }
    }
  };
  await walk('');
  return out;
}

/** Folders whose recorded tree size differs from the sum of what is below them on disk. */
export async function treeSizeErrors(root: string): Promise<string[]> {
  const nodes = await walkSpace(root);
  const sums = new Map<string, number>();
  for (const n of nodes) {
    if (n.type !== 'file') continue;
    const parts = n.rel.split('/');
    for (let i = parts.length - 1; i >= 0; i--) {
      const k = parts.slice(0, i).join('/');
      sums.set(k, (sums.get(k) ?? 0) + n.size);
    }
  }
  const errors: string[] = [];
  for (const n of nodes) {
    if (n.type !== 'folder') continue;
    const want = sums.get(n.rel) ?? 0;
    if (n.rec?.ts !== want) errors.push(`/${n.rel}: recorded ${n.rec?.ts}, on disk ${want}`);
  }
  return errors;
}

/** Entries in a space's tmp folder other than the given driver's liveness file. */
export async function litter(root: string): Promise<string[]> {
  try {
    return (await fs.readdir(`${root}/.stowage/tmp`)).filter((n) => !n.startsWith('live-'));
  } catch {
    return [];
  }
}

async function sumFiles(dir: string): Promise<number> {
  let total = 0;
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isDirectory()) total += await sumFiles(`${dir}/${e.name}`);
    else if (e.isFile()) total += (await fs.lstat(`${dir}/${e.name}`)).size;
  }
  return total;
}

/**
 * Where the root record's byte counts for trash and versions disagree with the disk (the trash is
 * counted by its items' files, versions by their files).
 */
export async function usageErrors(root: string): Promise<string[]> {
  const rec = await record(root);
  const errors: string[] = [];
  const trash = await sumFiles(`${root}/.stowage/trash`);
  const versions = await sumFiles(`${root}/.stowage/versions`);
  const tts = rec?.tts ?? 0;
  const vts = rec?.vts ?? 0;
  if (tts !== trash) errors.push(`trash: recorded ${tts}, on disk ${trash}`);
  if (vts !== versions) errors.push(`versions: recorded ${vts}, on disk ${versions}`);
  return errors;
}
