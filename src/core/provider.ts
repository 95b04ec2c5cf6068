/**
 * The StorageProvider: the one entry point every door (TypeScript API, CS3, WebDAV) calls. It resolves
 * references to a driver and a validated {@link NodeRef}, enforces path safety, and authorises every
 * operation against grants before the driver does anything.
 *
 * A provider built with `new StorageProvider(...)` acts as the system: trusted code embedding
 * Stowage, with every permission. `provider.as(user)` gives a session with the same methods, where
 * each call is checked against the user's grants: a resource the user may not stat is NOT_FOUND, an
 * action the user may not take is PERMISSION_DENIED.
 *
 * @module
 */
import type {
  Body,
  Driver,
  Inspected,
  MetadataChange,
  MutationOptions,
  Watch,
  WatchOptions,
  WatchStats,
} from './driver.js';
import { folderTimeRefused, StorageError } from './errors.js';
import { type Annotation, EventBus, type Origin, type PendingChange, type StorageEvent } from './events.js';
import { type IdentitySource, principalOf, type User } from './identity.js';
import { checkLockAbove, guardsBelow, liveLock } from './locks.js';
import {
  allPermissions,
  checkGrant,
  effectivePermissions,
  fromLetters,
  type Grant,
  type Grantee,
  granteeKey,
  includesAll,
  noPermissions,
  type PermissionName,
  type Principal,
  ROLES,
} from './permissions.js';
import { checkName, checkNotReserved, parseResourceId, printable, splitPath } from './refs.js';
import type {
  CopyOptions,
  CreateSpaceInput,
  Field,
  FileVersion,
  ListOptions,
  Lock,
  MoveOptions,
  NodeRef,
  Permissions,
  ReadOptions,
  ReadResult,
  RecycleItem,
  Ref,
  Reference,
  ResourceId,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from './types.js';
import { DEFAULT_FIELDS } from './types.js';

/** NOT_FOUND because the principal may not see it (internal: callers see a plain NOT_FOUND). */
class Hidden extends StorageError {
  constructor() {
    super('NOT_FOUND', 'not found');
  }
}

/** Options for {@link StorageProvider.listFavorites}. */
export interface ListFavoritesOptions extends StatOptions {
  /**
   * Only the favorites in this space (id or alias); marks elsewhere are not even looked at. A space
   * that is missing, or that the user cannot see and holds none of their visible favorites, is
   * NOT_FOUND alike.
   */
  space?: string;
}

/** Options for {@link StorageProvider}. */
export interface ProviderOptions {
  /** One driver, or several (each serving its own storage id). */
  drivers: Driver | readonly Driver[];
  /** Where users come from (needed by {@link StorageProvider.as} with a user id). */
  identity?: IdentitySource;
}

/** A resolved reference. */
export interface Resolved {
  driver: Driver;
  node: NodeRef;
}

/** Options for {@link StorageProvider.mkdir}. */
export interface MkdirOptions extends MutationOptions {
  /** Create missing parents and accept an existing folder (`mkdir -p`). */
  parents?: boolean;
}

/** Filter for {@link StorageProvider.listSpaces}. */
export interface ListSpacesFilter extends SpaceFilter {
  /** Admins: every space, not only those they are a member of. */
  unrestricted?: boolean;
}

/** Quota of a space as seen from a resource. */
export interface QuotaInfo {
  /** Bytes allowed; undefined = no quota. */
  total?: number;
  used: number;
  /** Bytes left; undefined = no quota. */
  remaining?: number;
  /**
   * Bytes that can still be written: what is left of the quota, bounded by the free space of the
   * storage beneath, or that free space when there is no quota (as Reva reports it); undefined
   * when neither is known.
   */
  available?: number;
  /** `used`, broken down (as {@link Space.usage}), when the driver counts it so. */
  usage?: { files: number; trash: number; versions: number };
}

/** Options for {@link StorageProvider.offboardUser}. */
export interface OffboardOptions {
  /** Also remove every grant the user holds in spaces of this provider (default: keep them, inert). */
  removeGrants?: boolean;
}

/** Options of {@link StorageProvider.watch} (see {@link WatchOptions} for each). */
export type ObserveOptions = Omit<WatchOptions, 'onChange' | 'vet' | 'onStale'>;

/** Observers of every driver that can watch, as one. */
export interface Observation extends Watch {
  /** How many drivers are observed (0: none of them can watch). */
  readonly drivers: number;
}

interface SpaceFacts {
  ownerId?: string;
  disabled: boolean;
  type: string;
  at: number;
}

/** State shared by a provider and all its sessions. */
class Shared {
  readonly byStorage = new Map<string, Driver>();
  readonly spaceDriver = new Map<string, Driver>();
  readonly aliasCache = new Map<string, { driver: Driver; spaceId: string }>();
  readonly facts = new Map<string, SpaceFacts>();
  /**
   * Permissions a principal has from an inherited grant chain, per chain object. Drivers that cache
   * chains hand out the same array while it is valid, so this is computed once per chain; an entry
   * lapses when the first grant in it expires.
   */
  readonly chainPerms = new Map<string, WeakMap<object, { perms: Permissions; until: number }>>();
  readonly events = new EventBus();
  constructor(
    readonly drivers: readonly Driver[],
    readonly identity: IdentitySource | undefined,
  ) {}
}

const FACTS_TTL_MS = 2000;
const ALL = Object.freeze(allPermissions());
/** Permissions of the owner of a personal space, and of the system. */
const OWNER = ALL;

/** Resolves references to drivers and is the one door-independent API of Stowage. */
export class StorageProvider {
  readonly drivers: readonly Driver[];
  /** Who this provider acts for; undefined = the system (every permission). */
  readonly principal: Principal | undefined;
  /** The user behind {@link principal}, when known. */
  readonly user: User | undefined;
  /** The door this provider's changes are announced as coming through. */
  readonly origin: Origin;
  private readonly shared: Shared;

  constructor(options: ProviderOptions);
  /** @internal a session */
  constructor(options: ProviderOptions, shared: Shared, principal: Principal, user?: User, origin?: Origin);
  constructor(
    options: ProviderOptions,
    shared?: Shared,
    principal?: Principal,
    user?: User,
    origin?: Origin,
  ) {
    this.origin = origin ?? 'api';
    if (shared) {
      this.shared = shared;
      this.drivers = shared.drivers;
      this.principal = principal;
      this.user = user;
      return;
    }
    const drivers = Array.isArray(options.drivers) ? options.drivers : [options.drivers as Driver];
    if (drivers.length === 0) throw new StorageError('INVALID_ARGUMENT', 'at least one driver is required');
    this.drivers = Object.freeze([...drivers]);
    this.shared = new Shared(this.drivers, options.identity);
    for (const d of drivers) {
      if (this.shared.byStorage.has(d.storageId)) {
        throw new StorageError('INVALID_ARGUMENT', `two drivers serve storage id "${d.storageId}"`);
      }
      this.shared.byStorage.set(d.storageId, d);
    }
    this.principal = undefined;
    this.user = undefined;
  }

  /** The identity source given to the provider. */
  get identity(): IdentitySource | undefined {
    return this.shared.identity;
  }

  /**
   * Every change made through this provider and its sessions, announced after it happened, and
   * before-hooks that may refuse a change (see {@link EventBus}). The system provider's only: a
   * session would see changes its user may not.
   */
  get events(): EventBus {
    return this.shared.events;
  }

  /**
   * A session acting for a user (a {@link User}, a {@link Principal}, or a user id/username looked up
   * in the identity source). Every call of the session is authorised against that user's grants;
   * what the user may not see answers a plain NOT_FOUND ("not found"). A session does not hand out
   * `drivers`, `driverFor`, `resolve`, `identity`, `as` or `close` (PERMISSION_DENIED): those are
   * the system provider's.
   */
  async as(who: User | Principal | string, opts: { origin?: Origin } = {}): Promise<StorageProvider> {
    let user: User | undefined;
    let principal: Principal;
    if (typeof who === 'string') {
      user = await this.shared.identity?.getUser(who);
      if (!user) throw new StorageError('UNAUTHENTICATED', `unknown user "${printable(who)}"`);
      principal = principalOf(user);
    } else if ('userId' in who) {
      principal = who;
    } else {
      user = who;
      principal = principalOf(who);
    }
    return sealed(
      new StorageProvider(
        { drivers: this.drivers },
        this.shared,
        principal,
        user,
        opts.origin ?? this.origin,
      ),
    );
  }

  /** The driver serving a storage id (the first one for an empty id). */
  driverFor(storageId: string): Driver {
    const d = storageId ? this.shared.byStorage.get(storageId) : this.drivers[0];
    if (!d) throw new StorageError('NOT_FOUND', `unknown storage "${printable(storageId)}"`);
    return d;
  }

  // ================================================================ resolution

  /** Resolve a reference to a driver and a validated node reference (no authorisation). */
  async resolve(ref: Ref): Promise<Resolved> {
    const r: Reference = typeof ref === 'string' ? parseRefString(ref) : ref;
    if (r === null || typeof r !== 'object') {
      throw new StorageError('INVALID_ARGUMENT', 'a reference is required', { reason: 'invalid-path' });
    }
    if (r.resourceId !== undefined) {
      const id =
        typeof r.resourceId === 'string' ? parseResourceId(r.resourceId) : checkResourceId(r.resourceId);
      const driver = await this.driverForSpace(id.spaceId, id.storageId);
      const segments = splitPath(r.path);
      const atRoot = id.opaqueId === id.spaceId;
      checkNotReserved(segments, atRoot);
      return {
        driver,
        node: atRoot
          ? { spaceId: id.spaceId, segments }
          : { spaceId: id.spaceId, nodeId: id.opaqueId, segments },
      };
    }
    if (r.space !== undefined) {
      const { driver, spaceId } = await this.spaceByIdOrAlias(r.space);
      const segments = splitPath(r.path);
      checkNotReserved(segments, true);
      return { driver, node: { spaceId, segments } };
    }
    // Absolute path: /<type>/<alias>/<rest>
    const all = splitPath(r.path);
    if (all.length < 2) throw new StorageError('NOT_FOUND', `no space at "${printable(r.path ?? '')}"`);
    const { driver, spaceId } = await this.spaceByIdOrAlias(`${all[0]}/${all[1]}`);
    const segments = all.slice(2);
    checkNotReserved(segments, true);
    return { driver, node: { spaceId, segments } };
  }

  private async driverForSpace(spaceId: string, storageId: string): Promise<Driver> {
    if (storageId) return this.driverFor(storageId);
    const cached = this.shared.spaceDriver.get(spaceId);
    if (cached) return cached;
    return (await this.spaceByIdOrAlias(spaceId)).driver;
  }

  private async spaceByIdOrAlias(key: string): Promise<{ driver: Driver; spaceId: string }> {
    if (typeof key !== 'string' || key.length === 0 || key.includes('\0')) {
      throw new StorageError('INVALID_ARGUMENT', 'invalid space', { reason: 'invalid-path' });
    }
    const hit = this.shared.aliasCache.get(key);
    if (hit) return hit;
    for (const driver of this.drivers) {
      try {
        return this.remember(key, driver, await driver.getSpace(key));
      } catch (err) {
        if (!StorageError.is(err, 'NOT_FOUND') || this.drivers.length === 1) throw err;
      }
    }
    throw new StorageError('NOT_FOUND', `space "${printable(key)}" not found`);
  }

  private remember(key: string, driver: Driver, space: Space): { driver: Driver; spaceId: string } {
    const v = { driver, spaceId: space.id };
    if (this.shared.aliasCache.size > 10_000) this.shared.aliasCache.clear();
    this.shared.aliasCache.set(key, v);
    this.shared.spaceDriver.set(space.id, driver);
    this.noteFacts(space);
    return v;
  }

  private noteFacts(space: Space): SpaceFacts {
    const f: SpaceFacts = {
      ...(space.owner?.id && { ownerId: space.owner.id }),
      disabled: !!space.disabled,
      type: space.type,
      at: Date.now(),
    };
    this.shared.facts.set(space.id, f);
    return f;
  }

  private forget(space: Space): void {
    this.shared.aliasCache.delete(space.id);
    this.shared.aliasCache.delete(space.alias);
    this.shared.spaceDriver.delete(space.id);
    this.shared.facts.delete(space.id);
  }

  /** Owner and disabled state of a space, cached for 2 s (updates through this provider refresh it). */
  private async facts(driver: Driver, spaceId: string): Promise<SpaceFacts> {
    return this.factsNow(spaceId) ?? this.noteFacts(await driver.getSpace(spaceId));
  }

  private factsNow(spaceId: string): SpaceFacts | undefined {
    const f = this.shared.facts.get(spaceId);
    return f && Date.now() - f.at < FACTS_TTL_MS ? f : undefined;
  }

  // ================================================================ authorisation

  private isOwner(facts: SpaceFacts): boolean {
    return (
      this.principal !== undefined && facts.type === 'personal' && facts.ownerId === this.principal.userId
    );
  }

  /**
   * Inspect a node and work out what this provider's principal may do there. Throws NOT_FOUND when
   * the principal may not even see it (or the space is disabled and it is no manager of it).
   */
  private async access(
    driver: Driver,
    node: NodeRef,
    opts?: StatOptions,
  ): Promise<Inspected & { perms: Permissions; facts: SpaceFacts }> {
    const facts = this.factsNow(node.spaceId) ?? (await this.facts(driver, node.spaceId));
    const grants = driver.features.grants;
    let a: Inspected & { perms: Permissions; facts: SpaceFacts };
    if (!this.principal) {
      a = { info: await driver.stat(node, opts), inherited: [], perms: OWNER, facts };
    } else if (grants) {
      a = (await grants.inspect(node, opts)) as Inspected & { perms: Permissions; facts: SpaceFacts };
      a.facts = facts;
      a.perms = this.permissionsFor(a, facts);
    } else {
      // A driver that cannot store grants gives a user nothing but its own personal space.
      if (!this.isOwner(facts)) throw new Hidden();
      a = { info: await driver.stat(node, opts), inherited: [], perms: OWNER, facts };
    }
    // (for caches: when this answer, hidden or not, could change by a grant expiring)
    if (opts?.validity && this.principal)
      opts.validity.until = expiryAfter(Date.now(), [...a.inherited, a.info.grants ?? []]);
    if (!a.perms.stat) throw new Hidden();
    if (facts.disabled) {
      if (this.principal && !this.principal.admin && !manages(a.perms)) throw new Hidden();
      throw new StorageError('FAILED_PRECONDITION', 'the space is disabled', { reason: 'space-disabled' });
    }
    return a;
  }

  /**
   * Permissions of this provider's principal on an inspected node. The objects returned are frozen
   * and shared (one per principal and inherited chain): read them, never change them.
   */
  private permissionsFor(i: Inspected, facts: SpaceFacts): Permissions {
    if (!this.principal || this.isOwner(facts)) return OWNER;
    const base = this.chainPermissions(i.inherited);
    return i.info.grants?.length ? Object.freeze(applyOwnGrants(this.principal, base, i.info.grants)) : base;
  }

  private principalKey: string | undefined;

  private chainPermissions(chain: readonly (readonly Grant[])[]): Permissions {
    const p = this.principal!;
    this.principalKey ??= `${p.userId}\u0000${[...p.groups].sort().join('\u0000')}`;
    let byChain = this.shared.chainPerms.get(this.principalKey);
    if (!byChain) {
      if (this.shared.chainPerms.size > 10_000) this.shared.chainPerms.clear();
      byChain = new WeakMap();
      this.shared.chainPerms.set(this.principalKey, byChain);
    }
    const now = Date.now();
    const hit = byChain.get(chain);
    if (hit && hit.until > now) return hit.perms;
    const until = expiryAfter(now, chain);
    const perms = chain.some((grants) => deniesTo(p, grants, now))
      ? DENIED
      : Object.freeze(effectivePermissions(p, chain, false, now));
    byChain.set(chain, { perms, until });
    return perms;
  }

  /** Like {@link access}, and require permissions (PERMISSION_DENIED when missing). */
  private async require(
    driver: Driver,
    node: NodeRef,
    needed: readonly PermissionName[],
    opts?: StatOptions,
  ): Promise<Inspected & { perms: Permissions; facts: SpaceFacts }> {
    const a = await this.access(driver, node, opts);
    for (const p of needed) {
      if (!a.perms[p]) throw new StorageError('PERMISSION_DENIED', `not allowed: ${p}`);
    }
    return a;
  }

  /**
   * Inspect the parent of a node that may not exist yet, and require permissions there. Returns the
   * parent's permissions (everything for the system).
   */
  private async requireParent(
    driver: Driver,
    node: NodeRef,
    needed: readonly PermissionName[],
  ): Promise<Permissions> {
    if (!this.principal) return OWNER;
    try {
      return (await this.require(driver, await this.parentRef(driver, node), needed)).perms;
    } catch (err) {
      if (StorageError.is(err, 'NOT_FOUND')) {
        throw new StorageError('FAILED_PRECONDITION', 'parent folder does not exist', {
          reason: 'parent-missing',
        });
      }
      throw err;
    }
  }

  /** The parent of a node: from its path segments, or (an id without a path) from the node itself. */
  private async parentRef(driver: Driver, node: NodeRef): Promise<NodeRef> {
    if (node.segments.length) return { ...node, segments: node.segments.slice(0, -1) };
    const info = await driver.stat(node, { fields: ['parentId'] });
    if (!info.parentId) throw new StorageError('INVALID_ARGUMENT', 'the space root has no parent');
    return { spaceId: node.spaceId, nodeId: info.parentId.opaqueId, segments: [] };
  }

  /**
   * What is at a node for this principal: nothing, something it may not see, or the node with its
   * permissions. Writers must not replace what they cannot see.
   */
  private async probe(
    driver: Driver,
    node: NodeRef,
  ): Promise<
    | { state: 'missing' }
    | { state: 'hidden' }
    | ({ state: 'visible' } & Inspected & { perms: Permissions; facts: SpaceFacts })
  > {
    try {
      return { state: 'visible', ...(await this.access(driver, node, { fields: ['lock'] })) };
    } catch (err) {
      if (err instanceof Hidden) return { state: 'hidden' };
      if (StorageError.is(err, 'NOT_FOUND')) return { state: 'missing' };
      throw err;
    }
  }

  /**
   * Refuse to replace a node the principal cannot see. In a folder they cannot see either, the
   * answer is the one a missing node gets (the parent "does not exist"); in a folder they can see,
   * a plain PERMISSION_DENIED, nothing more said.
   */
  private async refuseHidden(driver: Driver, node: NodeRef, p: { state: string }): Promise<void> {
    if (p.state !== 'hidden') return;
    await this.requireParent(driver, node, []);
    throw new StorageError('PERMISSION_DENIED', 'not allowed');
  }

  /** What a move or copy with `overwrite` would replace: the principal may delete it (when it is there). */
  private async requireReplaceable(driver: Driver, node: NodeRef): Promise<void> {
    const target = await this.probe(driver, node);
    await this.refuseHidden(driver, node, target);
    if (target.state !== 'visible') return;
    if (!target.perms.delete) throw new StorageError('PERMISSION_DENIED', 'not allowed: delete');
    await this.requireRemovable(driver, node, target);
  }

  /**
   * A principal takes a node away (delete, move, replace) only from a folder they can see: the
   * folder a share of theirs starts at stays where its owner put it, for the others who share
   * it too (a recipient who wants it gone asks to leave the share). And a folder only with
   * nothing below it hidden from them: what they may not see is not theirs to send to the trash
   * (not walked for those who manage the node). The space's owner may, whatever grants say; the
   * system too.
   */
  private async requireRemovable(
    driver: Driver,
    node: NodeRef,
    a: Inspected & { perms: Permissions; facts: SpaceFacts },
  ): Promise<void> {
    if (!this.principal || this.isOwner(a.facts)) return;
    const parent = await this.parentRef(driver, node);
    const seen = await this.access(driver, parent, { fields: [] }).then(
      () => true,
      (err) => (err instanceof Hidden || StorageError.is(err, 'NOT_FOUND') ? false : Promise.reject(err)),
    );
    if (!seen)
      throw new StorageError(
        'PERMISSION_DENIED',
        'not allowed: a shared folder is its owner’s to remove or move',
      );
    // (those who manage it see what a deny hides in the trash anyway: their removals are not walked)
    if (a.info.type === 'folder' && !manages(a.perms))
      await this.requireTree(
        driver,
        node,
        a.perms,
        (p) => p.stat,
        'not allowed: something in that folder is hidden from you',
      );
  }

  private mutation<T extends MutationOptions>(opts: T | undefined): T {
    const o = { ...(opts ?? {}) } as T;
    if (this.principal) o.actor = this.principal.userId;
    return o;
  }

  /**
   * Locks taken through WebDAV on the folders above a node guard it through every door: one of
   * depth infinity guards everything below its folder, and any guards its folder's own members
   * being created, deleted or moved (`member`: the change is one of those; a function when that
   * depends on whether the node exists). The request proves it holds such a lock by one of its
   * tokens, as its lock id (`key`: `lockId`, or a move's `targetLockId`) or among `heldLockIds`
   * (LOCKED otherwise; see {@link checkLockAbove}). A lock id that named a lock above is not the
   * node's own: the options returned for the driver have it among the held ones instead. The
   * WebDAV door checks these itself, with its If header (its sessions' origin is `webdav`).
   */
  private async locksAbove<T extends MoveOptions>(
    driver: Driver,
    node: NodeRef,
    opts: T | undefined,
    member: boolean | (() => Promise<boolean>),
    key: 'lockId' | 'targetLockId' = 'lockId',
  ): Promise<T | undefined> {
    const locks = driver.features.locks;
    if (this.origin === 'webdav' || !locks) return opts;
    const segs = await this.segmentsFromRoot(driver, node);
    if (!segs) return opts; // (the driver answers for a node that is not there)
    let used: string | undefined;
    for (let n = segs.length - 1; n >= 0; n--) {
      const lock = await locks
        .get({ spaceId: node.spaceId, segments: segs.slice(0, n) })
        .catch(() => undefined);
      if (!lock) continue;
      const isMember = n === segs.length - 1 && (typeof member === 'function' ? await member() : member);
      const token = checkLockAbove(lock, isMember, opts?.[key], this.principal?.userId, opts?.heldLockIds);
      if (token !== undefined && token === opts?.[key]) used = token;
    }
    if (used === undefined || !opts) return opts;
    return { ...opts, [key]: undefined, heldLockIds: [...(opts.heldLockIds ?? []), used] };
  }

  /** The segments from its space's root to a node (undefined: no such node). */
  private async segmentsFromRoot(driver: Driver, node: NodeRef): Promise<readonly string[] | undefined> {
    if (node.nodeId === undefined || node.nodeId === node.spaceId) return node.segments;
    const base = await driver
      .stat({ spaceId: node.spaceId, nodeId: node.nodeId, segments: [] }, { fields: [] })
      .catch(() => undefined);
    return base && [...splitPath(base.path), ...node.segments];
  }

  /**
   * A new lock below a folder locked through WebDAV with depth infinity is a second lock on that
   * node (RFC 4918 §6.1): refused (LOCKED), but for a shared one on top of a shared one of the
   * same user's. The WebDAV door checks its LOCKs itself.
   */
  private async lockBelowLocks(driver: Driver, node: NodeRef, lock: Lock): Promise<void> {
    const locks = driver.features.locks;
    if (this.origin === 'webdav' || !locks) return;
    const segs = await this.segmentsFromRoot(driver, node);
    if (!segs) return; // (the driver answers for a node that is not there)
    const user = this.principal?.userId ?? lock.user;
    for (let n = segs.length - 1; n >= 0; n--) {
      const above = liveLock(
        await locks.get({ spaceId: node.spaceId, segments: segs.slice(0, n) }).catch(() => undefined),
      );
      if (!above || !guardsBelow(above, false)) continue;
      if (lock.type !== 'shared' || above.type !== 'shared' || (above.user && above.user !== user))
        throw new StorageError('LOCKED', 'a folder above is locked');
    }
  }

  // ---------------------------------------------------------------- events

  /** Run the before-hooks for a change (they may refuse it by throwing). */
  private async check(change: Omit<PendingChange, 'origin' | 'user'>): Promise<Annotation | undefined> {
    const bus = this.shared.events;
    if (!bus.active) return undefined;
    return bus.check({
      ...change,
      origin: this.origin,
      ...(this.principal && { user: this.principal.userId }),
    });
  }

  /** Set the metadata before-hooks asked for on what a change made (as the system: the hook decided). */
  private async annotate(driver: Driver, info: ResourceInfo, note: Annotation | undefined): Promise<void> {
    if (!note?.metadata || !Object.keys(note.metadata).length) return;
    if (!driver.features.metadata) return;
    await driver.features.metadata.set(
      { spaceId: info.id.spaceId, nodeId: info.id.opaqueId, segments: [] },
      note.metadata,
    );
  }

  /** Announce a change that happened. */
  private emit(e: Omit<StorageEvent, 'id' | 'at' | 'origin' | 'user'>): void {
    this.shared.events.emit({
      ...e,
      origin: this.origin,
      ...(this.principal && { user: this.principal.userId }),
    });
  }

  private emitSpace(type: StorageEvent['type'], space: Space): void {
    this.emit({
      type,
      storageId: space.storageId,
      spaceId: space.id,
      resourceId: space.root,
      path: '/',
      kind: 'folder',
    });
  }

  /** Announce a change of a resource that the driver call did not return (stat it, if anyone listens). */
  private async emitNode(type: StorageEvent['type'], driver: Driver, node: NodeRef): Promise<void> {
    if (!this.shared.events.active) return;
    const info = await driver.stat(node, { fields: ['parentId'] }).catch(() => undefined);
    if (info) this.emitInfo(type, info);
  }

  /** Announce a change of a resource, from its info. */
  private emitInfo(type: StorageEvent['type'], info: ResourceInfo, extra: Partial<StorageEvent> = {}): void {
    if (!this.shared.events.active) return;
    this.emit({
      type,
      storageId: info.id.storageId,
      spaceId: info.id.spaceId,
      resourceId: info.id,
      ...(info.parentId && { parentId: info.parentId }),
      path: info.path,
      kind: info.type,
      size: info.size,
      etag: info.etag,
      ...extra,
    });
  }

  /** Finish an info for the caller: permissions, and grants only when asked and allowed. */
  private present(info: ResourceInfo, perms: Permissions, opts?: StatOptions): ResourceInfo {
    const fields = opts?.fields ?? DEFAULT_FIELDS;
    // Drivers add grants last: deleting the last property added keeps the object's fast shape
    // (deleting any other one turns it into a dictionary, slower for every later read).
    if (!fields.includes('grants') || !perms.listGrants) delete info.grants;
    if (fields.includes('permissions')) info.permissions = perms;
    if (!perms.getPath) {
      // Without getPath (an uploader's file drop) the names above are not the caller's business.
      info.path = `/${info.name}`;
      delete info.parentId;
    }
    return info;
  }

  // ================================================================ spaces

  /** Spaces this provider's principal may see (all of them for the system), streamed. */
  async *listSpaces(filter?: ListSpacesFilter): AsyncGenerator<Space> {
    for (const driver of this.drivers) {
      for await (const space of driver.listSpaces({ ...filter, includeDisabled: filter?.includeDisabled })) {
        this.shared.spaceDriver.set(space.id, driver);
        const facts = this.noteFacts(space);
        if (!this.principal || (this.principal.admin && filter?.unrestricted !== false)) {
          yield space;
          continue;
        }
        const perms = await this.rootPermissions(driver, space, facts);
        if (!perms.stat) continue;
        if (space.disabled && !this.principal.admin && !manages(perms)) continue;
        yield space;
      }
    }
  }

  private async rootPermissions(driver: Driver, space: Space, facts: SpaceFacts): Promise<Permissions> {
    if (!this.principal) return { ...ALL };
    if (this.isOwner(facts)) return { ...ALL };
    const grants = driver.features.grants;
    if (!grants) return noPermissions();
    const inspected = await grants.inspect({ spaceId: space.id, segments: [] }, { fields: [] });
    return this.permissionsFor(inspected, facts);
  }

  /** A space by id or alias (`project/demo`), if this principal may see it. */
  async getSpace(idOrAlias: string): Promise<Space> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    const space = await driver.getSpace(spaceId);
    const facts = this.noteFacts(space);
    if (this.principal && !this.principal.admin) {
      const perms = await this.rootPermissions(driver, space, facts);
      if (!perms.stat || (space.disabled && !manages(perms))) {
        throw new StorageError('NOT_FOUND', `space "${printable(idOrAlias)}" not found`);
      }
    }
    return space;
  }

  /**
   * Create a space on the driver for `storageId` (default: the first driver). Sessions may create
   * their own personal space; project spaces need `admin` or `createSpaces`, and their creator and
   * the user named as `owner` (if any) become managers (not owners: a project space belongs to
   * nobody in particular, and its managers can change).
   */
  async createSpace(input: CreateSpaceInput, storageId = ''): Promise<Space> {
    const driver = this.driverFor(storageId);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot create spaces`);
    if (input.type !== 'personal' && input.type !== 'project') {
      throw new StorageError('INVALID_ARGUMENT', `unknown space type "${printable(input.type)}"`);
    }
    if (typeof input.name !== 'string' || input.name.trim() === '' || input.name.length > 255) {
      throw new StorageError('INVALID_ARGUMENT', 'a space needs a name of 1-255 characters');
    }
    if (input.quota !== undefined && !(Number.isSafeInteger(input.quota) && input.quota >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'quota must be a non-negative integer');
    }
    const p = this.principal;
    if (p && !p.admin) {
      if (input.type === 'personal') {
        // Nobody picks someone else's alias, owner or id: a session gets its own personal space.
        if (!this.user || input.owner?.id !== p.userId || input.id !== undefined) {
          throw new StorageError('PERMISSION_DENIED', 'only an admin creates personal spaces for others');
        }
        input = {
          ...input,
          alias: `personal/${this.user.username}`,
          owner: {
            id: this.user.id,
            username: this.user.username,
            ...(this.user.idp && { idp: this.user.idp }),
            ...(this.user.displayName && { displayName: this.user.displayName }),
          },
        };
      }
      if (input.type === 'project' && !p.createSpaces) {
        throw new StorageError('PERMISSION_DENIED', 'not allowed to create project spaces');
      }
      if (input.quota !== undefined) throw new StorageError('PERMISSION_DENIED', 'only an admin sets quotas');
      if (input.type === 'project' && input.owner && input.owner.id !== p.userId)
        throw new StorageError(
          'PERMISSION_DENIED',
          'only an admin names someone else as a project space’s owner',
        );
    }
    if (input.type === 'project' && input.owner && this.shared.identity) {
      // The owner becomes a manager: by the id the identity source knows (given an id or a name).
      const o = input.owner;
      const u =
        (await this.shared.identity.getUser(o.id)) ??
        (o.username ? await this.shared.identity.getUser(o.username) : undefined);
      if (!u) throw new StorageError('INVALID_ARGUMENT', `unknown owner "${printable(o.username ?? o.id)}"`);
      input = {
        ...input,
        owner: {
          id: u.id,
          username: u.username,
          ...(u.idp && { idp: u.idp }),
          ...(u.displayName && { displayName: u.displayName }),
        },
      };
    }
    await this.check({ op: 'space', spaceId: input.id ?? '' });
    const space = await feature.create(input);
    this.shared.spaceDriver.set(space.id, driver);
    this.noteFacts(space);
    this.emitSpace('space.created', space);
    if (input.type === 'project' && driver.features.grants) {
      const managers = new Set<string>();
      if (p) managers.add(p.userId);
      if (input.owner?.id) managers.add(input.owner.id);
      for (const id of managers) {
        await driver.features.grants.set(
          { spaceId: space.id, segments: [] },
          {
            grantee: { type: 'user', id },
            permissions: fromLetters(ROLES.manager),
            ...(p && { creator: p.userId }),
          },
        );
      }
    }
    return space;
  }

  /** This session's personal space, created on first use (`personal/<username>`). */
  async personalSpace(): Promise<Space> {
    if (!this.principal || !this.user) {
      throw new StorageError('FAILED_PRECONDITION', 'a personal space needs a session for a known user');
    }
    const alias = `personal/${this.user.username}`;
    try {
      return await this.getSpace(alias);
    } catch (err) {
      if (!StorageError.is(err, 'NOT_FOUND')) throw err;
    }
    try {
      return await this.createSpace({
        type: 'personal',
        name: this.user.displayName ?? this.user.username,
        alias,
        owner: {
          id: this.user.id,
          username: this.user.username,
          ...(this.user.idp && { idp: this.user.idp }),
          ...(this.user.displayName && { displayName: this.user.displayName }),
        },
      });
    } catch (err) {
      // Another request created it first.
      if (StorageError.is(err, 'ALREADY_EXISTS')) return this.getSpace(alias);
      throw err;
    }
  }

  /**
   * Change a space. Managers rename it, describe it, disable and restore it; only admins (and the
   * system) set quotas.
   */
  async updateSpace(idOrAlias: string, input: UpdateSpaceInput): Promise<Space> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot change spaces`);
    const current = await this.requireSpaceManager(driver, spaceId);
    if (
      input.disabled !== undefined &&
      current.type === 'personal' &&
      this.principal &&
      !this.principal.admin
    ) {
      throw new StorageError('PERMISSION_DENIED', 'only an admin disables or restores a personal space');
    }
    if (input.quota !== undefined && this.principal && !this.principal.admin) {
      throw new StorageError('PERMISSION_DENIED', 'only an admin sets quotas');
    }
    if (input.quota != null && !(Number.isSafeInteger(input.quota) && input.quota >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'quota must be a non-negative integer');
    }
    if (
      input.name !== undefined &&
      (typeof input.name !== 'string' || !input.name.trim() || input.name.length > 255)
    ) {
      throw new StorageError('INVALID_ARGUMENT', 'a space needs a name of 1-255 characters');
    }
    await this.check({ op: 'space', spaceId });
    const space = await feature.update(spaceId, input);
    this.noteFacts(space);
    this.emitSpace('space.updated', space);
    return space;
  }

  private async requireSpaceManager(driver: Driver, spaceId: string): Promise<Space> {
    const space = await driver.getSpace(spaceId);
    const facts = this.noteFacts(space);
    if (!this.principal || this.principal.admin) return space;
    const perms = await this.rootPermissions(driver, space, facts);
    if (!perms.stat) throw new StorageError('NOT_FOUND', 'space not found');
    if (!manages(perms))
      throw new StorageError('PERMISSION_DENIED', 'only a manager of the space may do that');
    return space;
  }

  /** Delete a space and everything in it. It must be disabled first (a second, deliberate step). */
  async deleteSpace(idOrAlias: string): Promise<void> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(idOrAlias);
    const feature = driver.features.spaces;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot delete spaces`);
    const space = await this.requireSpaceManager(driver, spaceId);
    if (!space.disabled) {
      throw new StorageError('FAILED_PRECONDITION', 'disable the space before deleting it', {
        reason: 'condition',
      });
    }
    await this.check({ op: 'space', spaceId });
    await feature.delete(spaceId);
    this.forget(space);
    this.emitSpace('space.deleted', space);
  }

  /**
   * A person leaves: disable their personal space (an admin can restore it), optionally remove
   * their grants. Project spaces, their files and their other managers are never touched.
   */
  async offboardUser(userId: string, opts: OffboardOptions = {}): Promise<void> {
    if (this.principal && !this.principal.admin)
      throw new StorageError('PERMISSION_DENIED', 'only an admin offboards users');
    for (const driver of this.drivers) {
      for await (const space of driver.listSpaces({ includeDisabled: true })) {
        if (space.type === 'personal' && space.owner?.id === userId && !space.disabled) {
          const updated = await driver.features.spaces!.update(space.id, { disabled: true });
          this.noteFacts(updated);
          this.emitSpace('space.updated', updated);
        }
        if (opts.removeGrants && driver.features.grants) await this.removeGrantsOf(driver, space.id, userId);
      }
    }
  }

  private async removeGrantsOf(driver: Driver, spaceId: string, userId: string): Promise<void> {
    const grants = driver.features.grants!;
    const grantee: Grantee = { type: 'user', id: userId };
    const walk = async (node: NodeRef): Promise<void> => {
      const own = await grants.list(node);
      if (own.some((g) => granteeKey(g.grantee) === granteeKey(grantee))) {
        await grants.remove(node, grantee);
        await this.emitNode('grant.changed', driver, node);
      }
      const info = await driver.stat(node, { fields: [] });
      if (info.type !== 'folder') return;
      for await (const child of driver.list(node, { fields: ['grants'] })) {
        if (child.type === 'folder' || child.grants?.length) {
          await walk({ spaceId, nodeId: child.id.opaqueId, segments: [] });
        }
      }
    };
    await walk({ spaceId, segments: [] });
  }

  // ================================================================ resources

  /**
   * A resource's info, by path or by id (`NOT_FOUND` when it is not there or the principal may
   * not see it: the same answer). `opts.fields` picks the costlier fields (checksums, grants,
   * lock, path, ...); `metadataKeys` the arbitrary metadata to read.
   */
  async stat(ref: Ref, opts?: StatOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    if (!this.principal) {
      await this.checkEnabled(driver, node);
      const info = await driver.stat(node, opts);
      if (opts?.validity) opts.validity.until = Number.POSITIVE_INFINITY;
      return info;
    }
    const a = await this.access(driver, node, opts);
    const info = this.present(a.info, a.perms, opts);
    const marks = await this.favoriteMarks(driver, opts);
    if (marks) info.favorite = marks.get(info.id.opaqueId) === info.id.spaceId;
    return info;
  }

  /** The session's favorites in a driver's storage, when the `favorite` field is asked for. */
  private async favoriteMarks(
    driver: Driver,
    opts?: StatOptions,
  ): Promise<ReadonlyMap<string, string> | undefined> {
    if (!this.principal || !opts?.fields?.includes('favorite')) return undefined;
    return driver.features.favorites?.list(this.principal.userId);
  }

  private async checkEnabled(driver: Driver, node: NodeRef): Promise<void> {
    if (this.principal) return; // sessions: access() decides, and says NOT_FOUND to non-managers
    if ((await this.facts(driver, node.spaceId)).disabled) {
      throw new StorageError('FAILED_PRECONDITION', 'the space is disabled', { reason: 'space-disabled' });
    }
  }

  /** Children of a folder, streamed; children the principal may not see are left out. */
  async *list(ref: Ref, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    if (!this.principal) {
      await this.checkEnabled(driver, node);
      yield* driver.list(node, opts);
      if (opts?.validity) opts.validity.until = Number.POSITIVE_INFINITY;
      return;
    }
    const folder = await this.require(driver, node, ['listContainer'], { fields: [] });
    const asked = opts?.fields ?? DEFAULT_FIELDS;
    const fields: Field[] = asked.includes('grants') ? [...asked] : [...asked, 'grants'];
    const presentOpts = asked.includes('grants') ? opts : { ...opts, fields: asked };
    const now = Date.now();
    let until = expiryAfter(now, [...folder.inherited, folder.info.grants ?? []]);
    const marks = await this.favoriteMarks(driver, opts);
    for await (const child of driver.list(node, { ...opts, fields })) {
      // Inherited = the folder's; only a child's own grants can add to it (or deny it).
      let perms = folder.perms;
      if (child.grants?.length) {
        perms = applyOwnGrants(this.principal, folder.perms, child.grants);
        until = Math.min(until, expiryAfter(now, [child.grants]));
      }
      if (!perms.stat) continue;
      const info = this.present(child, perms, presentOpts);
      if (marks) info.favorite = marks.get(info.id.opaqueId) === info.id.spaceId;
      yield info;
    }
    if (opts?.validity) opts.validity.until = until;
  }

  /**
   * A file's bytes, streamed: `opts.range` (pushed down to the driver), `opts.conditions`
   * (If-Match and the like, `FAILED_PRECONDITION` / not modified), `opts.signal` to stop early.
   * The result carries the info it was read at; destroy its `body` if not read to the end.
   */
  async read(ref: Ref, opts?: ReadOptions): Promise<ReadResult> {
    const { driver, node } = await this.resolve(ref);
    if (!this.principal) {
      await this.checkEnabled(driver, node);
      return driver.read(node, opts);
    }
    const a = await this.require(driver, node, ['initiateFileDownload'], { fields: [] });
    const r = await driver.read(node, opts);
    this.present(r.info, a.perms, opts);
    return r;
  }

  /**
   * Write a file from a stream, bytes or a string: in full or not at all (a temporary file,
   * synced and renamed into place). `opts.size` and `opts.checksums` are verified (nothing is
   * left on a mismatch), `opts.conditions` checked under the commit lock, `opts.mtime` kept; an
   * overwrite keeps the previous content as a version. The folder must exist.
   */
  async write(ref: Ref, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node);
    if (opts?.size !== undefined && !(Number.isSafeInteger(opts.size) && opts.size >= 0)) {
      throw new StorageError('INVALID_ARGUMENT', 'size must be a non-negative integer');
    }
    if (opts?.mtime !== undefined && !Number.isFinite(opts.mtime)) {
      throw new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds');
    }
    await this.checkEnabled(driver, node);
    let perms: Permissions = OWNER;
    let existed: boolean | undefined;
    if (this.principal) {
      const existing = await this.probe(driver, node);
      await this.refuseHidden(driver, node, existing);
      existed = existing.state === 'visible';
      if (existing.state === 'visible') {
        if (existing.info.type === 'file' && !existing.perms.initiateFileUpload) {
          throw new StorageError('PERMISSION_DENIED', 'not allowed: initiateFileUpload');
        }
        perms = existing.perms;
      } else {
        // A new file has no grants of its own: it has what its folder gives.
        perms = await this.requireParent(driver, node, ['initiateFileUpload']);
      }
    }
    let note: Annotation | undefined;
    if (this.shared.events.active) {
      note = await this.check({
        op: 'write',
        spaceId: node.spaceId,
        ...nodePath(node),
        ...(opts?.size !== undefined && { size: opts.size }),
      });
      existed ??= await driver.stat(node, { fields: [] }).then(
        () => true,
        () => false,
      );
    }
    // (creating the file is a change of its folder's members)
    const created = async () => {
      existed ??= await driver.stat(node, { fields: [] }).then(
        () => true,
        () => false,
      );
      return !existed;
    };
    const wo = await this.locksAbove(driver, node, opts, created);
    const info = await driver.write(node, body, this.mutation(wo));
    await this.annotate(driver, info, note);
    this.emitInfo(existed ? 'updated' : 'created', info);
    if (opts?.upload) this.emitInfo('upload.finished', info, opts.upload.id ? { key: opts.upload.id } : {});
    return this.principal ? this.present(info, perms) : info;
  }

  /** Make a folder (`ALREADY_EXISTS` when something is there; `opts.parents`: `mkdir -p`). */
  async mkdir(ref: Ref, opts?: MkdirOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node);
    await this.checkEnabled(driver, node);
    // (locks above once the user is known to be allowed there: they are nobody else's business)
    const mo = async (at: NodeRef) => this.mutation(await this.locksAbove(driver, at, opts, true));
    if (!opts?.parents) {
      await this.requireParent(driver, node, ['createContainer']);
      const note = await this.check({ op: 'mkdir', spaceId: node.spaceId, ...nodePath(node) });
      const made = await driver.mkdir(node, await mo(node));
      await this.annotate(driver, made, note);
      this.emitInfo('created', made);
      return made;
    }
    let last: ResourceInfo | undefined;
    for (let i = 1; i <= node.segments.length; i++) {
      const step: NodeRef = { ...node, segments: node.segments.slice(0, i) };
      const seen = this.principal ? await this.probe(driver, step) : undefined;
      if (seen) await this.refuseHidden(driver, step, seen);
      if (seen?.state === 'visible') {
        if (seen.info.type !== 'folder') {
          throw new StorageError('ALREADY_EXISTS', `"${step.segments.join('/')}" exists and is a file`);
        }
        last = this.present(seen.info, seen.perms);
        continue;
      }
      await this.requireParent(driver, step, ['createContainer']);
      try {
        const note = await this.check({ op: 'mkdir', spaceId: step.spaceId, ...nodePath(step) });
        last = await driver.mkdir(step, await mo(step));
        await this.annotate(driver, last, note);
        this.emitInfo('created', last);
      } catch (err) {
        if (!StorageError.is(err, 'ALREADY_EXISTS')) throw err;
        if (this.principal) {
          const again = await this.probe(driver, step);
          await this.refuseHidden(driver, step, again);
          if (again.state !== 'visible') throw err;
          last = this.present(again.info, again.perms);
        } else {
          last = await driver.stat(step);
        }
        if (last.type !== 'folder') {
          throw new StorageError('ALREADY_EXISTS', `"${step.segments.join('/')}" exists and is a file`);
        }
      }
    }
    return last!;
  }

  /** Delete a resource: into the space's trash when the driver has one (ids are kept). */
  async delete(ref: Ref, opts?: MutationOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    requireName(node, 'a space root cannot be deleted this way; disable and delete the space');
    await this.checkEnabled(driver, node);
    if (this.principal)
      await this.requireRemovable(driver, node, await this.require(driver, node, ['delete'], { fields: [] }));
    await this.check({ op: 'delete', spaceId: node.spaceId, ...nodePath(node) });
    const gone = await driver.delete(node, this.mutation(await this.locksAbove(driver, node, opts, true)));
    this.emitInfo(driver.features.trash ? 'trashed' : 'deleted', gone);
    return gone;
  }

  /**
   * Move or rename within a space, keeping the id (and so grants, versions, favorites).
   * `opts.overwrite` replaces what is at `dst` (to the trash); across spaces: copy and delete.
   */
  async move(src: Ref, dst: Ref, opts?: MoveOptions): Promise<ResourceInfo> {
    const a = await this.resolve(src);
    const b = await this.resolve(dst);
    requireName(a.node, 'a space root cannot be moved');
    requireName(b.node);
    if (a.driver !== b.driver || a.node.spaceId !== b.node.spaceId) {
      throw new StorageError('UNIMPLEMENTED', 'moving between spaces is not supported; copy and delete', {
        reason: 'cross-space',
      });
    }
    opts = landingTime(a.driver, opts);
    await this.checkEnabled(a.driver, a.node);
    if (this.principal) {
      const source = await this.require(a.driver, a.node, ['move'], { fields: [] });
      await this.requireRemovable(a.driver, a.node, source);
      await this.requireParent(b.driver, b.node, [
        source.info.type === 'folder' ? 'createContainer' : 'initiateFileUpload',
      ]);
      if (opts?.overwrite) await this.requireReplaceable(b.driver, b.node);
    }
    const before = this.shared.events.active
      ? await a.driver.stat(a.node, { fields: ['parentId'] })
      : undefined;
    await this.check({ op: 'move', spaceId: a.node.spaceId, ...nodePath(a.node), ...toPath(b.node) });
    const mo = await this.locksAbove(a.driver, a.node, opts, true);
    const moved = await a.driver.move(
      a.node,
      b.node,
      this.mutation(await this.locksAbove(b.driver, b.node, mo, true, 'targetLockId')),
    );
    this.emitInfo('moved', moved, {
      from: { ...(before?.parentId && { parentId: before.parentId }), ...(before && { path: before.path }) },
    });
    return moved;
  }

  /**
   * Copy a file or a folder with everything in it (`shallow`: a folder alone, with its metadata).
   * With `overwrite`, what is at `dst` is replaced: for a shallow copy, sent to the trash once the
   * copy's grants and hooks passed.
   */
  async copy(src: Ref, dst: Ref, opts?: CopyOptions): Promise<ResourceInfo> {
    const a = await this.resolve(src);
    const b = await this.resolve(dst);
    requireName(b.node);
    if (a.driver !== b.driver) {
      throw new StorageError('UNIMPLEMENTED', 'copying between storages is not supported yet', {
        reason: 'cross-space',
      });
    }
    const feature = a.driver.features.copy;
    if (!feature) throw new StorageError('UNIMPLEMENTED', `storage "${a.driver.storageId}" cannot copy`);
    opts = landingTime(a.driver, opts);
    await this.checkEnabled(a.driver, a.node);
    await this.checkEnabled(b.driver, b.node);
    const { shallow, ...moveOpts } = opts ?? {};
    let folder: boolean | undefined;
    if (this.principal) {
      const source = await this.require(a.driver, a.node, ['initiateFileDownload'], { fields: [] });
      folder = source.info.type === 'folder';
      if (folder && !shallow) {
        if (!source.perms.listContainer)
          throw new StorageError('PERMISSION_DENIED', 'not allowed: listContainer');
        await this.requireTree(
          a.driver,
          a.node,
          source.perms,
          (p, child) => p.initiateFileDownload && (child.type !== 'folder' || p.listContainer),
          'not allowed to read everything in that folder',
        );
      }
      await this.requireParent(b.driver, b.node, [
        source.info.type === 'folder' ? 'createContainer' : 'initiateFileUpload',
      ]);
      if (opts?.overwrite) await this.requireReplaceable(b.driver, b.node);
    }
    if (shallow) folder ??= (await a.driver.stat(a.node, { fields: [] })).type === 'folder';
    if (shallow && folder && opts?.mtime !== undefined) throw folderTimeRefused();
    await this.check({ op: 'copy', spaceId: b.node.spaceId, ...nodePath(a.node), ...toPath(b.node) });
    const co = (await this.locksAbove(b.driver, b.node, moveOpts, true)) ?? {};
    const copied =
      shallow && folder
        ? await this.copyFolderAlone(a.driver, a.node, b.node, co)
        : await feature.copy(a.node, b.node, this.mutation(co));
    if (this.shared.events.active) {
      const source = await a.driver.stat(a.node, { fields: [] }).catch(() => undefined);
      this.emitInfo('created', copied, source ? { copiedFrom: source.id } : {});
    }
    return copied;
  }

  /** A new folder at `dst` with the metadata of the folder `src` (checks made), replacing what is there. */
  private async copyFolderAlone(
    driver: Driver,
    src: NodeRef,
    dst: NodeRef,
    opts: MoveOptions,
  ): Promise<ResourceInfo> {
    const metadata = driver.features.metadata
      ? (await driver.stat(src, { fields: [], metadataKeys: '*' })).metadata
      : undefined;
    const { overwrite, targetLockId, ...lock } = opts;
    const inTheWay = await driver.stat(dst, { fields: [] }).catch((err) => {
      if (StorageError.is(err, 'NOT_FOUND')) return undefined;
      throw err;
    });
    const mo = this.mutation({ ...lock, lockId: targetLockId ?? lock.lockId });
    if (inTheWay) {
      if (!overwrite) throw new StorageError('ALREADY_EXISTS', `"${inTheWay.name}" already exists`);
      this.emitInfo(driver.features.trash ? 'trashed' : 'deleted', await driver.delete(dst, mo));
    }
    const made = await driver.mkdir(dst, mo);
    if (!metadata || !Object.keys(metadata).length) return made;
    const node: NodeRef = { spaceId: dst.spaceId, nodeId: made.id.opaqueId, segments: [] };
    await driver.features.metadata!.set(node, metadata, this.mutation({}));
    return driver.stat(node, { fields: [] });
  }

  /**
   * Walk a folder (`perms`: the principal's on it) and refuse with `message` at the first thing
   * in it whose permissions `ok` does not accept: a folder copy must not carry out what the
   * copier cannot read, nor a removal take away what the remover cannot see.
   */
  private async requireTree(
    driver: Driver,
    node: NodeRef,
    perms: Permissions,
    ok: (p: Permissions, child: ResourceInfo) => boolean,
    message: string,
  ): Promise<void> {
    for await (const child of driver.list(node, { fields: ['grants'] })) {
      const p = child.grants?.length ? applyOwnGrants(this.principal!, perms, child.grants) : perms;
      if (!ok(p, child)) throw new StorageError('PERMISSION_DENIED', message);
      if (child.type === 'folder')
        await this.requireTree(
          driver,
          { spaceId: node.spaceId, nodeId: child.id.opaqueId, segments: [] },
          p,
          ok,
          message,
        );
    }
  }

  /** Set arbitrary metadata keys (others are kept). */
  async setMetadata(
    ref: Ref,
    values: Readonly<Record<string, string>>,
    opts?: MutationOptions,
  ): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.metadata;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no arbitrary metadata`);
    checkMetadata(values);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    // What a resource carries stays bounded (it is read with every listing that asks for it).
    // Checked against what is there now: two concurrent calls may each pass, by one call's worth.
    const now = (await driver.stat(node, { fields: [], metadataKeys: '*' })).metadata ?? {};
    checkMetadataBound({ ...now, ...values });
    await this.check({ op: 'metadata', spaceId: node.spaceId, ...nodePath(node) });
    await feature.set(node, values, this.mutation(await this.locksAbove(driver, node, opts, false)));
    await this.emitNode('metadata.changed', driver, node);
  }

  /**
   * Set and remove metadata keys and set a file's modification time as one change, as a PROPPATCH
   * carries them. On a storage that can (`MetadataFeature.change`: the POSIX driver), all of it or
   * none, also when the process dies half way; elsewhere the parts are made one after the other,
   * and what the first ones changed is put back when a later one fails. Needs what
   * {@link setMetadata} and {@link setMtime} need; announced once, as `metadata.changed`.
   */
  async changeMetadata(ref: Ref, change: MetadataChange, opts?: MutationOptions): Promise<void> {
    const set = change.set ?? {};
    const unset = change.unset ?? [];
    const keys = [...Object.keys(set), ...unset];
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.metadata;
    if (!feature?.change || (change.mtime !== undefined && !driver.features.mtime)) {
      await this.changeMetadataInParts(ref, set, unset, keys, change.mtime, opts);
      return;
    }
    checkMetadata(set);
    for (const k of unset) checkMetadataKey(k);
    if (change.mtime !== undefined && !Number.isFinite(change.mtime))
      throw new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds');
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    if (Object.keys(set).length) {
      const now = (await driver.stat(node, { fields: [], metadataKeys: '*' })).metadata ?? {};
      const after: Record<string, string> = { ...now, ...set };
      for (const k of unset) delete after[k];
      checkMetadataBound(after);
    }
    await this.check({ op: 'metadata', spaceId: node.spaceId, ...nodePath(node) });
    await feature.change(
      node,
      { ...(keys.length && { set, unset }), ...(change.mtime !== undefined && { mtime: change.mtime }) },
      this.mutation(await this.locksAbove(driver, node, opts, false)),
    );
    await this.emitNode('metadata.changed', driver, node);
  }

  /** {@link changeMetadata} where the storage cannot make it one change. */
  private async changeMetadataInParts(
    ref: Ref,
    set: Readonly<Record<string, string>>,
    unset: readonly string[],
    keys: readonly string[],
    mtime: number | undefined,
    opts?: MutationOptions,
  ): Promise<void> {
    const before =
      keys.length && mtime !== undefined
        ? await this.stat(ref, { fields: [], metadataKeys: [...keys] })
        : undefined;
    if (Object.keys(set).length) await this.setMetadata(ref, set, opts);
    if (unset.length) await this.unsetMetadata(ref, unset, opts);
    if (mtime === undefined) return;
    try {
      await this.setMtime(ref, mtime, opts);
    } catch (err) {
      if (before) {
        const { set: back, unset: gone } = restoring(keys, before.metadata);
        if (Object.keys(back).length) await this.setMetadata(ref, back, opts).catch(() => {});
        if (gone.length) await this.unsetMetadata(ref, gone, opts).catch(() => {});
      }
      throw err;
    }
  }

  /** Remove arbitrary metadata keys. */
  async unsetMetadata(ref: Ref, keys: readonly string[], opts?: MutationOptions): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.metadata;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no arbitrary metadata`);
    for (const k of keys) checkMetadataKey(k);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    await this.check({ op: 'metadata', spaceId: node.spaceId, ...nodePath(node) });
    await feature.unset(node, keys, this.mutation(await this.locksAbove(driver, node, opts, false)));
    await this.emitNode('metadata.changed', driver, node);
  }

  /**
   * Mark a resource as one of the session's user's favorites, or unmark it (ownCloud's
   * `oc:favorite`). Marks are per user: nobody else sees them, and they change neither the
   * resource's etag nor its metadata. Seeing the resource is enough (a viewer may mark it). Needs a
   * session ({@link as}), and a storage with the `favorites` capability (else UNIMPLEMENTED).
   * Announced as `favorite.changed` (with the user) when something changed.
   */
  async setFavorite(ref: Ref, on: boolean): Promise<void> {
    if (!this.principal)
      throw new StorageError(
        'FAILED_PRECONDITION',
        'favorites belong to a user: use a session (storage.as(user))',
      );
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.favorites;
    if (!feature) throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" keeps no favorites`);
    const { info } = await this.access(driver, node, { fields: ['parentId'] });
    const marks = await feature.list(this.principal.userId);
    if ((marks.get(info.id.opaqueId) === info.id.spaceId) === on) return;
    await feature.set(this.principal.userId, info.id, on);
    this.emitInfo('favorite.changed', info, { user: this.principal.userId, favorite: on });
  }

  /**
   * The session's favorites that its user can still see, in every storage, streamed (in no
   * particular order). Marks of resources deleted since are left out (a resource restored from the
   * trash is a favorite again); so are those the user lost access to. Each info has `favorite: true`.
   */
  async *listFavorites(opts?: ListFavoritesOptions): AsyncGenerator<ResourceInfo> {
    if (!this.principal) return;
    // (each is one by construction: not looked up again per item, which would read the marks anew)
    const fields = (opts?.fields ?? DEFAULT_FIELDS).filter((f) => f !== 'favorite');
    const space = opts?.space;
    const only = space === undefined ? undefined : await this.spaceByIdOrAlias(space);
    let found = 0;
    for (const driver of this.drivers) {
      if (only && only.driver !== driver) continue;
      const marks = await driver.features.favorites?.list(this.principal.userId);
      for (const [opaqueId, spaceId] of marks ?? []) {
        if (only && spaceId !== only.spaceId) continue;
        opts?.signal?.throwIfAborted();
        const id = { storageId: driver.storageId, spaceId, opaqueId };
        try {
          const info = await this.stat({ resourceId: id }, { ...opts, fields });
          info.favorite = true;
          found++;
          yield info;
        } catch (err) {
          // gone, hidden from the user now, in a space disabled since (or not an id at all)
          if (!['NOT_FOUND', 'FAILED_PRECONDITION', 'INVALID_ARGUMENT'].includes((err as StorageError).code))
            throw err;
        }
      }
    }
    // Nothing in a space the user cannot see: as if it were missing. (Favorites in it, reached
    // through shares below its root, do tell that it exists, which the user knows then anyway.)
    // (a session's NOT_FOUND says no more than "not found", whichever it is)
    if (space !== undefined && !found) await this.getSpace(space);
  }

  /**
   * Set a file's modification time (ms since epoch) without rewriting it, as `touch -d` does: the
   * etag changes (of the file and of its folders), the content and checksums stay. Needs the right
   * to write the file; a folder is refused (FAILED_PRECONDITION, reason `is-folder`), as is a
   * time the storage cannot hold (INVALID_ARGUMENT). Announced as `metadata.changed`.
   */
  async setMtime(ref: Ref, mtime: number, opts?: MutationOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    const feature = driver.features.mtime;
    if (!feature)
      throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot set modification times`, {
        reason: 'mtime-unsupported',
      });
    if (!Number.isFinite(mtime))
      throw new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds');
    await this.checkEnabled(driver, node);
    const a = this.principal
      ? await this.require(driver, node, ['initiateFileUpload'], { fields: [] })
      : undefined;
    await this.check({ op: 'metadata', spaceId: node.spaceId, ...nodePath(node) });
    const info = await feature.set(
      node,
      mtime,
      this.mutation(await this.locksAbove(driver, node, opts, false)),
    );
    this.emitInfo('metadata.changed', info);
    return a ? this.present(info, a.perms) : info;
  }

  // ================================================================ grants

  private grantsOf(driver: Driver) {
    const g = driver.features.grants;
    if (!g) throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no grants`);
    return g;
  }

  /** Grants set directly on a resource. */
  async listGrants(ref: Ref): Promise<Grant[]> {
    const { driver, node } = await this.resolve(ref);
    const g = this.grantsOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['listGrants'], { fields: [] });
    return g.list(node);
  }

  /**
   * Add a grant (`addGrant`), or replace the grant of the same grantee (`updateGrant`). Nobody can
   * grant permissions they do not hold themselves.
   */
  async setGrant(ref: Ref, grant: Grant, opts?: MutationOptions): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const g = this.grantsOf(driver);
    const clean = checkGrant(grant);
    await this.checkEnabled(driver, node);
    if (this.principal) {
      const own = await g.list(node).catch(() => [] as Grant[]);
      const replaces = own.some((x) => granteeKey(x.grantee) === granteeKey(clean.grantee));
      const a = await this.require(
        driver,
        node,
        [clean.deny ? 'denyGrant' : replaces ? 'updateGrant' : 'addGrant'],
        {
          fields: [],
        },
      );
      if (!clean.deny && !includesAll(a.perms, clean.permissions)) {
        throw new StorageError('PERMISSION_DENIED', 'cannot grant permissions you do not hold');
      }
      clean.creator = this.principal.userId;
      await this.keepAManager(driver, node, own, clean.grantee, clean);
    }
    await this.check({ op: 'grant', spaceId: node.spaceId, ...nodePath(node) });
    await g.set(node, clean, this.mutation(await this.locksAbove(driver, node, opts, false)));
    await this.emitNode('grant.changed', driver, node);
  }

  /**
   * A project space must keep at least one manager: refuse a change of the root's grants (by a
   * non-admin) that would leave none. `replacement` is the new grant of `grantee`, or undefined when
   * it is removed.
   */
  private async keepAManager(
    driver: Driver,
    node: NodeRef,
    own: Grant[],
    grantee: Grantee,
    replacement?: Grant,
  ): Promise<void> {
    if (!this.principal || this.principal.admin) return;
    if (node.segments.length || (node.nodeId !== undefined && node.nodeId !== node.spaceId)) return;
    if ((await this.facts(driver, node.spaceId)).type !== 'project') return;
    const key = granteeKey(grantee);
    const after = [
      ...own.filter((g) => granteeKey(g.grantee) !== key),
      ...(replacement ? [replacement] : []),
    ];
    if ((await this.managersAmong(own)) > 0 && (await this.managersAmong(after)) === 0) {
      throw new StorageError('FAILED_PRECONDITION', 'a project space needs at least one manager', {
        reason: 'condition',
      });
    }
  }

  /**
   * How many grants among a space root's make a lasting manager: not expiring, not denied (for a
   * user: no deny on the user or, when the identity source knows them, on one of their groups).
   */
  private async managersAmong(grants: readonly Grant[]): Promise<number> {
    const denied = new Set(grants.filter((g) => g.deny).map((g) => granteeKey(g.grantee)));
    let n = 0;
    for (const g of grants) {
      if (g.deny || g.expires !== undefined || !manages(g.permissions) || denied.has(granteeKey(g.grantee)))
        continue;
      if (g.grantee.type === 'user' && this.shared.identity) {
        const user = await this.shared.identity.getUser(g.grantee.id);
        if (user?.groups?.some((id) => denied.has(`g:${id}`))) continue;
      }
      n++;
    }
    return n;
  }

  /** Deny a grantee everything on a resource and below (`denyGrant`). */
  async denyGrant(ref: Ref, grantee: Grantee, opts?: MutationOptions): Promise<void> {
    return this.setGrant(ref, { grantee, permissions: noPermissions(), deny: true }, opts);
  }

  /** Remove the grant of a grantee (`removeGrant`). */
  async removeGrant(ref: Ref, grantee: Grantee, opts?: MutationOptions): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const g = this.grantsOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) {
      await this.require(driver, node, ['removeGrant'], { fields: [] });
      await this.keepAManager(driver, node, await g.list(node), grantee);
    }
    await this.check({ op: 'grant', spaceId: node.spaceId, ...nodePath(node) });
    if (!(await g.remove(node, grantee, this.mutation(await this.locksAbove(driver, node, opts, false))))) {
      throw new StorageError('NOT_FOUND', 'no grant for that grantee here');
    }
    await this.emitNode('grant.changed', driver, node);
  }

  // ================================================================ locks

  private locksOf(driver: Driver) {
    const l = driver.features.locks;
    if (!l) throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no locks`);
    return l;
  }

  /** The live lock on a resource, if any (expired locks are gone). */
  async getLock(ref: Ref): Promise<Lock | undefined> {
    const { driver, node } = await this.resolve(ref);
    const l = this.locksOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['stat'], { fields: [] });
    return l.get(node);
  }

  /**
   * Lock a resource (CS3 semantics: `exclusive`, `write` or `shared`, with a lock id the caller
   * chooses and an optional expiry). `LOCKED` when another live lock is there.
   */
  async setLock(ref: Ref, lock: Lock): Promise<Lock> {
    const { driver, node } = await this.resolve(ref);
    const l = this.locksOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    await this.lockBelowLocks(driver, node, lock);
    await this.check({ op: 'lock', spaceId: node.spaceId, ...nodePath(node) });
    const set = await l.set(
      node,
      this.principal ? { ...lock, user: this.principal.userId } : lock,
      this.mutation({}),
    );
    await this.emitNode('lock.changed', driver, node);
    return set;
  }

  /** Extend or change a lock; its holder proves it with the lock id (or `existingLockId`). */
  async refreshLock(ref: Ref, lock: Lock, existingLockId?: string): Promise<Lock> {
    const { driver, node } = await this.resolve(ref);
    const l = this.locksOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    await this.check({ op: 'lock', spaceId: node.spaceId, ...nodePath(node) });
    const refreshed = await l.refresh(
      node,
      this.principal ? { ...lock, user: this.principal.userId } : lock,
      existingLockId,
    );
    await this.emitNode('lock.changed', driver, node);
    return refreshed;
  }

  /** Remove a lock by its id (a non-shared lock: its holder only). */
  async unlock(ref: Ref, lockId: string): Promise<void> {
    const { driver, node } = await this.resolve(ref);
    const l = this.locksOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['initiateFileUpload'], { fields: [] });
    await this.check({ op: 'lock', spaceId: node.spaceId, ...nodePath(node) });
    await l.unlock(node, lockId, this.mutation({}));
    await this.emitNode('lock.changed', driver, node);
  }

  // ================================================================ trash

  private trashOf(driver: Driver) {
    const t = driver.features.trash;
    if (!t) throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no trash`);
    return t;
  }

  private async spaceRoot(space: string): Promise<{ driver: Driver; root: NodeRef }> {
    const { driver, spaceId } = await this.spaceByIdOrAlias(space);
    return { driver, root: { spaceId, segments: [] } };
  }

  /**
   * Who sees which trash items. Space managers and admins see the whole trash; others (with
   * `listRecycle` on the space root) see an item when they could see it before it was deleted: the
   * folder it was deleted from lets them list it now, and no grant on the item (or on the deleted
   * folders it sits in) hides it. Items of a folder that no longer exists are left to managers.
   */
  private async trashView(
    driver: Driver,
    root: NodeRef,
    needed: PermissionName,
  ): Promise<{ all: boolean; perms: (item: RecycleItem | string) => Promise<Permissions | undefined> }> {
    if (!this.principal) return { all: true, perms: async () => OWNER };
    const a = await this.require(driver, root, [needed], { fields: [] });
    if (this.principal.admin || manages(a.perms)) return { all: true, perms: async () => a.perms };
    const t = this.trashOf(driver);
    const principal = this.principal;
    // Answers per folder (by id) and per deleted folder (by key): bounded, not one per item.
    const memo = new Map<string, Promise<Permissions | undefined>>();
    const remember = (k: string, make: () => Promise<Permissions | undefined>) => {
      let p = memo.get(k);
      if (!p) {
        if (memo.size >= 10_000) memo.clear();
        p = make();
        memo.set(k, p);
      }
      return p;
    };
    // The folder an item was deleted from, found by id: a folder recreated under the same name
    // (or one that no longer exists) shows nothing.
    const ofFolder = (id: string): Promise<Permissions | undefined> =>
      remember(`f:${id}`, () =>
        this.access(driver, { spaceId: root.spaceId, nodeId: id, segments: [] }, { fields: [] }).then(
          (x) => (x.info.type === 'folder' && x.perms.listContainer ? x.perms : undefined),
          (err) => {
            if (StorageError.is(err, 'NOT_FOUND')) return undefined;
            throw err;
          },
        ),
      );
    const compute = async (it: RecycleItem): Promise<Permissions | undefined> => {
      const cut = it.key.lastIndexOf('/');
      const above =
        cut < 0
          ? it.parentId && (await ofFolder(it.parentId.opaqueId))
          : await ofKey(it.key.slice(0, cut)).then((x) => (x?.listContainer ? x : undefined));
      if (!above) return undefined;
      const perms = it.grants?.length ? applyOwnGrants(principal, above, it.grants) : above;
      return perms.stat ? perms : undefined;
    };
    const ofKey = (key: string): Promise<Permissions | undefined> =>
      remember(`k:${key}`, async () => compute(await t.get(root.spaceId, key)));
    const ofItem = (item: RecycleItem | string) => (typeof item === 'string' ? ofKey(item) : compute(item));
    return { all: false, perms: ofItem };
  }

  /** An item as a caller gets it: its grants only for those who may list them. */
  private presentItem(item: RecycleItem, perms: Permissions): RecycleItem {
    if (!this.principal) return item;
    if (!perms.listGrants) delete item.grants;
    if (!perms.getPath) {
      // As for live resources: without getPath the folders above are not the caller's business.
      item.path = `/${item.path.slice(item.path.lastIndexOf('/') + 1)}`;
      delete item.parentId;
    }
    return item;
  }

  /** Items in a space's trash (or, with `key`, inside a deleted folder) that the caller may see. */
  async *listTrash(space: string, opts?: { key?: string }): AsyncGenerator<RecycleItem> {
    const { driver, root } = await this.spaceRoot(space);
    const t = this.trashOf(driver);
    await this.checkEnabled(driver, root);
    const view = await this.trashView(driver, root, 'listRecycle');
    if (opts?.key !== undefined && !view.all) {
      const folder = await view.perms(String(opts.key).replace(/\/+$/, ''));
      if (!folder?.listContainer) throw new Hidden();
    }
    for await (const item of t.list(root.spaceId, opts)) {
      const perms = await view.perms(item);
      if (perms) yield this.presentItem(item, perms);
    }
  }

  /** One trash item (by its key) that the caller may see; NOT_FOUND otherwise. */
  async statTrash(space: string, key: string): Promise<RecycleItem> {
    const { driver, root } = await this.spaceRoot(space);
    await this.checkEnabled(driver, root);
    const { item, perms } = await this.visibleItem(driver, root, key, 'listRecycle');
    return this.presentItem(item, perms);
  }

  /** A trash item the caller may see (NOT_FOUND otherwise), with what they may do with it. */
  private async visibleItem(
    driver: Driver,
    root: NodeRef,
    key: string,
    needed: PermissionName,
  ): Promise<{ item: RecycleItem; perms: Permissions }> {
    const view = await this.trashView(driver, root, needed);
    const item = await this.trashOf(driver).get(root.spaceId, String(key).replace(/\/+$/, ''));
    const perms = await view.perms(item);
    if (!perms) throw new Hidden();
    return { item, perms };
  }

  /**
   * Restore a trash item where it was, or at `target`; it keeps its id. With `overwrite`, what is
   * in the way goes to the trash first (its lock's id in `lockId`), and only once the restore is
   * known to be allowed: a refused restore changes nothing.
   */
  async restoreTrash(
    space: string,
    key: string,
    opts?: { target?: Ref; overwrite?: boolean } & MutationOptions,
  ): Promise<ResourceInfo> {
    const { driver, root } = await this.spaceRoot(space);
    const t = this.trashOf(driver);
    await this.checkEnabled(driver, root);
    let target: NodeRef | undefined;
    if (opts?.target !== undefined) {
      const r = await this.resolve(opts.target);
      if (r.driver !== driver || r.node.spaceId !== root.spaceId) {
        throw new StorageError('UNIMPLEMENTED', 'restoring into another space is not supported', {
          reason: 'cross-space',
        });
      }
      requireName(r.node);
      target = r.node;
    }
    let item: RecycleItem | undefined;
    if (this.principal) {
      const visible = await this.visibleItem(driver, root, key, 'restoreRecycleItem');
      item = visible.item;
      // Restoring elsewhere moves it: what one may not move out of its folder stays there.
      if (target && !visible.perms.move) throw new StorageError('PERMISSION_DENIED', 'not allowed: move');
      // Putting it back is creating it there: the destination folder must allow that.
      const dest = target ?? { spaceId: root.spaceId, segments: splitPath(item.path) };
      await this.requireParent(driver, dest, [
        item.type === 'folder' ? 'createContainer' : 'initiateFileUpload',
      ]);
    }
    const { target: _ignored, overwrite, ...rest } = opts ?? {};
    await this.check({ op: 'restore', spaceId: root.spaceId, ...(target && nodePath(target)) });
    if (overwrite) {
      item ??= await t.get(root.spaceId, String(key).replace(/\/+$/, ''));
      // (a delete of its own: its grants, lock and before-hooks are checked as for any delete)
      await this.delete(opts?.target ?? { space: root.spaceId, path: item.path }, rest).catch((err) => {
        if (!StorageError.is(err, 'NOT_FOUND')) throw err;
      });
    }
    // Putting it back creates a member of its folder there.
    item ??= target ? undefined : await t.get(root.spaceId, String(key).replace(/\/+$/, ''));
    const dest = target ?? { spaceId: root.spaceId, segments: splitPath(item!.path) };
    const ro = (await this.locksAbove(driver, dest, rest, true)) ?? {};
    const info = await t.restore(root.spaceId, key, { ...this.mutation(ro), ...(target && { target }) });
    this.emitInfo('restored', info, { key });
    if (!this.principal) return info;
    return this.present(
      info,
      (
        await this.access(
          driver,
          { spaceId: root.spaceId, nodeId: info.id.opaqueId, segments: [] },
          { fields: [] },
        )
      ).perms,
    );
  }

  /**
   * Remove a trash item for good, or (no key) empty the trash: all of it for managers, what the
   * caller sees for others.
   */
  async purgeTrash(space: string, key?: string): Promise<void> {
    const { driver, root, t } = await this.trashToPurge(space);
    if (key !== undefined) {
      const item = this.principal
        ? (await this.visibleItem(driver, root, key, 'purgeRecycle')).item
        : undefined;
      await t.purge(root.spaceId, key);
      this.announcePurged(driver, root, item, key);
      return;
    }
    const view = await this.trashView(driver, root, 'purgeRecycle');
    if (view.all) {
      await t.purge(root.spaceId);
      this.announcePurged(driver, root);
      return;
    }
    await this.purgeItems(driver, root, view, () => true);
  }

  /**
   * Remove for good what was deleted before `deletedBefore` (ms since epoch): from one space's
   * trash, or (no space) from the trash of every space the caller sees and may purge in, disabled
   * ones and those of drivers without a trash passed over. Only items the caller may purge go,
   * each announced as `deleted`; items inside a deleted folder go with it. Returns how many went.
   * `stowage serve --trash-retention` runs this for the system.
   */
  async expireTrash(deletedBefore: number, space?: string): Promise<number> {
    if (!Number.isFinite(deletedBefore))
      throw new StorageError('INVALID_ARGUMENT', 'deletedBefore must be a finite number of milliseconds');
    const old = (item: RecycleItem) => item.deleted < deletedBefore;
    if (space !== undefined) {
      const { driver, root } = await this.trashToPurge(space);
      return this.purgeItems(driver, root, await this.trashView(driver, root, 'purgeRecycle'), old);
    }
    let n = 0;
    for await (const s of this.listSpaces()) {
      const driver = this.driverFor(s.storageId);
      if (s.disabled || !driver.features.trash) continue;
      n += await this.expireTrash(deletedBefore, s.id).catch((err: unknown) => {
        // (one whose trash the caller may not purge, or disabled or deleted since it was listed)
        const skip = ['PERMISSION_DENIED', 'NOT_FOUND', 'FAILED_PRECONDITION'] as const;
        if (skip.some((c) => StorageError.is(err, c))) return 0;
        throw err;
      });
    }
    return n;
  }

  /** A space's trash, about to be purged in: it has one, it is enabled, the before-hooks agree. */
  private async trashToPurge(
    space: string,
  ): Promise<{ driver: Driver; root: NodeRef; t: ReturnType<StorageProvider['trashOf']> }> {
    const { driver, root } = await this.spaceRoot(space);
    const t = this.trashOf(driver);
    await this.checkEnabled(driver, root);
    await this.check({ op: 'purge', spaceId: root.spaceId });
    return { driver, root, t };
  }

  /**
   * Purge, one by one, the items of a space's trash that `wanted` picks and the caller may purge
   * (`view`); each is announced as `deleted`. Returns how many went.
   */
  private async purgeItems(
    driver: Driver,
    root: NodeRef,
    view: Awaited<ReturnType<StorageProvider['trashView']>>,
    wanted: (item: RecycleItem) => boolean,
  ): Promise<number> {
    const t = this.trashOf(driver);
    let n = 0;
    for await (const item of t.list(root.spaceId)) {
      if (!wanted(item) || !(await view.perms(item))) continue;
      const ok = await t.purge(root.spaceId, item.key).then(
        () => true,
        (err: unknown) => {
          if (!StorageError.is(err, 'NOT_FOUND')) throw err; // purged meanwhile
          return false;
        },
      );
      if (!ok) continue;
      n++;
      this.announcePurged(driver, root, item, item.key);
    }
    return n;
  }

  /** A purge, announced as `deleted`: of one item (by its key), or of the whole trash. */
  private announcePurged(driver: Driver, root: NodeRef, item?: RecycleItem, key?: string): void {
    this.emit({
      type: 'deleted',
      storageId: driver.storageId,
      spaceId: root.spaceId,
      ...(item && { resourceId: item.id, path: item.path, kind: item.type, size: item.size }),
      ...(key !== undefined && { key }),
    });
  }

  // ================================================================ versions

  private versionsOf(driver: Driver) {
    const v = driver.features.versions;
    if (!v) throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" has no versions`);
    return v;
  }

  /** Previous contents of a file, newest first. */
  async listVersions(ref: Ref): Promise<FileVersion[]> {
    const { driver, node } = await this.resolve(ref);
    const v = this.versionsOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['listFileVersions'], { fields: [] });
    return v.list(node);
  }

  /** The content of a version. */
  async readVersion(ref: Ref, key: string, opts?: ReadOptions): Promise<ReadResult> {
    const { driver, node } = await this.resolve(ref);
    const v = this.versionsOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal)
      await this.require(driver, node, ['listFileVersions', 'initiateFileDownload'], { fields: [] });
    return v.read(node, key, opts);
  }

  /** Make a version current; the current content becomes a version. */
  async restoreVersion(ref: Ref, key: string, opts?: MutationOptions): Promise<ResourceInfo> {
    const { driver, node } = await this.resolve(ref);
    const v = this.versionsOf(driver);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['restoreFileVersion'], { fields: [] });
    await this.check({ op: 'restore', spaceId: node.spaceId, ...nodePath(node) });
    const restored = await v.restore(
      node,
      key,
      this.mutation(await this.locksAbove(driver, node, opts, false)),
    );
    this.emitInfo('updated', restored, { key });
    return restored;
  }

  // ================================================================ quota

  /** The quota of the space a resource is in. */
  async getQuota(ref: Ref): Promise<QuotaInfo> {
    const { driver, node } = await this.resolve(ref);
    await this.checkEnabled(driver, node);
    if (this.principal) await this.require(driver, node, ['getQuota'], { fields: [] });
    const space = await driver.getSpace(node.spaceId);
    const free = await driver.features.quota?.free?.(node.spaceId).catch(() => undefined);
    const usage = space.usage && { usage: { ...space.usage } };
    if (space.quota === undefined)
      return { used: space.used, ...(free !== undefined && { available: free }), ...usage };
    const remaining = Math.max(0, space.quota - space.used);
    return {
      total: space.quota,
      used: space.used,
      ...usage,
      remaining,
      available: free === undefined ? remaining : Math.min(remaining, free),
    };
  }

  /**
   * Observe changes made around Stowage (scanners, instruments, rsync, admins writing into the
   * storage) in every driver that can (`features.watch`): each change is assimilated (ids,
   * checksums, sizes, etags), vetted first by the before-hooks (a refused file or folder goes to the
   * trash, announced as `trashed` with the reason), and announced on {@link events} with origin
   * `external`. What changed while nobody watched is found first (`ready`). The system provider's only.
   */
  watch(opts: ObserveOptions = {}): Observation {
    const bus = this.shared.events;
    const watches: Watch[] = [];
    for (const d of this.drivers) {
      if (!d.features.watch) continue;
      watches.push(
        d.features.watch.start({
          ...opts,
          onChange: (c) => bus.emit({ ...c, origin: 'external' }),
          onStale: (spaceId, paths, inPlace) => bus.stale(d.storageId, spaceId, paths, inPlace),
          vet: (change) => bus.check(change),
        }),
      );
    }
    return {
      ready: Promise.all(watches.map((w) => w.ready)).then(() => {}),
      rescan: () => Promise.all(watches.map((w) => w.rescan())).then(() => {}),
      idle: () => Promise.all(watches.map((w) => w.idle())).then(() => {}),
      stats: () => {
        const total: WatchStats = { watchedFolders: 0, pending: 0, changes: 0, scans: 0, lost: 0 };
        for (const w of watches) {
          const s = w.stats();
          for (const k of Object.keys(total) as (keyof WatchStats)[]) total[k] += s[k];
        }
        return total;
      },
      close: () => Promise.all(watches.map((w) => w.close())).then(() => {}),
      drivers: watches.length,
    };
  }

  /** Close every driver (sessions share them: close the provider once). */
  async close(): Promise<void> {
    await Promise.all(this.drivers.map((d) => d.close()));
  }
}

/** The earliest expiry after `now` among grants (Infinity when none expires). */
function expiryAfter(now: number, chain: readonly (readonly Grant[])[]): number {
  let until = Number.POSITIVE_INFINITY;
  for (const grants of chain)
    for (const g of grants)
      if (g.expires !== undefined && g.expires > now) until = Math.min(until, g.expires);
  return until;
}

/** True when permissions include managing membership (a space manager). */
function manages(p: Permissions): boolean {
  return p.addGrant && p.removeGrant && p.updateGrant;
}

/**
 * What a session does not hand out: the drivers and the identity source (unauthorised access),
 * `as` (acting as someone else) and `close` (closing drivers other sessions use).
 */
const SYSTEM_ONLY: ReadonlySet<PropertyKey> = new Set([
  'events',
  'watch',
  'drivers',
  'driverFor',
  'resolve',
  'identity',
  'as',
  'close',
]);

/**
 * A session as its caller holds it: every NOT_FOUND it throws reads the same ("not found", no
 * reason), so an answer never tells what exists but is hidden from what does not exist; and what
 * would step around authorisation is refused.
 */
function sealed(session: StorageProvider): StorageProvider {
  const plain = (err: unknown): unknown =>
    StorageError.is(err, 'NOT_FOUND') ? new StorageError('NOT_FOUND', 'not found') : err;
  async function* guard<T>(it: AsyncGenerator<T>): AsyncGenerator<T> {
    try {
      return yield* it;
    } catch (err) {
      throw plain(err);
    }
  }
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(session, {
    get(target, prop) {
      if (SYSTEM_ONLY.has(prop)) {
        throw new StorageError(
          'PERMISSION_DENIED',
          `${String(prop)} is for the system provider, not a session`,
        );
      }
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || prop === 'constructor') return value;
      let w = wrapped.get(prop);
      if (!w) {
        const fn = value as (...args: unknown[]) => unknown;
        w = (...args: unknown[]): unknown => {
          let out: unknown;
          try {
            out = fn.apply(target, args);
          } catch (err) {
            throw plain(err);
          }
          if (out instanceof Promise) return out.catch((err: unknown) => Promise.reject(plain(err)));
          if (
            out &&
            typeof out === 'object' &&
            Symbol.asyncIterator in out &&
            typeof (out as AsyncGenerator<unknown>).next === 'function'
          ) {
            return guard(out as AsyncGenerator<unknown>);
          }
          return out;
        };
        wrapped.set(prop, w);
      }
      return w;
    },
  });
}

/**
 * The permissions of a principal denied somewhere above or here: none, and none below either,
 * whatever is granted further down (one frozen object, told apart by identity).
 */
const DENIED: Permissions = Object.freeze(noPermissions());

/** Whether `grants` hold a deny, unexpired, for the principal. */
function deniesTo(principal: Principal, grants: readonly Grant[], now = Date.now()): boolean {
  return grants.some(
    (g) =>
      g.deny &&
      (g.expires === undefined || g.expires > now) &&
      ((g.grantee.type === 'user' && g.grantee.id === principal.userId) ||
        (g.grantee.type === 'group' && principal.groups.includes(g.grantee.id))),
  );
}

/**
 * Permissions on a node from those it inherits and its own grants: an owner's stay whole; a deny,
 * here or inherited, leaves none (a grant below a deny does not lift it); else the union.
 */
function applyOwnGrants(principal: Principal, inherited: Permissions, own: readonly Grant[]): Permissions {
  if (inherited === OWNER) return OWNER; // an owner's, whatever grants say (as stat has it)
  if (inherited === DENIED || deniesTo(principal, own)) return DENIED;
  const extra = effectivePermissions(principal, [own]);
  const out = { ...inherited };
  for (const k of Object.keys(extra) as PermissionName[]) if (extra[k]) out[k] = true;
  return out;
}

/** Largest arbitrary-metadata value accepted, in UTF-8 bytes. */
export const MAX_METADATA_VALUE_BYTES = 64 * 1024;
/** Most arbitrary-metadata keys one resource keeps. */
export const MAX_METADATA_KEYS = 1000;
/** Most arbitrary metadata one resource keeps, keys and values in UTF-8 bytes. */
export const MAX_METADATA_BYTES = 1024 * 1024;

/** Refuse a metadata key that no storage keeps (empty, over 255 bytes, NUL). */
export function checkMetadataKey(k: string): void {
  if (typeof k !== 'string' || k.length === 0 || Buffer.byteLength(k) > 255 || k.includes('\0')) {
    throw new StorageError('INVALID_ARGUMENT', `invalid metadata key "${printable(k)}"`);
  }
}

/** The change that puts `keys` back as `was` held them (those it did not hold are removed). */
export function restoring(
  keys: readonly string[],
  was: Readonly<Record<string, string>> = {},
): { set: Record<string, string>; unset: string[] } {
  const set: Record<string, string> = {};
  for (const k of keys) if (was[k] !== undefined) set[k] = was[k];
  return { set, unset: keys.filter((k) => was[k] === undefined) };
}

/** What a resource carries stays bounded (it is read with every listing that asks for it). */
function checkMetadataBound(after: Readonly<Record<string, string>>): void {
  let bytes = 0;
  for (const [k, v] of Object.entries(after)) bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  if (Object.keys(after).length > MAX_METADATA_KEYS || bytes > MAX_METADATA_BYTES) {
    throw new StorageError(
      'INVALID_ARGUMENT',
      `a resource keeps at most ${MAX_METADATA_KEYS} metadata keys and ${MAX_METADATA_BYTES >> 10} KiB of them`,
      { reason: 'metadata-too-large' },
    );
  }
}

/** Refuse metadata that no storage keeps (see {@link checkMetadataKey}; values over 64 KiB). */
export function checkMetadata(values: Readonly<Record<string, string>>): void {
  if (values === null || typeof values !== 'object') {
    throw new StorageError('INVALID_ARGUMENT', 'metadata must be an object of strings');
  }
  for (const [k, v] of Object.entries(values)) {
    checkMetadataKey(k);
    if (typeof v !== 'string' || v.includes('\0')) {
      throw new StorageError('INVALID_ARGUMENT', `metadata "${printable(k)}" must be a string without NUL`);
    }
    if (Buffer.byteLength(v) > MAX_METADATA_VALUE_BYTES) {
      throw new StorageError('INVALID_ARGUMENT', `metadata "${printable(k)}" is over 64 KiB`, {
        reason: 'metadata-too-large',
      });
    }
  }
}

/**
 * A move's or copy's `mtime`: a finite time, for a driver that can set one (the options without
 * it when the driver cannot and `mtimeBestEffort` says so).
 */
function landingTime<T extends MoveOptions>(driver: Driver, opts: T | undefined): T | undefined {
  if (opts?.mtime === undefined) return opts;
  if (!Number.isFinite(opts.mtime))
    throw new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds');
  if (driver.features.mtime) return opts;
  if (opts.mtimeBestEffort) {
    const { mtime: _, ...rest } = opts;
    return rest as T;
  }
  throw new StorageError('UNIMPLEMENTED', `storage "${driver.storageId}" cannot set modification times`, {
    reason: 'mtime-unsupported',
  });
}

function requireName(node: NodeRef, message = 'the space root cannot be replaced'): void {
  if (node.segments.length === 0 && (node.nodeId === undefined || node.nodeId === node.spaceId)) {
    throw new StorageError('INVALID_ARGUMENT', message, { reason: 'invalid-path' });
  }
  for (const s of node.segments) checkName(s);
}

function checkResourceId(id: ResourceId): ResourceId {
  if (
    !id ||
    typeof id.spaceId !== 'string' ||
    typeof id.opaqueId !== 'string' ||
    !id.spaceId ||
    !id.opaqueId ||
    (id.storageId !== undefined && typeof id.storageId !== 'string')
  ) {
    throw new StorageError('INVALID_ARGUMENT', 'invalid resource id', { reason: 'invalid-path' });
  }
  for (const part of [id.storageId ?? '', id.spaceId, id.opaqueId]) {
    if (part.includes('\0') || part.includes('/') || part.length > 512) {
      throw new StorageError('INVALID_ARGUMENT', 'invalid resource id', { reason: 'invalid-path' });
    }
  }
  return { storageId: id.storageId ?? '', spaceId: id.spaceId, opaqueId: id.opaqueId };
}

/**
 * Parse a reference string: `/alias/path` (absolute) or `storage$space!node/rel/path` (id-based).
 */
export function parseRefString(s: string): Reference {
  if (typeof s !== 'string' || s.length === 0) {
    throw new StorageError('INVALID_ARGUMENT', 'a reference is required', { reason: 'invalid-path' });
  }
  if (s.startsWith('/')) return { path: s };
  const slash = s.indexOf('/');
  const idPart = slash < 0 ? s : s.slice(0, slash);
  const rest = slash < 0 ? '' : s.slice(slash + 1);
  return { resourceId: parseResourceId(idPart), path: rest };
}

/** The path a change names, for before-hooks (absent for references by id). */
function nodePath(node: NodeRef): { path?: string } {
  return node.nodeId ? {} : { path: `/${node.segments.join('/')}` };
}

/** A move's or copy's destination, for before-hooks. */
function toPath(node: NodeRef): { to?: string } {
  return node.nodeId ? {} : { to: `/${node.segments.join('/')}` };
}
