/**
 * Stowage events on NATS JetStream, for other processes and machines: a bridge that publishes
 * every event of a provider's bus, and a durable consumer for the other side. Delivery is
 * at-least-once: the bridge retries until JetStream acknowledges (an outage of the NATS server is
 * waited out; each event's id is its JetStream message id, so a retry is not stored twice), and
 * a consumer acknowledges an event only after its handler returned.
 *
 * The `nats` package is an optional dependency, loaded when a bridge or consumer starts.
 *
 * ```ts
 * import { bridgeEventsToNats, consumeEvents } from 'stowage/nats';
 * const bridge = await bridgeEventsToNats(storage.events, { servers: 'nats://127.0.0.1:4222' });
 * // elsewhere:
 * await consumeEvents({ servers, durable: 'indexer', handler: async (e) => index(e), signal });
 * ```
 *
 * Limit: events wait for NATS in the publishing process's memory; if that process dies during
 * an outage, what it had not published yet is lost (a durable outbox is future work).
 *
 * @module stowage/nats
 */
import { StorageError } from '../core/errors.js';
import type { EventBus, StorageEvent } from '../core/events.js';

type Nats = typeof import('nats');
type NatsConnection = import('nats').NatsConnection;

async function loadNats(): Promise<Nats> {
  try {
    return await import('nats');
  } catch (err) {
    throw new StorageError('UNAVAILABLE', 'stowage/nats needs the nats package: npm install nats', {
      cause: err,
    });
  }
}

/** Options of {@link bridgeEventsToNats}. */
export interface NatsBridgeOptions {
  /** NATS server URL(s). */
  servers: string | string[];
  /** JetStream stream (created when missing; default `STOWAGE_EVENTS`). */
  stream?: string;
  /** Subject prefix: events go to `<prefix>.<space id>.<type>` (default `stowage.events`). */
  subject?: string;
  /** Events held while NATS is unreachable before the oldest are refused (default 1,000,000). */
  maxPending?: number;
  /** Failures worth a look. */
  log?: (message: string, err?: unknown) => void;
}

/** A running bridge. */
export interface NatsBridge {
  /** Events published since the start. */
  readonly published: number;
  /** Events waiting for NATS. */
  readonly pending: number;
  /** Wait until every event so far is in JetStream (or `timeoutMs` passed). */
  flush(timeoutMs?: number): Promise<void>;
  /** Stop listening, publish what is left (at most `timeoutMs`), and disconnect. */
  close(timeoutMs?: number): Promise<void>;
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** The subject of an event: `<prefix>.<space>.<type>` (tokens made subject-safe). */
export function eventSubject(prefix: string, e: Pick<StorageEvent, 'spaceId' | 'type'>): string {
  const token = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_') || '_';
  return `${prefix}.${token(e.spaceId)}.${e.type}`;
}

async function ensureStream(nc: NatsConnection, nats: Nats, stream: string, subject: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.info(stream);
  } catch {
    await jsm.streams.add({
      name: stream,
      subjects: [`${subject}.>`],
      storage: nats.StorageType.File,
      // Retries of one event within this window are stored once (its id is the message id).
      duplicate_window: nats.nanos(10 * 60 * 1000),
    });
  }
}

/** Publish every event of `bus` to JetStream, in order, retrying through NATS outages. */
export async function bridgeEventsToNats(bus: EventBus, opts: NatsBridgeOptions): Promise<NatsBridge> {
  const nats = await loadNats();
  const stream = opts.stream ?? 'STOWAGE_EVENTS';
  const subject = opts.subject ?? 'stowage.events';
  if (!NAME.test(stream))
    throw new StorageError('INVALID_ARGUMENT', 'stream names are letters, digits, - and _');
  const maxPending = opts.maxPending ?? 1_000_000;
  const nc = await nats.connect({
    servers: opts.servers,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    name: 'stowage-events',
  });
  await ensureStream(nc, nats, stream, subject);
  const js = nc.jetstream();
  const queue: StorageEvent[] = [];
  let published = 0;
  let _pumping: Promise<void> | undefined;
  let closed = false;
  let streamChecked = true;
  const waiters: (() => void)[] = [];

  const pump = async () => {
    let delay = 100;
    while (queue.length && !(closed && nc.isClosed())) {
      const e = queue[0]!;
      try {
        if (!streamChecked) {
          await ensureStream(nc, nats, stream, subject);
          streamChecked = true;
        }
        await js.publish(eventSubject(subject, e), JSON.stringify(e), { msgID: e.id, timeout: 5000 });
        queue.shift();
        published++;
        delay = 100;
      } catch (err) {
        // NATS down or restarting (its store keeps the stream): wait and publish the same event again.
        opts.log?.('publishing an event to NATS failed; retrying', err);
        streamChecked = false;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
    for (const w of waiters.splice(0)) w();
  };
  const kick = () => {
    _pumping ??= pump().finally(() => {
      _pumping = undefined;
      if (queue.length && !closed) kick();
    });
  };
  const off = bus.on((e) => {
    if (queue.length >= maxPending) {
      opts.log?.(`NATS unreachable and ${maxPending} events waiting: refusing the oldest`);
      queue.shift();
    }
    queue.push(e);
    kick();
  });

  const flush = (timeoutMs = 30_000) =>
    new Promise<void>((resolve) => {
      if (!queue.length) return resolve();
      const t = setTimeout(resolve, timeoutMs);
      waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
      kick();
    });

  return {
    get published() {
      return published;
    },
    get pending() {
      return queue.length;
    },
    flush,
    async close(timeoutMs = 10_000) {
      off();
      await flush(timeoutMs);
      closed = true;
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** Options of {@link consumeEvents}. */
export interface ConsumeEventsOptions {
  servers: string | string[];
  /** Durable consumer name: a consumer that restarts goes on where it stopped. */
  durable: string;
  /** Called once per event (more than once after a failure or a crash: at-least-once). */
  handler: (e: StorageEvent) => Promise<void> | void;
  stream?: string;
  subject?: string;
  /** Only these subjects, e.g. `stowage.events.<space>.>` (default: all). */
  filter?: string;
  signal?: AbortSignal;
  log?: (message: string, err?: unknown) => void;
}

/**
 * Consume Stowage events from JetStream with a durable consumer until `signal` aborts. An event
 * is acknowledged after `handler` resolves; a handler that throws gets it again a second later.
 */
export async function consumeEvents(opts: ConsumeEventsOptions): Promise<void> {
  const nats = await loadNats();
  const stream = opts.stream ?? 'STOWAGE_EVENTS';
  const subject = opts.subject ?? 'stowage.events';
  if (!NAME.test(opts.durable))
    throw new StorageError('INVALID_ARGUMENT', 'durable names are letters, digits, - and _');
  const nc = await nats.connect({ servers: opts.servers, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  try {
    await ensureStream(nc, nats, stream, subject);
    const jsm = await nc.jetstreamManager();
    try {
      await jsm.consumers.info(stream, opts.durable);
    } catch {
      await jsm.consumers.add(stream, {
        durable_name: opts.durable,
        ack_policy: nats.AckPolicy.Explicit,
        deliver_policy: nats.DeliverPolicy.All,
        ack_wait: nats.nanos(30_000),
        ...(opts.filter && { filter_subject: opts.filter }),
      });
    }
    const consumer = await nc.jetstream().consumers.get(stream, opts.durable);
    while (!opts.signal?.aborted) {
      const messages = await consumer.consume({ max_messages: 256 });
      const stop = () => messages.stop();
      opts.signal?.addEventListener('abort', stop, { once: true });
      try {
        for await (const m of messages) {
          let event: StorageEvent;
          try {
            event = m.json<StorageEvent>();
          } catch (err) {
            opts.log?.('an unreadable event was skipped', err);
            m.term();
            continue;
          }
          try {
            await opts.handler(event);
            m.ack();
          } catch (err) {
            opts.log?.('an event handler failed; the event comes again', err);
            m.nak(1000);
          }
        }
      } catch (err) {
        if (opts.signal?.aborted) break;
        opts.log?.('the NATS consumer stopped; starting again', err);
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        opts.signal?.removeEventListener('abort', stop);
      }
    }
  } finally {
    await nc.drain().catch(() => nc.close());
  }
}
