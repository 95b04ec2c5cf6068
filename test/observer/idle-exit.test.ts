/**
 * `idle()` awaited at the top level of a script: what it waits for (a recount put off, a rescan)
 * runs from timers that do not keep the process up by themselves, so the wait must.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempRoot } from '../helpers/tmp.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/idle-child.mjs');

describe('observer idle() at the top level of a script', () => {
  it('keeps the process up until what it waits for is done', async () => {
    const root = await tempRoot('idle-exit');
    const files = 60;
    const r = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const p = spawn(process.execPath, [child, root, String(files)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('error', reject);
      p.on('exit', (code) => resolve({ code, out }));
    });
    // (exit code 13: the process ended with a top-level await never settled)
    expect(r.code, r.out).toBe(0);
    expect(r.out.trim()).toBe(`OK ${(files * (files - 1)) / 2}`);
  });
});
