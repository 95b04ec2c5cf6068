/**
 * `idle()` awaited at the top level of a script: what it waits for (a recount put off, a rescan)
 * runs from timers that do not keep the process up by themselves, so the wait must.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runNode } from '../helpers/child.js';
import { tempRoot } from '../helpers/tmp.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/idle-child.mjs');

describe('observer idle() at the top level of a script', () => {
  it('keeps the process up until what it waits for is done', async () => {
    const root = await tempRoot('idle-exit');
    const files = 60;
    const r = await runNode(child, [root, String(files)]);
    // (exit code 13: the process ended with a top-level await never settled)
    expect(r.code, r.out).toBe(0);
    expect(r.out.trim()).toBe(`OK ${(files * (files - 1)) / 2}`);
  });
});
