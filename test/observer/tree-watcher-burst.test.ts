/**
 * The tree watcher with the events of one event-loop turn taken together: a burst of changes
 * (what a save through Stowage makes, what a copy tool makes) is reported once per path, with one
 * lstat per path, and still tells a folder's own change, a child named like its folder, and a
 * folder replaced by a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TreeWatcher } from '../../src/observer/tree-watcher.js';
import { tempRoot } from '../helpers/tmp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Seen = { p: string; gone?: boolean; inPlace?: boolean };

async function watched(prepare: (root: string) => void) {
  const root = await tempRoot('tw-burst');
  prepare(root);
  const seen: Seen[] = [];
  const tw = new TreeWatcher({
    root,
    onChange: (abs, gone, inPlace) =>
      seen.push({ p: path.relative(root, abs), ...(gone && { gone }), ...(inPlace && { inPlace }) }),
    onLost: () => {},
  });
  await tw.start();
  return {
    root,
    tw,
    seen,
    done: () => {
      tw.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

describe('TreeWatcher bursts', () => {
  afterEach(() => vi.restoreAllMocks());

  it('reports each path of a burst once, with one lstat per path', async () => {
    const w = await watched((root) => fs.mkdirSync(`${root}/d`));
    try {
      const lstat = vi.spyOn(fs, 'lstatSync');
      // One synchronous block: its events are all in the kernel's queue when libuv reads it.
      for (let i = 0; i < 40; i++) {
        const f = `${w.root}/d/f${i}`;
        fs.writeFileSync(f, 'a');
        fs.appendFileSync(f, 'b');
        fs.appendFileSync(f, 'c');
      }
      fs.chmodSync(`${w.root}/d`, 0o750); // the folder's own attributes: seen from it and its parent
      const writes = lstat.mock.calls.length; // (none: the writes above take no lstat)
      await sleep(300);
      const calls = lstat.mock.calls.length - writes;
      const files = w.seen.filter((s) => s.p.startsWith('d/f'));
      expect(new Set(files.map((s) => s.p)).size).toBe(40);
      expect(files.length).toBe(40);
      // (d's own change, seen by its watch and by its parent's)
      const d = w.seen.filter((s) => s.p === 'd');
      expect(d.length).toBeGreaterThan(0);
      expect(d.every((s) => s.inPlace && !s.gone)).toBe(true);
      // 40 files, d (as the folder of its events and as its own name), the root, d/d (absent)
      expect(calls).toBeLessThanOrEqual(44);
    } finally {
      w.done();
    }
  });

  it('tells a folder’s own change from a child of the same name, in one burst', async () => {
    const w = await watched((root) => fs.mkdirSync(`${root}/x`));
    try {
      fs.chmodSync(`${w.root}/x`, 0o750);
      fs.writeFileSync(`${w.root}/x/x`, 'a child named like its folder');
      await sleep(300);
      expect(w.seen).toEqual(expect.arrayContaining([{ p: 'x/x' }, { p: 'x', inPlace: true }]));
      expect(w.seen.filter((s) => s.p === 'x').every((s) => s.inPlace && !s.gone)).toBe(true);
    } finally {
      w.done();
    }
  });

  it('reports a folder replaced by a file in one burst as gone, and stops watching it', async () => {
    const w = await watched((root) => {
      fs.mkdirSync(`${root}/d`);
      fs.writeFileSync(`${root}/d/inner`, 'x');
    });
    try {
      expect(w.tw.size).toBe(2);
      fs.rmSync(`${w.root}/d`, { recursive: true });
      fs.writeFileSync(`${w.root}/d`, 'now a file');
      await sleep(300);
      expect(w.seen).toEqual(expect.arrayContaining([{ p: 'd', gone: true }, { p: 'd' }]));
      expect(w.seen.some((s) => s.p === 'd' && s.inPlace)).toBe(false);
      expect(w.tw.size).toBe(1);
      // and a folder made anew at its name is watched again
      fs.rmSync(`${w.root}/d`);
      fs.mkdirSync(`${w.root}/d`);
      await sleep(300);
      fs.writeFileSync(`${w.root}/d/again`, 'y');
      await sleep(300);
      expect(w.seen).toEqual(expect.arrayContaining([{ p: 'd/again' }]));
    } finally {
      w.done();
    }
  });
});
