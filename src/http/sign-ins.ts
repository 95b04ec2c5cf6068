/**
 * Password sign-ins held in check: a client address that keeps failing waits longer and longer
 * before its next password is even looked at, and only a few password checks (scrypt: tens of ms
 * of CPU and 16 MiB each, on libuv's thread pool, which file I/O shares) run at once.
 *
 * Measured before (`.scratch/auth/flood.mjs`, 16 clients sending wrong passwords): a signed-in
 * user's GETs fell from ~12,500 to ~1,900 per second, and the guesses ran at ~60 per second.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';

/** Options of {@link SignInThrottle}. */
export interface SignInThrottleOptions {
  /** Failed sign-ins an address may make before it must wait (default 5). */
  freeFailures?: number;
  /** The first wait, doubled by each further failure (default 1 s). */
  firstWaitMs?: number;
  /** The longest wait (default 15 minutes). */
  maxWaitMs?: number;
  /** An address's failures are forgotten this long after its last one (default 15 minutes). */
  forgetAfterMs?: number;
  /** Password checks run at once, server-wide; the rest wait their turn (default 2). */
  concurrent?: number;
  /** Password checks that may wait their turn; more are answered 503 (default 256). */
  queue?: number;
}

/** Addresses remembered at most (the oldest are forgotten first). */
const MAX_ADDRESSES = 100_000;

/** Why a sign-in was not looked at: the address must wait, or the server has too many to check. */
export class SignInRefused extends Error {
  constructor(
    readonly status: 429 | 503,
    /** Seconds to wait (`Retry-After`). */
    readonly retryAfter: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The address a request came from, as sign-ins are counted: IPv4 as it is, IPv6 by its /64
 * (what one host can hold), an IPv4-mapped IPv6 address as the IPv4 one.
 */
export function clientAddressOf(req: IncomingMessage): string {
  return addressKey(req.socket.remoteAddress ?? '');
}

/** See {@link clientAddressOf}. */
export function addressKey(a: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (v4) return v4[1]!;
  if (!a.includes(':')) return a;
  // Expand `::` to count the groups, then keep the first four.
  const [head = '', tail] = a.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** See the module. One per server (it counts across requests). */
export class SignInThrottle {
  private readonly free: number;
  private readonly first: number;
  private readonly max: number;
  private readonly forget: number;
  private readonly concurrent: number;
  private readonly queueMax: number;
  /** Per address: failures counted, the last one's time, and until when it must wait. */
  private readonly failures = new Map<string, { n: number; last: number; until: number }>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(opts: SignInThrottleOptions = {}) {
    this.free = opts.freeFailures ?? 5;
    this.first = opts.firstWaitMs ?? 1000;
    this.max = opts.maxWaitMs ?? 15 * 60_000;
    this.forget = opts.forgetAfterMs ?? 15 * 60_000;
    this.concurrent = Math.max(1, opts.concurrent ?? 2);
    this.queueMax = opts.queue ?? 256;
  }

  /**
   * Check a password for `address`: refused ({@link SignInRefused}) while the address must wait,
   * else `check` runs when a slot is free; a result of `false`/`undefined` counts as a failure.
   */
  async check<T>(address: string, check: () => Promise<T>): Promise<T> {
    const s = this.waitOf(address);
    if (s) throw new SignInRefused(429, s, `too many failed sign-ins from this address: try again in ${s} s`);
    if (this.running >= this.concurrent) {
      if (this.waiting.length >= this.queueMax)
        throw new SignInRefused(503, 1, 'too many sign-ins to check at once: try again in a moment');
      await new Promise<void>((r) => this.waiting.push(r));
    }
    this.running++;
    let result: T;
    try {
      result = await check();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
    if (!result) this.failed(address);
    return result;
  }

  /** Seconds `address` must still wait (0: none). */
  waitOf(address: string): number {
    const now = Date.now();
    const f = this.failures.get(address);
    if (f && now - f.last > this.forget) this.failures.delete(address);
    else if (f && f.until > now) return Math.ceil((f.until - now) / 1000);
    return 0;
  }

  private failed(address: string): void {
    const now = Date.now();
    const f = this.failures.get(address) ?? { n: 0, last: now, until: 0 };
    f.n++;
    f.last = now;
    if (f.n >= this.free) f.until = now + Math.min(this.max, this.first * 2 ** (f.n - this.free));
    // (re-inserted: the map's order is the order of last failures, oldest first)
    this.failures.delete(address);
    this.failures.set(address, f);
    if (this.failures.size > MAX_ADDRESSES) this.failures.delete(this.failures.keys().next().value!);
  }
}
