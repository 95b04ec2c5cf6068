import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * A fresh folder on a real filesystem with user xattrs (the machine's disk, not tmpfs), inside the
 * test run's folder (removed when the run ends, see test/global-setup.ts) and removed at process
 * exit when that runs. STOWAGE_TEST_DIR picks where.
 */
export async function tempRoot(label: string): Promise<string> {
  const base =
    process.env.STOWAGE_TEST_RUN_DIR ??
    process.env.STOWAGE_TEST_DIR ??
    path.join(os.tmpdir(), 'stowage-tests');
  await fs.mkdir(base, { recursive: true });
  const dir = await fs.mkdtemp(path.join(base, `${label}-`));
  cleanup.add(dir);
  return dir;
}

const cleanup = new Set<string>();
process.on('exit', () => {
  if (process.env.STOWAGE_KEEP_TEST_DIRS) return;
  for (const d of cleanup) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});
