/**
 * The driver interface: a small required core plus named capabilities resolved once into a frozen
 * {@link Features} record. Callers test `driver.features.copy`, never the driver's kind.
 *
 * Drivers receive validated {@link NodeRef}s only (the provider did path safety) and return fresh
 * {@link ResourceInfo} from every mutation, so no caller needs a follow-up stat.
 *
 * @module
 */
import type {
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
} from './types.js';

/** A request body: a Node stream, any async iterable of bytes, or bytes/text already in memory. */
export type Body = AsyncIterable<Uint8Array | string> | Uint8Array | string;

/** Options shared by simple mutations. */
export interface MutationOptions {
  signal?: AbortSignal;
}

/** Capability `copy`: server-side copy (new ids for the copies). */
export interface CopyFeature {
  copy(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo>;
}

/** Capability `metadata`: arbitrary key/value metadata (WebDAV dead properties, CS3 arbitrary metadata). */
export interface MetadataFeature {
  /** Set keys; other keys are kept. Values are strings; a key is 1-255 bytes, no NUL. */
  set(ref: NodeRef, values: Readonly<Record<string, string>>, opts?: MutationOptions): Promise<void>;
  /** Remove keys; missing keys are ignored. */
  unset(ref: NodeRef, keys: readonly string[], opts?: MutationOptions): Promise<void>;
}

/** Capability `spaces`: create, change and delete spaces (listing and reading are core). */
export interface SpacesFeature {
  create(input: CreateSpaceInput): Promise<Space>;
  update(spaceId: string, input: UpdateSpaceInput): Promise<Space>;
  /** Delete a space and everything in it. */
  delete(spaceId: string): Promise<void>;
}

/**
 * Everything beyond the core, by name. A missing key means the driver lacks the capability.
 * Later issues add `locks`, `grants`, `trash`, `versions`, `quota`, `resumable`, `watch`.
 */
export interface Features {
  readonly copy?: CopyFeature;
  readonly metadata?: MetadataFeature;
  readonly spaces?: SpacesFeature;
}

/** Names of the capabilities in {@link Features}. */
export type FeatureName = keyof Features;

/** All capability names, for wrappers and test suites that must handle every one of them. */
export const FEATURE_NAMES: readonly FeatureName[] = ['copy', 'metadata', 'spaces'];

/** A storage driver. */
export interface Driver {
  /** Human-readable kind (`posix`, `memory`, ...); for logs only. */
  readonly kind: string;
  /** The storage id this driver serves (CS3 `storage_id` / provider mount id). */
  readonly storageId: string;
  /** Frozen capability record. */
  readonly features: Features;

  /** Spaces visible in this storage (no authorisation at this level). */
  listSpaces(filter?: SpaceFilter): AsyncIterable<Space>;
  /** A space by id or alias; NOT_FOUND if there is none. */
  getSpace(idOrAlias: string): Promise<Space>;

  stat(ref: NodeRef, opts?: StatOptions): Promise<ResourceInfo>;
  /** Children of a folder, streamed in no particular order; FAILED_PRECONDITION (`not-folder`) on a file. */
  list(ref: NodeRef, opts?: ListOptions): AsyncIterable<ResourceInfo>;
  /** Content of a file with ranges and conditions; answers 304/412/416 without opening the content. */
  read(ref: NodeRef, opts?: ReadOptions): Promise<ReadResult>;
  /**
   * Create or replace a file from a stream. Atomic: readers see the old or the new content, and a
   * failed or aborted body leaves nothing. Keeps the id of a replaced file.
   */
  write(ref: NodeRef, body: Body, opts?: WriteOptions): Promise<ResourceInfo>;
  /** Create a folder; the parent must exist (FAILED_PRECONDITION `parent-missing`). */
  mkdir(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo>;
  /** Delete a file or a folder with everything in it; returns what was deleted. */
  delete(ref: NodeRef, opts?: MutationOptions): Promise<ResourceInfo>;
  /** Move or rename within one space; ids are kept. */
  move(src: NodeRef, dst: NodeRef, opts?: MoveOptions): Promise<ResourceInfo>;

  /** Release resources (file handles, timers). The driver is unusable afterwards. */
  close(): Promise<void>;
}
