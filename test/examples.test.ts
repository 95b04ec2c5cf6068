import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Every runnable example (examples/*.mjs that is not a test) must run to completion on the built package.
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../examples');
const examples = fs.readdirSync(dir).filter((f) => f.endsWith('.mjs') && !f.endsWith('.test.mjs'));

describe('examples', () => {
  it.each(examples)('%s runs', (name) => {
    const r = spawnSync(process.execPath, [path.join(dir, name)], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toBe('');
  });
});
