/**
 * The memory driver: the reference implementation of Stowage's semantics, kept in plain maps.
 * Every other driver must answer the conformance suite the way this one does.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { bodyChunks } from '../../core/body.js';
import { ChecksumAccumulator, verifyChecksums } from '../../core/checksums.js';
import { checkWriteConditions, evaluateConditions, resolveRange } from '../../core/conditions.js';
import type { Body, Driver, Features, MutationOptions } from '../../core/driver.js';
import { StorageError } from '../../core/errors.js';
import { fileEtag, folderEtag, nextTreeTime } from '../../core/etag.js';
import { FOLDER_MIME_TYPE, mimeTypeOf } from '../../core/mime.js';
import { checkName, printable, slugify } from '../../core/refs.js';
import type {
  Checksums,
  CreateSpaceInput,
  ListOptions,
  MoveOptions,
  NodeRef,
  ReadOptions,
  ReadResult,
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
}

interface MFile {
  kind: 'file';
  id: string;
  name: string;
  parent: MFolder;
  content: Buffer;
  mtime: number;
  checksums: Required<Checksums>;
  metadata: Map<string, string>;
}

interface MFolder {
  kind: 'folder';
  id: string;
  name: string;
  parent?: MFolder;
  children: Map<string, MNode>;
  treeSize: number;
  treeTime: number;
  metadata: Map<string, string>;
}

type MNode = MFile | MFolder;

interface MSpace {
  space: Omit<Space, 'used' | 'mtime' | 'etag'>;
  root: MFolder;
  nodes: Map<string, MNode>;
}

/** Create an in-memory driver. Nothing is persisted. */
export function createMemoryDriver(options: MemoryDriverOptions = {}): Driver {
  return new MemoryDriver(options.storageId ?? randomUUID());
}

class MemoryDriver implements Driver {
  readonly kind = 'memory';
  readonly features: Features;
  private readonly spaces = new Map<string, MSpace>();
  private readonly aliases = new Map<string, string>();
  private closed = false;

  constructor(readonly storageId: string) {
    this.features = Object.freeze({
      copy: Object.freeze({ copy: (s: NodeRef, d: NodeRef, o?: MoveOptions) => this.copy(s, d, o) }),
      metadata: Object.freeze({
        set: (r: NodeRef, v: Readonly<Record<string, string>>) => this.setMetadata(r, v),
        unset: (r: NodeRef, k: readonly string[]) => this.unsetMetadata(r, k),
      }),
      spaces: Object.freeze({
        create: (i: CreateSpaceInput) => this.createSpace(i),
        update: (id: string, i: UpdateSpaceInput) => this.updateSpace(id, i),
        delete: (id: string) => this.deleteSpace(id),
      }),
    });
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
      children: new Map(),
      treeSize: 0,
      treeTime: nextTreeTime(undefined),
      metadata: new Map(),
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
      used: s.root.treeSize,
      mtime: s.root.treeTime / 1000,
      etag: folderEtag(s.root.id, s.root.treeTime),
    };
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

  private info(s: MSpace, node: MNode, opts?: StatOptions): ResourceInfo {
    const fields = opts?.fields ?? DEFAULT_FIELDS;
    const st = this.storageId;
    const spaceId = s.space.id;
    const base = {
      id: { storageId: st, spaceId, opaqueId: node.id },
      path: this.pathOf(node),
      name: node.parent ? node.name : s.space.name,
    };
    let info: ResourceInfo;
    if (node.kind === 'file') {
      info = {
        ...base,
        type: 'file',
        size: node.content.length,
        mtime: node.mtime,
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
    const cond = evaluateConditions(opts?.conditions, info, 'read');
    if (cond !== 200) return { status: cond, info };
    let range = resolveRange(opts?.range, node.content.length);
    if (range && opts?.ifRange !== undefined && opts.ifRange.replace(/^W\/|"/g, '') !== info.etag)
      range = undefined;
    if (range === null) return { status: 416, info };
    const content = node.content;
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
    checkWriteConditions(opts?.conditions, target.existing && this.info(target.s, target.existing));
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
    checkWriteConditions(opts?.conditions, existing && this.info(target.s, existing));
    const content = Buffer.concat(parts);
    const mtime = opts?.mtime ?? Date.now();
    let node: MFile;
    let delta: number;
    if (existing) {
      delta = content.length - existing.content.length;
      existing.content = content;
      existing.mtime = mtime;
      existing.checksums = checksums;
      node = existing;
    } else {
      node = {
        kind: 'file',
        id: randomUUID(),
        name: target.name,
        parent: target.parent,
        content,
        mtime,
        checksums,
        metadata: new Map(),
      };
      target.parent.children.set(target.name, node);
      target.s.nodes.set(node.id, node);
      delta = content.length;
    }
    this.propagate(target.parent, delta);
    return this.info(target.s, node);
  }

  async mkdir(ref: NodeRef, _opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, parent, name, existing } = this.lookupParent(ref);
    if (existing) throw new StorageError('ALREADY_EXISTS', `"${printable(name)}" already exists`);
    const node: MFolder = {
      kind: 'folder',
      id: randomUUID(),
      name,
      parent,
      children: new Map(),
      treeSize: 0,
      treeTime: nextTreeTime(undefined),
      metadata: new Map(),
    };
    parent.children.set(name, node);
    s.nodes.set(node.id, node);
    this.propagate(parent, 0);
    return this.info(s, node);
  }

  async delete(ref: NodeRef, _opts?: MutationOptions): Promise<ResourceInfo> {
    const { s, node } = this.lookup(ref);
    if (!node.parent) throw new StorageError('INVALID_ARGUMENT', 'the space root cannot be deleted');
    const info = this.info(s, node);
    node.parent.children.delete(node.name);
    this.forget(s, node);
    this.propagate(node.parent, -this.sizeOf(node));
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
    if (t.existing) {
      if (!opts?.overwrite) throw new StorageError('ALREADY_EXISTS', `"${printable(t.name)}" already exists`);
      this.refuseAncestor(node, t.existing);
      t.parent.children.delete(t.name);
      this.forget(s, t.existing);
      this.propagate(t.parent, -this.sizeOf(t.existing));
    }
    const size = this.sizeOf(node);
    const from = node.parent;
    from.children.delete(node.name);
    this.propagate(from, -size);
    node.name = t.name;
    node.parent = t.parent;
    t.parent.children.set(t.name, node);
    this.propagate(t.parent, size);
    return this.info(s, node);
  }

  // ------------------------------------------------------------------ features

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
      t.parent.children.delete(t.name);
      this.forget(t.s, t.existing);
      this.propagate(t.parent, -this.sizeOf(t.existing));
    }
    const clone = (n: MNode, parent: MFolder, name: string): MNode => {
      opts?.signal?.throwIfAborted();
      if (n.kind === 'file') {
        const c: MFile = {
          ...n,
          id: randomUUID(),
          name,
          parent,
          checksums: { ...n.checksums },
          metadata: new Map(n.metadata),
        };
        t.s.nodes.set(c.id, c);
        return c;
      }
      const c: MFolder = {
        kind: 'folder',
        id: randomUUID(),
        name,
        parent,
        children: new Map(),
        treeSize: n.treeSize,
        treeTime: nextTreeTime(undefined),
        metadata: new Map(n.metadata),
      };
      t.s.nodes.set(c.id, c);
      for (const [k, child] of n.children) c.children.set(k, clone(child, c, k));
      return c;
    };
    const copy = clone(node, t.parent, t.name);
    t.parent.children.set(t.name, copy);
    this.propagate(t.parent, this.sizeOf(copy));
    return this.info(t.s, copy);
  }

  private async setMetadata(ref: NodeRef, values: Readonly<Record<string, string>>): Promise<void> {
    const { node } = this.lookup(ref);
    for (const [k, v] of Object.entries(values)) node.metadata.set(k, v);
  }

  private async unsetMetadata(ref: NodeRef, keys: readonly string[]): Promise<void> {
    const { node } = this.lookup(ref);
    for (const k of keys) node.metadata.delete(k);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
