/**
 * The tree watcher where Node has no real birth times: without `statx` (old kernels, sandboxes
 * that refuse it) libuv reports a file's ctime as its birth time. The watcher must then tell
 * folders apart by inode alone, or every change in a folder would look like the folder replaced.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TreeWatcher } from '../../src/observer/tree-watcher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TreeWatcher without real birth times', () => {
  afterEach(() => vi.restoreAllMocks());

  it('keeps watching a folder whose ctime moves with each change in it', async () => {
    const base = process.env.STOWAGE_TEST_DIR ?? os.tmpdir();
    fs.mkdirSync(base, { recursive: true });
    const root = fs.mkdtempSync(path.join(base, 'tw-btime-'));
    fs.mkdirSync(`${root}/d`);
    // What libuv's fallback to stat(2) gives: the birth time is the ctime. (The watcher probes
    // for this once per process, so this file holds no other test that starts a watcher.)
    const real = fs.lstatSync;
    vi.spyOn(fs, 'lstatSync').mockImplementation(((p: fs.PathLike, o?: fs.StatSyncOptions) => {
      const st = real(p, o as never) as fs.Stats | undefined;
      if (st) st.birthtimeMs = st.ctimeMs;
      return st;
    }) as typeof fs.lstatSync);
    const seen: [string, boolean | undefined][] = [];
    const tw = new TreeWatcher({
      root,
      onChange: (abs, gone) => seen.push([path.relative(root, abs), gone]),
      onLost: () => {},
    });
    try {
      await tw.start();
      expect(tw.size).toBe(2);
      await sleep(20);
      fs.writeFileSync(`${root}/d/a`, '1'); // moves d's ctime
      await sleep(200);
      fs.writeFileSync(`${root}/d/b`, '2');
      await sleep(200);
    } finally {
      tw.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
    expect(seen.filter(([p]) => p === 'd').map(([, gone]) => gone)).not.toContain(true); // never "gone"
    expect(seen.map(([p]) => p)).toEqual(expect.arrayContaining(['d/a', 'd/b'])); // and still watched
  });
});
