/** XML request bodies read into memory: bounded in bytes across requests, and in time. */
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BodyBudget, readBody } from '../../src/webdav/xml.js';

/** A request body fed by hand. */
const request = () =>
  Object.assign(new PassThrough(), { headers: {} }) as unknown as PassThrough & IncomingMessage;

describe('XML body budget', () => {
  it('charges each part its bytes and what holding it costs, and gives both back however the read ends', async () => {
    const budget = new BodyBudget(10_000, 60_000);
    // 1,000 bytes in 100 parts of 10 (a body trickled packet by packet) cost more than their bytes.
    const trickled = request();
    const read = readBody(trickled, budget);
    for (let i = 0; i < 100; i++) trickled.write(Buffer.alloc(10, 0x20));
    await expect(read).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(budget.bytes).toBe(0);
    // The same bytes in one part fit, and are given back once read.
    const whole = request();
    const got = readBody(whole, budget);
    whole.end(Buffer.alloc(1000, 0x20));
    expect((await got).length).toBe(1000);
    expect(budget.bytes).toBe(0);
    // A client gone half way: its bytes are given back too.
    const cut = request();
    const half = readBody(cut, budget);
    cut.write(Buffer.alloc(500, 0x20));
    await new Promise((r) => setImmediate(r));
    expect(budget.bytes).toBeGreaterThan(500);
    cut.destroy();
    await expect(half).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(budget.bytes).toBe(0);
  });

  it('gives up on a body that takes longer than the deadline (reason body-timeout)', async () => {
    const budget = new BodyBudget(1_000_000, 100);
    const slow = request();
    const read = readBody(slow, budget);
    slow.write('<a>');
    await expect(read).rejects.toMatchObject({ code: 'CANCELLED', reason: 'body-timeout' });
    expect(budget.bytes).toBe(0);
  });
});
