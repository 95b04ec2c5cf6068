/**
 * Events: what changed, where, by whom and through which door, announced by the provider after
 * every successful mutation (whatever the door), and before-hooks that may refuse a mutation
 * before it touches a driver.
 *
 * ```ts
 * const off = storage.events.on((e) => console.log(e.type, e.path));
 * storage.events.before(async (c) => {
 *   if (c.op === 'write' && !c.path?.endsWith('.h5')) throw new StorageError('PERMISSION_DENIED', 'HDF5 only');
 *   return { metadata: { checkedBy: 'ingest' } }; // optional: set on the resource once written
 * });
 * for await (const e of storage.events.stream({ signal })) ...
 * ```
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { StorageError } from './errors.js';
import type { ResourceId } from './types.js';

/** Through which door a change came. */
export type Origin = 'api' | 'webdav' | 'cs3' | 'external';

/** What happened. */
export type EventType =
  | 'created'
  | 'updated'
  | 'moved'
  | 'trashed'
  | 'restored'
  | 'deleted'
  | 'metadata.changed'
  | 'favorite.changed'
  | 'grant.changed'
  | 'lock.changed'
  | 'space.created'
  | 'space.updated'
  | 'space.deleted'
  | 'upload.finished';

/** One change, as announced after it happened. */
export interface StorageEvent {
  /** Unique id of the event (consumers deduplicate by it). */
  id: string;
  type: EventType;
  /** Milliseconds since epoch. */
  at: number;
  origin: Origin;
  /** Who did it (user id); absent for the system. */
  user?: string;
  storageId: string;
  spaceId: string;
  /** The resource (absent for space events). */
  resourceId?: ResourceId;
  /** Its folder. */
  parentId?: ResourceId;
  /** Path in the space (`/a/b.txt`). */
  path?: string;
  kind?: 'file' | 'folder';
  size?: number;
  etag?: string;
  /** Where a moved resource was. */
  from?: { parentId?: ResourceId; path?: string };
  /** The resource a copy was made from. */
  copiedFrom?: ResourceId;
  /** Trash or version key, for restores and purges; the upload's id for `upload.finished`. */
  key?: string;
  /** Why a change made around Stowage was refused (a before-hook's message); it went to the trash. */
  reason?: string;
  /**
   * `favorite.changed`: whether `user` marked the resource (true) or unmarked it. A user's marks
   * are nobody else's business: doors pass these events on to that user alone.
   */
  favorite?: boolean;
}

/** A mutation about to happen, as before-hooks see it. */
export interface PendingChange {
  op:
    | 'write'
    | 'mkdir'
    | 'delete'
    | 'move'
    | 'copy'
    | 'metadata'
    | 'grant'
    | 'lock'
    | 'restore'
    | 'purge'
    | 'space';
  origin: Origin;
  user?: string;
  spaceId: string;
  /** The target's path in the space, when the change names one. */
  path?: string;
  /** A move's or copy's destination path. */
  to?: string;
  /** Declared size of a write. */
  size?: number;
}

/** What a before-hook may add to a change it lets through. */
export interface Annotation {
  /** Arbitrary metadata set on the resource once the change is made (writes, folders, external changes). */
  metadata?: Record<string, string>;
}

/**
 * A before-hook: return to let the change go on (optionally with an {@link Annotation}), throw (a
 * StorageError) to refuse it.
 */
export type BeforeHook = (
  change: PendingChange,
  // biome-ignore lint/suspicious/noConfusingVoidType: most hooks return nothing at all
) => void | Annotation | Promise<void | Annotation>;

/** Options of {@link EventBus.stream}. */
export interface StreamOptions {
  signal?: AbortSignal;
  /** Events held for a slow reader before the stream fails (default 10,000): never dropped silently. */
  buffer?: number;
}

/** Subscribers and hooks of one provider (shared by its sessions). */
export class EventBus {
  private readonly listeners = new Set<(e: StorageEvent) => void>();
  private readonly hooks: BeforeHook[] = [];
  private readonly staleListeners = new Set<
    (storageId: string, spaceId?: string, paths?: readonly string[], inPlace?: readonly string[]) => void
  >();

  /** True when someone listens or a hook is set (the provider skips work for events otherwise). */
  get active(): boolean {
    return this.listeners.size > 0 || this.hooks.length > 0;
  }

  /** Call `listener` for every event, synchronously after the change; returns the unsubscribe. */
  on(listener: (e: StorageEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Run `hook` before every mutation; returns its removal. */
  before(hook: BeforeHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /**
   * Every event from now on, as an async iterator. A reader that falls more than `buffer` events
   * behind gets an error (UNAVAILABLE, reason-less) instead of silently missing some.
   */
  async *stream(opts: StreamOptions = {}): AsyncGenerator<StorageEvent> {
    const max = opts.buffer ?? 10_000;
    const queue: StorageEvent[] = [];
    let wake: (() => void) | undefined;
    let overflow = false;
    const off = this.on((e) => {
      if (queue.length >= max) overflow = true;
      else queue.push(e);
      wake?.();
    });
    const abort = () => wake?.();
    opts.signal?.addEventListener('abort', abort);
    try {
      for (;;) {
        const e = queue.shift();
        if (e) {
          yield e;
          continue;
        }
        // What was queued is delivered first; then the reader learns it missed some.
        if (overflow)
          throw new StorageError('UNAVAILABLE', `the event reader fell more than ${max} events behind`);
        if (opts.signal?.aborted) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      off();
      opts.signal?.removeEventListener('abort', abort);
    }
  }

  /** @internal Run the before-hooks (the first that throws refuses the change); their annotations, merged. */
  async check(change: PendingChange): Promise<Annotation | undefined> {
    let out: Annotation | undefined;
    for (const h of [...this.hooks]) {
      const a = await h(change);
      if (a?.metadata) out = { metadata: { ...out?.metadata, ...a.metadata } };
    }
    return out;
  }

  /**
   * Be told when something in a space may have changed without an event saying what: the observer
   * looked at paths there (written by another process, perhaps another Stowage), or lost events
   * (no `spaceId`: anything in the storage). With `paths` (from the space root, `a/b`), only
   * those paths and what is below them may have changed, and the folders above them (whose sizes
   * and etags follow); without, anything in the space. `inPlace` names those of the paths that
   * are folders still in their place (the same inode), of which only their own attributes may have
   * changed: what is below them did not change through them (a grant changed anywhere in a space
   * makes the whole space stale). Caches drop what they hold for it; nothing else needs this.
   * Every event is such a change too: listen to both.
   */
  onStale(
    listener: (
      storageId: string,
      spaceId?: string,
      paths?: readonly string[],
      inPlace?: readonly string[],
    ) => void,
  ): () => void {
    this.staleListeners.add(listener);
    return () => this.staleListeners.delete(listener);
  }

  /** @internal Say that something in a space (or anywhere in a storage) may have changed. */
  stale(storageId: string, spaceId?: string, paths?: readonly string[], inPlace?: readonly string[]): void {
    for (const l of [...this.staleListeners]) {
      try {
        l(storageId, spaceId, paths, inPlace);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** @internal Announce an event; a listener that throws does not stop the others. */
  emit(e: Omit<StorageEvent, 'id' | 'at'>): void {
    if (!this.listeners.size) return;
    const event: StorageEvent = { id: randomUUID(), at: Date.now(), ...e };
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
