/** The process-wide cache of where ids were last seen: bounded, evicting what was written least recently. */
import { describe, expect, it } from 'vitest';
import { PathCache } from '../../src/drivers/posix/ids.js';

describe('PathCache', () => {
  it('evicts from the space written to least recently, and drops a forgotten space whole', () => {
    const c = new PathCache(4);
    c.set('A', 'a1', 'x/a1');
    c.set('B', 'b1', 'x/b1');
    c.set('A', 'a2', 'x/a2');
    c.set('A', 'a3', 'x/a3');
    c.set('A', 'a4', 'x/a4'); // one too many: B's entry goes, not A's newest
    expect(c.get('B', 'b1')).toBeUndefined();
    expect(['a1', 'a2', 'a3', 'a4'].map((k) => c.get('A', k))).toEqual(['x/a1', 'x/a2', 'x/a3', 'x/a4']);
    c.set('C', 'c1', 'x/c1'); // now A's oldest goes
    expect(c.get('A', 'a1')).toBeUndefined();
    c.set('A', 'a2', 'y/a2'); // a changed value replaces, and counts once
    c.drop('A');
    expect(c.get('A', 'a2')).toBeUndefined();
    for (const k of ['c2', 'c3', 'c4']) c.set('C', k, k);
    expect(['c1', 'c2', 'c3', 'c4'].map((k) => c.get('C', k))).toEqual(['x/c1', 'c2', 'c3', 'c4']);
  });
});
