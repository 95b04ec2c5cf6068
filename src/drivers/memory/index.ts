/**
 * The memory driver: the reference implementation of Stowage's semantics, kept in plain maps.
 * Every other driver must answer the conformance suite the way this one does.
 *
 * @module stowage/drivers/memory
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { bodyChunks } from '../../core/body.js';
import { ChecksumAccumulator, verifyChecksums } from '../../core/checksums.js';
import { checkWriteConditions, evaluateConditions, rangeToServe } from '../../core/conditions.js';
import type { Body, Driver, Features, Inspected, MutationOptions } from '../../core/driver.js';
import { folderTimeRefused, StorageError } from '../../core/errors.js';
import { fileEtag, folderEtag, nextTreeTime } from '../../core/etag.js';
import {
  checkLockChange,
  checkLockFor,
  checkLockInside,
  liveLock,
  lockAfter,
  newLock,
} from '../../core/locks.js';
import { FOLDER_MIME_TYPE, mimeTypeOf } from '../../core/mime.js';
import { type Grant, type Grantee, granteeKey } from '../../core/permissions.js';
import { checkName, printable, slugify } from '../../core/refs.js';
import type {
  Checksums,
  CreateSpaceInput,
  FileVersion,
  ListOptions,
  Lock,
  LockOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
  RecycleItem,
  ResourceId,
  ResourceInfo,
  Space,
  SpaceFilter,
  StatOptions,
  UpdateSpaceInput,
  WriteOptions,
} from '../../core/types.js';
import { DEFAULT_FIELDS } from '../../core/types.js';

/** Options for {@link createMemoryDriver}. */
export interface MemoryDriverOptions {
  /** Storage id; a random UUID by default. */
  storageId?: string;
  /** Versions kept per file (default 10; 0 keeps none). */
  keepVersions?: number;
}

interface MVersion {
  key: string;
  content: Buffer;
  mtime: number;
  checksums: Required<Checksums>;
}

interface MBase {
  id: string;
  name: string;
  /** When it came to be (ms). */
  created: number;
  metadata: Map<string, string>;
  grants: Map<string, Grant>;
  lock?: Lock;
}

interface MFile extends MBase {
  kind: 'file';
  parent: MFolder;
  content: Buffer;
  mtime: number;
  /** When its content or time last changed here (ms): its mtime may be set to any time. */
  changed: number;
  checksums: Required<Checksums>;
  versions: MVersion[];
}

interface MFolder extends MBase {
  kind: 'folder';
  parent?: MFolder;
  children: Map<string, MNode>;
  treeSize: number;
  treeTime: number;
}

type MNode = MFile | MFolder;

interface MTrash {
  node: MNode;
  path: string;
  /** The folder it was deleted from. */
  parentId: string;
  deleted: number;
  by?: string;
}

interface MSpace {
  space: Omit<Space, 'used' | 'mtime' | 'etag' | 'usage'>;
  root: MFolder;
  nodes: Map<string, MNode>;
  trash: Map<string, MTrash>;
  trashSize: number;
  versionsSize: number;
}

const NO_FAVORITES: ReadonlyMap<string, string> = new Map();

/** Create an in-memory driver. Nothing is persisted. */
export function createMemoryDriver(options: MemoryDriverOptions = {}): Driver {
  return new MemoryDriver(options.storageId ?? randomUUID(), options.keepVersions ?? 10);
}

class MemoryDriver implements Driver {
  readonly kind = 'memory';
  readonly features: Features;
  private readonly spaces = new Map<string, MSpace>();
  private readonly aliases = new Map<string, string>();
  private closed = false;
  private versionSeq = 0;
  /** Per user: opaque id -> space id, replaced (never changed) on every change. */
  private readonly favorites = new Map<string, ReadonlyMap<string, string>>();

  constructor(
    readonly storageId: string,
    private readonly keepVersions: number,
  ) {
    this.features = Object.freeze({
      copy: Object.freeze({ copy: (s: NodeRef, d: NodeRef, o?: MoveOptions) => this.copy(s, d, o) }),
      metadata: Object.freeze({
        set: (r: NodeRef, v: Readonly<Record<string, string>>, o?: MutationOptions) =>
          this.setMetadata(r, v, o),
        unset: (r: NodeRef, k: readonly string[], o?: MutationOptions) => this.unsetMetadata(r, k, o),
      }),
      favorites: Object.freeze({
        set: async (user: string, id: ResourceId, on: boolean) => this.setFavorite(user, id, on),
        list: async (user: string) => {
          this.open();
          return this.favorites.get(user) ?? NO_FAVORITES;
        },
      }),
      mtime: Object.freeze({
        set: (r: NodeRef, mtime: number, o?: MutationOptions) => this.setMtime(r, mtime, o),
      }),
      spaces: Object.freeze({
        create: (i: CreateSpaceInput) => this.createSpace(i),
        update: (id: string, i: UpdateSpaceInput) => this.updateSpace(id, i),
        delete: (id: string) => this.deleteSpace(id),
      }),
      grants: Object.freeze({
        list: async (r: NodeRef) => this.grantsOf(this.lookup(r).node),
        set: (r: NodeRef, g: Grant, o?: MutationOptions) => this.setGrant(r, g, o),
        remove: (r: NodeRef, g: Grantee, o?: MutationOptions) => this.removeGrant(r, g, o),
        inspect: (r: NodeRef, o?: StatOptions) => this.inspect(r, o),
      }),
      locks: Object.freeze({
        get: async (r: NodeRef) => liveLock(this.lookup(r).node.lock),
        set: (r: NodeRef, l: Lock, o?: MutationOptions) => this.setLock(r, l, o),
        refresh: (r: NodeRef, l: Lock, existing?: string) => this.refreshLock(r, l, existing),
        unlock: (r: NodeRef, id: string, o?: MutationOptions) => this.unlock(r, id, o),
      }),
      trash: Object.freeze({
        list: (spaceId: string, o?: { key?: string }) => this.listTrash(spaceId, o),
        get: async (spaceId: string, key: string) => this.trashItem(spaceId, key),
        restore: (spaceId: string, key: string, o?: { target?: NodeRef } & MutationOptions) =>
          this.restoreTrash(spaceId, key, o),
        purge: (spaceId: string, key?: string) => this.purgeTrash(spaceId, key),
      }),
      versions: Object.freeze({
        list: (r: NodeRef) => this.listVersions(r),
        read: (r: NodeRef, key: string, o?: ReadOptions) => this.readVersion(r, key, o),
        restore: (r: NodeRef, key: string, o?: MutationOptions) => this.restoreVersion(r, key, o),
      }),
      quota: Object.freeze({ enforced: true as const }),
    });
  }

  // --------------------------------------------------------------- favorites

  private setFavorite(user: string, id: ResourceId, on: boolean): void {
    this.open();
    const now = this.favorites.get(user) ?? NO_FAVORITES;
    if (on ? now.get(id.opaqueId) === id.spaceId : !now.has(id.opaqueId)) return;
    const next = new Map(now);
    if (on) next.set(id.opaqueId, id.spaceId);
    else next.delete(id.opaqueId);
    this.favorites.set(user, next);
  }

  // ------------------------------------------------------------------ spaces

  async *listSpaces(filter?: SpaceFilter): AsyncGenerator<Space> {
    this.open();
    for (const s of this.spaces.values()) {
      if (filter?.type && s.space.type !== filter.type) continue;
      if (filter?.id && s.space.id !== filter.id) continue;
      if (filter?.ownerId && s.space.owner?.id !== filter.ownerId) continue;
      if (s.space.disabled && !filter?.includeDisabled) continue;
      yield this.spaceOut(s);
    }
  }

  async getSpace(idOrAlias: string): Promise<Space> {
    return this.spaceOut(this.space(idOrAlias));
  }

  private async createSpace(input: CreateSpaceInput): Promise<Space> {
    this.open();
    const id = input.id ?? randomUUID();
    if (this.spaces.has(id)) throw new StorageError('ALREADY_EXISTS', `space ${id} already exists`);
    let alias: string;
    if (input.alias) {
      alias = input.alias;
      if (!/^(personal|project)\/[^/\0]+$/.test(alias) || !alias.startsWith(`${input.type}/`)) {
        throw new StorageError('INVALID_ARGUMENT', `invalid alias "${printable(alias)}"`);
      }
      if (this.aliases.has(alias))
        throw new StorageError('ALREADY_EXISTS', `space "${alias}" already exists`);
    } else if (input.type === 'personal') {
      const who = input.owner?.username ?? input.owner?.id;
      if (!who) throw new StorageError('INVALID_ARGUMENT', 'a personal space needs an owner');
      alias = `personal/${checkName(who)}`;
      if (this.aliases.has(alias))
        throw new StorageError('ALREADY_EXISTS', `space "${alias}" already exists`);
    } else {
      const base = `project/${slugify(input.name)}`;
      alias = base;
      for (let n = 2; this.aliases.has(alias); n++) alias = `${base}-${n}`;
    }
    const root: MFolder = {
      kind: 'folder',
      id,
      name: input.name,
      created: Date.now(),
      children: new Map(),
      treeSize: 0,
      treeTime: nextTreeTime(undefined),
      metadata: new Map(),
      grants: new Map(),
    };
    const s: MSpace = {
      space: {
        id,
        storageId: this.storageId,
        type: input.type,
        name: input.name,
        alias,
        ...(input.description !== undefined && { description: input.description }),
        ...(input.owner && { owner: { ...input.owner } }),
        ...(input.quota !== undefined && { quota: input.quota }),
        root: { storageId: this.storageId, spaceId: id, opaqueId: id },
      },
      root,
      nodes: new Map([[id, root]]),
      trash: new Map(),
      trashSize: 0,
      versionsSize: 0,
    };
    this.spaces.set(id, s);
    this.aliases.set(alias, id);
    return this.spaceOut(s);
  }

  private async updateSpace(id: string, input: UpdateSpaceInput): Promise<Space> {
    const s = this.space(id);
    const sp = s.space as Space;
    if (input.name !== undefined) {
      sp.name = input.name;
      s.root.name = input.name;
    }
    if (input.description === null) delete sp.description;
    else if (input.description !== undefined) sp.description = input.description;
    if (input.quota === null) delete sp.quota;
    else if (input.quota !== undefined) sp.quota = input.quota;
    if (input.disabled !== undefined) {
      if (input.disabled) sp.disabled = true;
      else delete sp.disabled;
    }
    s.root.treeTime = nextTreeTime(s.root.treeTime);
    return this.spaceOut(s);
  }

  private async deleteSpace(id: string): Promise<void> {
    const s = this.space(id);
    this.spaces.delete(s.space.id);
    this.aliases.delete(s.space.alias);
    // (its resources' favorite marks go too: they point nowhere now)
    for (const [user, marks] of this.favorites) {
      if (![...marks.values()].includes(s.space.id)) continue;
      this.favorites.set(user, new Map([...marks].filter(([, space]) => space !== s.space.id)));
    }
  }

  private space(idOrAlias: string): MSpace {
    this.open();
    const s = this.spaces.get(idOrAlias) ?? this.spaces.get(this.aliases.get(idOrAlias) ?? '');
    if (!s) throw new StorageError('NOT_FOUND', `space "${printable(idOrAlias)}" not found`);
    return s;
  }

  private spaceOut(s: MSpace): Space {
    return {
      ...s.space,
      ...(s.space.owner && { owner: { ...s.space.owner } }),
      used: this.used(s),
      usage: { files: s.root.treeSize, trash: s.trashSize, versions: s.versionsSize },
      mtime: s.root.treeTime / 1000,
      etag: folderEtag(s.root.id, s.root.treeTime),
    };
  }

  private used(s: MSpace): number {
    return s.root.treeSize + s.trashSize + s.versionsSize;
  }

  /** INSUFFICIENT_STORAGE when `delta` more bytes would not fit in the space's quota. */
  private checkQuota(s: MSpace, delta: number): void {
    const quota = s.space.quota;
    if (quota !== undefined && delta > 0 && this.used(s) + delta > quota) {
      throw new StorageError('INSUFFICIENT_STORAGE', `space quota of ${quota} bytes exceeded`);
    }
  }

  // ------------------------------------------------------------------ resolution

  private open(): void {
    if (this.closed) throw new StorageError('UNAVAILABLE', 'driver is closed');
  }

  private lookup(ref: NodeRef): { s: MSpace; node: MNode } {
    const s = this.space(ref.spaceId);
    let node: MNode | undefined = ref.nodeId === undefined ? s.root : s.nodes.get(ref.nodeId);
    if (!node) throw new StorageError('NOT_FOUND', 'resource not found');
    for (const seg of ref.segments) {
      if (node.kind !== 'folder') throw new StorageError('NOT_FOUND', `"${printable(seg)}" not found`);
      node = node.children.get(seg);
      if (!node) throw new StorageError('NOT_FOUND', `"${printable(seg)}" not found`);
    }
    return { s, node };
  }

  /** The parent folder and name a mutation targets; the parent must exist and be a folder. */
  private lookupParent(ref: NodeRef): { s: MSpace; parent: MFolder; name: string; existing?: MNode } {
    if (ref.segments.length === 0) {
      const { s, node } = this.lookup(ref);
      if (!node.parent) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be replaced');
      return { s, parent: node.parent, name: node.name, existing: node };
    }
    let s: MSpace;
    let parent: MNode;
    try {
      ({ s, node: parent } = this.lookup({ ...ref, segments: ref.segments.slice(0, -1) }));
    } catch (err) {
      if (StorageError.is(err, 'NOT_FOUND')) {
        throw new StorageError('FAILED_PRECONDITION', 'parent folder does not exist', {
          reason: 'parent-missing',
        });
      }
      throw err;
    }
    if (parent.kind !== 'folder') {
      throw new StorageError('FAILED_PRECONDITION', 'parent is not a folder', { reason: 'parent-missing' });
    }
    const name = ref.segments[ref.segments.length - 1]!;
    const existing = parent.children.get(name);
    return existing ? { s, parent, name, existing } : { s, parent, name };
  }

  private pathOf(node: MNode): string {
    const parts: string[] = [];
    for (let n: MNode | undefined = node; n?.parent; n = n.parent) parts.push(n.name);
    return `/${parts.reverse().join('/')}`;
  }

  private grantsOf(node: MBase): Grant[] {
    const now = Date.now();
    for (const [k, g] of node.grants) if (g.expires !== undefined && g.expires <= now) node.grants.delete(k);
    return [...node.grants.values()].map((g) => structuredClone(g));
  }

  private info(s: MSpace, node: MNode, opts?: StatOptions): ResourceInfo {
    const fields = opts?.fields ?? DEFAULT_FIELDS;
    const st = this.storageId;
    const spaceId = s.space.id;
    const base = {
      id: { storageId: st, spaceId, opaqueId: node.id },
      path: this.pathOf(node),
      name: node.parent ? node.name : s.space.name,
      created: node.created,
    };
    let info: ResourceInfo;
    if (node.kind === 'file') {
      info = {
        ...base,
        type: 'file',
        size: node.content.length,
        mtime: node.mtime,
        changed: node.changed,
        etag: fileEtag(node.id, node.mtime, node.content.length, node.checksums.sha1),
        mimeType: mimeTypeOf(node.name),
      };
      if (fields.includes('checksums')) info.checksums = { ...node.checksums };
    } else {
      info = {
        ...base,
        type: 'folder',
        size: node.treeSize,
        mtime: node.treeTime / 1000,
        etag: folderEtag(node.id, node.treeTime),
        mimeType: FOLDER_MIME_TYPE,
      };
    }
    if (node.parent && fields.includes('parentId'))
      info.parentId = { storageId: st, spaceId, opaqueId: node.parent.id };
    const lock = liveLock(node.lock);
    if (lock && fields.includes('lock')) info.lock = lock;
    if (fields.includes('grants')) info.grants = this.grantsOf(node);
    const keys = opts?.metadataKeys;
    if (keys) {
      const md: Record<string, string> = {};
      if (keys === '*') for (const [k, v] of node.metadata) md[k] = v;
      else for (const k of keys) if (node.metadata.has(k)) md[k] = node.metadata.get(k)!;
      info.metadata = md;
    }
    return info;
  }

  private propagate(from: MFolder, sizeDelta: number): void {
    for (let f: MFolder | undefined = from; f; f = f.parent) {
      f.treeSize += sizeDelta;
      f.treeTime = nextTreeTime(f.treeTime);
    }
  }

  /** Replacing an ancestor of the source would delete the source itself. */
  private refuseAncestor(node: MNode, replaced: MNode): void {
    for (let p = node.parent; p; p = p.parent) {
      if (p === replaced) {
        throw new StorageError('INVALID_ARGUMENT', 'the destination contains the source', {
          reason: 'into-itself',
        });
      }
    }
  }

  private sizeOf(node: MNode): number {
    return node.kind === 'file' ? node.content.length : node.treeSize;
  }

  private forget(s: MSpace, node: MNode): void {
    s.nodes.delete(node.id);
    if (node.kind === 'folder') for (const c of node.children.values()) this.forget(s, c);
  }

  private adopt(s: MSpace, node: MNode): void {
    s.nodes.set(node.id, node);
    if (node.kind === 'folder') for (const c of node.children.values()) this.adopt(s, c);
  }

  /** Bytes held by versions of the files in a subtree. */
  private versionBytes(node: MNode): number {
    if (node.kind === 'file') return node.versions.reduce((a, v) => a + v.content.length, 0);
    let n = 0;
    for (const c of node.children.values()) n += this.versionBytes(c);
    return n;
  }

  /** LOCKED when anything inside a folder carries a live lock the request does not hold. */
  private checkLocksInside(node: MNode, opts?: LockOptions): void {
    if (node.kind !== 'folder') return;
    for (const child of node.children.values()) {
      checkLockInside(child.lock, opts?.lockId, opts?.actor, opts?.heldLockIds, this.pathOf(child));
      this.checkLocksInside(child, opts);
    }
  }

  /** Move a node (with its subtree) to the trash, keeping ids. */
  private toTrash(s: MSpace, node: MNode, by?: string): void {
    const parent = node.parent!;
    const size = this.sizeOf(node);
    const path = this.pathOf(node);
    parent.children.delete(node.name);
    this.forget(s, node);
    this.propagate(parent, -size);
    // The versions of its files stay where they are (counted as versions) until it is purged.
    s.trashSize += size;
    s.trash.set(node.id, { node, path, parentId: parent.id, deleted: Date.now(), ...(by && { by }) });
  }

  // ------------------------------------------------------------------ core

  async stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo> {
    const { s, node } = this.lookup(ref);
    return this.info(s, node, opts);
  }

  async *list(ref: NodeRef, opts?: ListOptions): AsyncGenerator<ResourceInfo> {
    const { s, node } = this.lookup(ref);
    if (node.kind !== 'folder') {
      throw new StorageError('FAILED_PRECONDITION', 'not a folder', { reason: 'not-folder' });
    }
    for (const child of [...node.children.values()]) {
      opts?.signal?.throwIfAborted();
      if (child.parent === node) yield this.info(s, child, opts);
    }
  }

  async read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult> {
    const { s, node } = this.lookup(ref);
    const info = this.info(s, node, opts);
    if (node.kind !== 'file') {
      throw new StorageError('FAILED_PRECONDITION', 'cannot read a folder', { reason: 'is-folder' });
    }
    return this.serve(info, node.content, opts);
  }

  private serve(info: ResourceInfo, content: Buffer, opts?: ReadOptions): ReadResult {
    const cond = evaluateConditions(opts?.conditions, info, 'read');
    if (cond !== 200) return { status: cond, info };
    const range = rangeToServe(opts, info);
    if (range === null) return { status: 416, info };
    if (range) {
      return {
        status: 206,
        info,
        range,
        body: Readable.from([content.subarray(range.start, range.end + 1)], { objectMode: false }),
      };
    }
    return { status: 200, info, body: Readable.from(content.length ? [content] : [], { objectMode: false }) };
  }

  async write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo> {
    let target = this.lookupParent(ref);
    if (target.existing?.kind === 'folder') {
      throw new StorageError('FAILED_PRECONDITION', 'a folder is in the way', { reason: 'is-folder' });
    }
    if (target.existing) checkLockFor(target.existing.lock, opts?.lockId, true, opts?.actor);
    checkWriteConditions(opts?.conditions, target.existing && this.info(target.s, target.existing));
    if (opts?.size !== undefined) this.checkQuota(target.s, opts.size);
    const acc = new ChecksumAccumulator();
    const parts: Buffer[] = [];
    try {
      for await (const chunk of bodyChunks(body)) {
        opts?.signal?.throwIfAborted();
        acc.update(chunk);
        parts.push(Buffer.from(chunk));
        if (opts?.size !== undefined && acc.bytes > opts.size) {
          throw new StorageError('INVALID_ARGUMENT', `body longer than the declared ${opts.size} bytes`, {
            reason: 'size-mismatch',
          });
        }
        this.checkQuota(target.s, acc.bytes);
      }
      opts?.signal?.throwIfAborted();
    } catch (err) {
      if (err instanceof StorageError) throw err;
      if ((err as Error)?.name === 'AbortError') {
        throw new StorageError('CANCELLED', 'upload cancelled', { cause: err });
      }
      throw new StorageError('CANCELLED', `upload body failed: ${(err as Error)?.message ?? err}`, {
        reason: 'body',
        cause: err,
      });
    }
    if (opts?.size !== undefined && acc.bytes !== opts.size) {
      throw new StorageError('INVALID_ARGUMENT', `body of ${acc.bytes} bytes, ${opts.size} declared`, {
        reason: 'size-mismatch',
      });
    }
    const checksums = acc.digest();
    verifyChecksums(opts?.checksums, checksums);
    // Re-resolve: the tree may have changed while the body streamed.
    target = this.lookupParent(ref);
    const existing = target.existing;
    if (existing?.kind === 'folder') {
      throw new StorageError('FAILED_PRECONDITION', 'a folder is in the way', { reason: 'is-folder' });
    }
    if (existing) checkLockFor(existing.lock, opts?.lockId, true, opts?.actor);
    checkWriteConditions(opts?.conditions, existing && this.info(target.s, existing));
    const content = Buffer.concat(parts);
    this.checkQuota(target.s, content.length);
    const mtime = opts?.mtime ?? Date.now();
    let node: MFile;
    let delta: number;
    if (existing) {
      delta = content.length - existing.content.length;
      // (an empty file, as Finder and Windows make one before they write it, is no version)
      if (existing.content.length) this.keepVersion(target.s, existing);
      existing.content = content;
      existing.mtime = mtime;
      existing.changed = Date.now();
      existing.checksums = checksums;
      node = existing;
    } else {
      node = {
        kind: 'file',
        id: randomUUID(),
        name: target.name,
        created: Date.now(),
        parent: target.parent,
        content,
        mtime,
        changed: Date.now(),
        checksums,
        metadata: new Map(),
        grants: new Map(),
        versions: [],
      };
      target.parent.children.set(target.name, node);
      target.s.nodes.set(node.id, node);
      delta = content.length;
    }
    this.propagate(target.parent, delta);
    return this.info(target.s, node);
  }

  /** The current content of a file becomes its newest version; the oldest beyond the limit go. */
  private keepVersion(s: MSpace, file: MFile): void {
    if (this.keepVersions <= 0) return;
    const key = `${Date.now()}-${String(++this.versionSeq).padStart(6, '0')}`;
    file.versions.unshift({ key, content: file.content, mtime: file.mtime, checksums: file.checksums });
    s.versionsSize += file.content.length;
    while (file.versions.length > this.keepVersions) s.versionsSize -= file.versions.pop()!.content.length;
  }

  async mkdir(ref: NodeRef, _opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, parent, name, existing } = this.lookupParent(ref);
    if (existing) throw new StorageError('ALREADY_EXISTS', `"${printable(name)}" already exists`);
    const node: MFolder = {
      kind: 'folder',
      id: randomUUID(),
      name,
      created: Date.now(),
      parent,
      children: new Map(),
      treeSize: 0,
      treeTime: nextTreeTime(undefined),
      metadata: new Map(),
      grants: new Map(),
    };
    parent.children.set(name, node);
    s.nodes.set(node.id, node);
    this.propagate(parent, 0);
    return this.info(s, node);
  }

  async delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, node } = this.lookup(ref);
    if (!node.parent) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be deleted');
    // A folder's lock id may be one of a lock inside it (a folder itself unlocked is no error).
    checkLockFor(node.lock, opts?.lockId, node.kind === 'file', opts?.actor);
    this.checkLocksInside(node, opts);
    const info = this.info(s, node);
    this.toTrash(s, node, opts?.actor);
    return info;
  }

  async move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    const { s, node } = this.lookup(src);
    if (!node.parent) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be moved');
    const t = this.lookupParent(dst);
    if (t.s !== s)
      throw new StorageError('UNIMPLEMENTED', 'moving between spaces is not supported', {
        reason: 'cross-space',
      });
    if (t.existing === node) {
      throw new StorageError('INVALID_ARGUMENT', 'source and destination are the same', {
        reason: 'into-itself',
      });
    }
    for (let p: MFolder | undefined = t.parent; p; p = p.parent) {
      if (p === node) {
        throw new StorageError('INVALID_ARGUMENT', 'cannot move a folder into itself', {
          reason: 'into-itself',
        });
      }
    }
    checkLockFor(node.lock, opts?.lockId, node.kind === 'file', opts?.actor);
    this.checkLocksInside(node, opts);
    landingTimeFits(node, opts);
    if (t.existing) {
      if (!opts?.overwrite) throw new StorageError('ALREADY_EXISTS', `"${printable(t.name)}" already exists`);
      this.refuseAncestor(node, t.existing);
      const over = opts?.targetLockId !== undefined ? { ...opts, lockId: opts.targetLockId } : opts;
      checkLockFor(t.existing.lock, over?.lockId, false, opts?.actor);
      this.checkLocksInside(t.existing, over);
      this.toTrash(s, t.existing);
    }
    const size = this.sizeOf(node);
    const from = node.parent;
    from.children.delete(node.name);
    this.propagate(from, -size);
    node.name = t.name;
    node.parent = t.parent;
    t.parent.children.set(t.name, node);
    if (opts?.mtime !== undefined && node.kind === 'file') {
      node.mtime = opts.mtime;
      node.changed = Date.now();
    }
    this.propagate(t.parent, size);
    return this.info(s, node);
  }

  // ------------------------------------------------------------------ copy & metadata

  private async copy(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo> {
    const { node } = this.lookup(src);
    const t = this.lookupParent(dst);
    if (t.existing === node) {
      throw new StorageError('INVALID_ARGUMENT', 'source and destination are the same', {
        reason: 'into-itself',
      });
    }
    for (let p: MFolder | undefined = t.parent; p; p = p.parent) {
      if (p === node)
        throw new StorageError('INVALID_ARGUMENT', 'cannot copy a folder into itself', {
          reason: 'into-itself',
        });
    }
    if (t.existing) {
      if (!opts?.overwrite) throw new StorageError('ALREADY_EXISTS', `"${printable(t.name)}" already exists`);
      this.refuseAncestor(node, t.existing);
      const over = opts?.targetLockId !== undefined ? { ...opts, lockId: opts.targetLockId } : opts;
      checkLockFor(t.existing.lock, over?.lockId, false, opts?.actor);
      this.checkLocksInside(t.existing, over);
    }
    landingTimeFits(node, opts);
    this.checkQuota(t.s, this.sizeOf(node));
    if (t.existing) this.toTrash(t.s, t.existing);
    const clone = (n: MNode, parent: MFolder, name: string): MNode => {
      opts?.signal?.throwIfAborted();
      const common = {
        id: randomUUID(),
        name,
        created: Date.now(),
        metadata: new Map(n.metadata),
        grants: new Map<string, Grant>(),
      };
      if (n.kind === 'file') {
        const c: MFile = {
          ...n,
          ...common,
          changed: common.created,
          parent,
          checksums: { ...n.checksums },
          versions: [],
        };
        delete c.lock;
        t.s.nodes.set(c.id, c);
        return c;
      }
      const c: MFolder = {
        kind: 'folder',
        ...common,
        parent,
        children: new Map(),
        treeSize: n.treeSize,
        treeTime: nextTreeTime(undefined),
      };
      t.s.nodes.set(c.id, c);
      for (const [k, child] of n.children) c.children.set(k, clone(child, c, k));
      return c;
    };
    const copy = clone(node, t.parent, t.name);
    if (opts?.mtime !== undefined && copy.kind === 'file') copy.mtime = opts.mtime;
    t.parent.children.set(t.name, copy);
    this.propagate(t.parent, this.sizeOf(copy));
    return this.info(t.s, copy);
  }

  private async setMetadata(
    ref: NodeRef,
    values: Readonly<Record<string, string>>,
    opts?: MutationOptions,
  ): Promise<void> {
    const { node } = this.lookup(ref);
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    for (const [k, v] of Object.entries(values)) node.metadata.set(k, v);
  }

  private async unsetMetadata(ref: NodeRef, keys: readonly string[], opts?: MutationOptions): Promise<void> {
    const { node } = this.lookup(ref);
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    for (const k of keys) node.metadata.delete(k);
  }

  private async setMtime(ref: NodeRef, mtime: number, opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, node } = this.lookup(ref);
    if (node.kind !== 'file') throw folderTimeRefused();
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    node.mtime = mtime;
    node.changed = Date.now();
    this.propagate(node.parent, 0);
    return this.info(s, node);
  }

  // ------------------------------------------------------------------ grants

  private async setGrant(ref: NodeRef, grant: Grant, opts?: MutationOptions): Promise<void> {
    const { node } = this.lookup(ref);
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    node.grants.set(granteeKey(grant.grantee), structuredClone(grant));
  }

  private async removeGrant(ref: NodeRef, grantee: Grantee, opts?: MutationOptions): Promise<boolean> {
    const { node } = this.lookup(ref);
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    return node.grants.delete(granteeKey(grantee));
  }

  private async inspect(ref: NodeRef, opts?: StatOptions): Promise<Inspected> {
    const { s, node } = this.lookup(ref);
    const info = this.info(s, node, { ...opts, fields: [...(opts?.fields ?? DEFAULT_FIELDS), 'grants'] });
    const inherited: Grant[][] = [];
    for (let p = node.parent; p; p = p.parent) inherited.unshift(this.grantsOf(p));
    return { info, inherited };
  }

  // ------------------------------------------------------------------ locks

  private async setLock(ref: NodeRef, lock: Lock, opts?: MutationOptions): Promise<Lock> {
    const { node } = this.lookup(ref);
    node.lock = lockAfter(liveLock(node.lock), newLock(lock, opts?.actor));
    return { ...node.lock };
  }

  private async refreshLock(ref: NodeRef, lock: Lock, existingLockId?: string): Promise<Lock> {
    const { node } = this.lookup(ref);
    const current = liveLock(node.lock);
    checkLockChange(current, existingLockId ?? lock.lockId, lock.user);
    node.lock = lockAfter(current, newLock(lock, lock.user), existingLockId ?? lock.lockId);
    return { ...node.lock };
  }

  private async unlock(ref: NodeRef, lockId: string, opts?: MutationOptions): Promise<void> {
    const { node } = this.lookup(ref);
    checkLockChange(liveLock(node.lock), lockId, opts?.actor);
    delete node.lock;
  }

  // ------------------------------------------------------------------ trash

  private recycleItem(s: MSpace, node: MNode, key: string, path: string, t: MTrash): RecycleItem {
    const grants = this.grantsOf(node);
    const parentId = node === t.node ? t.parentId : node.parent!.id;
    return {
      key,
      id: { storageId: this.storageId, spaceId: s.space.id, opaqueId: node.id },
      parentId: { storageId: this.storageId, spaceId: s.space.id, opaqueId: parentId },
      type: node.kind === 'file' ? 'file' : 'folder',
      path,
      size: this.sizeOf(node),
      deleted: t.deleted,
      ...(t.by && { deletedBy: t.by }),
      ...(grants.length && { grants }),
    };
  }

  private async *listTrash(spaceId: string, opts?: { key?: string }): AsyncGenerator<RecycleItem> {
    const s = this.space(spaceId);
    if (!opts?.key) {
      for (const [id, t] of [...s.trash]) yield this.recycleItem(s, t.node, id, t.path, t);
      return;
    }
    const { trashed, node, rel } = this.trashNode(s, opts.key);
    if (node.kind !== 'folder')
      throw new StorageError('FAILED_PRECONDITION', 'not a folder', { reason: 'not-folder' });
    const base = rel ? `${trashed.path}/${rel}` : trashed.path;
    const prefix = rel ? `${trashed.node.id}/${rel}` : trashed.node.id;
    for (const [name, child] of [...node.children]) {
      yield this.recycleItem(s, child, `${prefix}/${name}`, `${base}/${name}`, trashed);
    }
  }

  private trashItem(spaceId: string, key: string): RecycleItem {
    const s = this.space(spaceId);
    const { trashed, node, rel } = this.trashNode(s, key);
    const k = rel ? `${trashed.node.id}/${rel}` : trashed.node.id;
    return this.recycleItem(s, node, k, rel ? `${trashed.path}/${rel}` : trashed.path, trashed);
  }

  private trashNode(s: MSpace, key: string): { trashed: MTrash; node: MNode; rel: string } {
    const [id, ...rest] = key.split('/').filter(Boolean);
    const trashed = id ? s.trash.get(id) : undefined;
    if (!trashed) throw new StorageError('NOT_FOUND', 'not in the trash');
    let node: MNode = trashed.node;
    for (const seg of rest) {
      const next: MNode | undefined = node.kind === 'folder' ? node.children.get(seg) : undefined;
      if (!next) throw new StorageError('NOT_FOUND', 'not in the trash');
      node = next;
    }
    return { trashed, node, rel: rest.join('/') };
  }

  private async restoreTrash(
    spaceId: string,
    key: string,
    opts?: { target?: NodeRef } & MutationOptions,
  ): Promise<ResourceInfo> {
    const s = this.space(spaceId);
    const { trashed, node, rel } = this.trashNode(s, key);
    const path = rel ? `${trashed.path}/${rel}` : trashed.path;
    const target = opts?.target ?? { spaceId: s.space.id, segments: path.split('/').filter(Boolean) };
    const t = this.lookupParent(target);
    if (t.s !== s)
      throw new StorageError('UNIMPLEMENTED', 'restoring into another space is not supported', {
        reason: 'cross-space',
      });
    if (t.existing) throw new StorageError('ALREADY_EXISTS', `"${printable(t.name)}" already exists`);
    const size = this.sizeOf(node);
    if (rel) {
      const parent = node.parent!;
      parent.children.delete(node.name);
      for (let p: MFolder | undefined = parent; p && p !== trashed.node.parent; p = p.parent)
        p.treeSize -= size;
    } else {
      s.trash.delete(node.id);
    }
    s.trashSize -= size;
    node.name = t.name;
    node.parent = t.parent;
    t.parent.children.set(t.name, node);
    this.adopt(s, node);
    this.propagate(t.parent, size);
    return this.info(s, node);
  }

  private async purgeTrash(spaceId: string, key?: string): Promise<void> {
    const s = this.space(spaceId);
    if (key === undefined) {
      // Gone for good, with the versions of their files and the users' marks of them.
      for (const t of s.trash.values()) {
        s.versionsSize -= this.versionBytes(t.node);
        this.unmarkAll(s, t.node);
      }
      s.trash.clear();
      s.trashSize = 0;
      return;
    }
    const { trashed, node, rel } = this.trashNode(s, key);
    const size = this.sizeOf(node);
    if (rel) {
      const parent = node.parent!;
      parent.children.delete(node.name);
      for (let p: MFolder | undefined = parent; p && p !== trashed.node.parent; p = p.parent)
        p.treeSize -= size;
    } else {
      s.trash.delete(trashed.node.id);
    }
    s.trashSize -= size;
    s.versionsSize -= this.versionBytes(node);
    this.unmarkAll(s, node);
  }

  /** Drop every user's favorite marks of a subtree gone for good. */
  private unmarkAll(s: MSpace, node: MNode): void {
    const ids = new Set<string>();
    const walk = (n: MNode): void => {
      ids.add(n.id);
      if (n.kind === 'folder') for (const c of n.children.values()) walk(c);
    };
    walk(node);
    for (const [user, marks] of this.favorites) {
      const kept = [...marks].filter(([id, space]) => space !== s.space.id || !ids.has(id));
      if (kept.length !== marks.size) this.favorites.set(user, new Map(kept));
    }
  }

  // ------------------------------------------------------------------ versions

  private file(ref: NodeRef): { s: MSpace; node: MFile } {
    const { s, node } = this.lookup(ref);
    if (node.kind !== 'file')
      throw new StorageError('FAILED_PRECONDITION', 'folders have no versions', { reason: 'is-folder' });
    return { s, node };
  }

  private versionOut(v: MVersion): FileVersion {
    return {
      key: v.key,
      size: v.content.length,
      mtime: v.mtime,
      etag: fileEtag(`${v.key}`, v.mtime, v.content.length, v.checksums.sha1),
      checksums: { ...v.checksums },
    };
  }

  private async listVersions(ref: NodeRef): Promise<FileVersion[]> {
    return this.file(ref).node.versions.map((v) => this.versionOut(v));
  }

  private async readVersion(ref: NodeRef, key: string, opts?: ReadOptions): Promise<ReadResult> {
    const { s, node } = this.file(ref);
    const v = node.versions.find((x) => x.key === key);
    if (!v) throw new StorageError('NOT_FOUND', 'no such version');
    const out = this.versionOut(v);
    const info: ResourceInfo = {
      ...this.info(s, node, opts),
      size: out.size,
      mtime: out.mtime,
      etag: out.etag,
      checksums: out.checksums!,
    };
    return this.serve(info, v.content, opts);
  }

  private async restoreVersion(ref: NodeRef, key: string, opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, node } = this.file(ref);
    checkLockFor(node.lock, opts?.lockId, true, opts?.actor);
    const i = node.versions.findIndex((x) => x.key === key);
    if (i < 0) throw new StorageError('NOT_FOUND', 'no such version');
    const [v] = node.versions.splice(i, 1);
    s.versionsSize -= v!.content.length;
    const delta = v!.content.length - node.content.length;
    this.keepVersion(s, node);
    node.content = v!.content;
    node.mtime = v!.mtime;
    node.changed = Date.now();
    node.checksums = v!.checksums;
    this.propagate(node.parent, delta);
    return this.info(s, node);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A move or copy that sets the time where it lands: a file's only (refused before anything changes). */
function landingTimeFits(node: MNode, opts: MoveOptions | undefined): void {
  if (opts?.mtime !== undefined && node.kind !== 'file') throw folderTimeRefused();
}
