/**
 * The NATS JetStream bridge against a real nats-server (started here, with JetStream on disk):
 * every event reaches a durable consumer, none is lost while the server is down and restarted,
 * and a consumer that stops goes on where it left off.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../../src/drivers/memory/index.js';
import { bridgeEventsToNats, consumeEvents } from '../../src/events/nats.js';
import { type StorageEvent, StorageProvider } from '../../src/index.js';
import { tempRoot } from '../helpers/tmp.js';
import { tool } from '../webdav/server.js';

const hasNats = await tool('nats-server');
const servers: ChildProcess[] = [];
afterAll(() => {
  for (const s of servers) s.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function startNats(port: number, dir: string): Promise<ChildProcess> {
  const p = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], {
    stdio: 'ignore',
  });
  servers.push(p);
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (up) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nats-server did not start');
}

async function stop(p: ChildProcess): Promise<void> {
  p.kill('SIGTERM');
  if (p.exitCode === null) await new Promise((r) => p.once('exit', r));
}

async function until(ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!hasNats)('events on NATS JetStream', () => {
  it('delivers every event at least once, across a NATS restart and a consumer restart', async () => {
    const port = await freePort();
    const dir = await tempRoot('nats');
    let nats = await startNats(port, dir);
    const servers = `nats://127.0.0.1:${port}`;
    const storage = new StorageProvider({ drivers: createMemoryDriver() });
    const emitted: string[] = [];
    storage.events.on((e) => emitted.push(e.id));
    const bridge = await bridgeEventsToNats(storage.events, { servers });
    const received = new Map<string, StorageEvent>();
    let ac = new AbortController();
    const consume = () =>
      consumeEvents({
        servers,
        durable: 'test-indexer',
        handler: (e) => {
          received.set(e.id, e);
        },
        signal: ac.signal,
      });
    let consumer = consume();

    const sp = await storage.createSpace({ type: 'project', name: 'On NATS' });
    for (let i = 0; i < 5; i++) await storage.write({ space: sp.id, path: `a${i}.txt` }, `${i}`);
    await until(() => received.size === emitted.length);
    expect(received.get(emitted[1]!)).toMatchObject({ type: 'created', path: '/a0.txt', origin: 'api' });

    // NATS goes down: changes go on, their events wait.
    await stop(nats);
    for (let i = 0; i < 5; i++) await storage.write({ space: sp.id, path: `b${i}.txt` }, `${i}`);
    await storage.delete({ space: sp.id, path: 'a0.txt' });
    await new Promise((r) => setTimeout(r, 300));
    expect(bridge.pending).toBeGreaterThan(0);
    nats = await startNats(port, dir);
    await bridge.flush();
    expect(bridge.pending).toBe(0);
    await until(() => received.size === emitted.length);

    // The consumer stops; what happens meanwhile waits for it in JetStream.
    ac.abort();
    await consumer;
    for (let i = 0; i < 3; i++) await storage.write({ space: sp.id, path: `c${i}.txt` }, `${i}`);
    await bridge.flush();
    ac = new AbortController();
    consumer = consume();
    await until(() => received.size === emitted.length);
    expect([...received.keys()].sort()).toEqual([...emitted].sort());
    expect([...received.values()].filter((e) => e.type === 'trashed').map((e) => e.path)).toEqual([
      '/a0.txt',
    ]);

    ac.abort();
    await consumer;
    await bridge.close();
    await stop(nats);
  }, 60_000);
});
