import fs from 'node:fs/promises';
import * as xattr from 'fs-xattr';

export interface DiskNode {
  rel: string;
  type: 'file' | 'folder';
  size: number;
  rec?: { id: string; p?: string; ts?: number; tm?: number; ck?: Record<string, string> };
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
