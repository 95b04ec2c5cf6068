/**
 * One folder per test run for everything the tests put on disk, removed when the run ends (test
 * workers are ended without their exit handlers running, so they cannot clean up themselves).
 * STOWAGE_TEST_DIR picks where (a real filesystem with user xattrs); STOWAGE_KEEP_TEST_DIRS keeps it.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export default async function setup(): Promise<() => Promise<void>> {
  const base = process.env.STOWAGE_TEST_DIR ?? path.join(os.tmpdir(), 'stowage-tests');
  await fs.mkdir(base, { recursive: true });
  const run = await fs.mkdtemp(path.join(base, 'run-'));
  process.env.STOWAGE_TEST_RUN_DIR = run;
  return async () => {
    if (process.env.STOWAGE_KEEP_TEST_DIRS) {
      console.log(`test folders kept in ${run}`);
      return;
    }
    await fs.rm(run, { recursive: true, force: true });
  };
}
