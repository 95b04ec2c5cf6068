/**
 * Several changes of one resource's properties made as one, all or nothing: arbitrary metadata
 * (set and removed keys), the file's modification time and the user's favorite mark. WebDAV's
 * PROPPATCH (RFC 4918 §9.2) and CS3's Set/UnsetArbitraryMetadata carry them together; each door
 * maps the part that failed onto its own answer.
 */

import type { MutationOptions } from './driver.js';
import { StorageError } from './errors.js';
import { checkMetadata, checkMetadataKey, type StorageProvider } from './provider.js';
import type { Ref } from './types.js';

/** What to change; absent parts stay as they are. */
export interface PropertyChange {
  /** Metadata keys to set (others are kept). */
  set?: Readonly<Record<string, string>>;
  /** Metadata keys to remove (missing ones are ignored). */
  unset?: readonly string[];
  /** The file's modification time, ms since epoch (a folder is refused). */
  mtime?: number;
  /** Mark the resource as one of the session user's favorites, or unmark it. */
  favorite?: boolean;
}

/** The part of a {@link PropertyChange} that failed, and why. */
export interface PropertyChangeFailure {
  part: 'metadata' | 'mtime' | 'favorite';
  error: unknown;
}

/**
 * Apply `change` to `ref`: the metadata first, then the time, then the mark, which needs no more
 * than seeing the resource and is never taken back once made (another request may have relied on
 * it). When a part fails, what the parts before it changed is put back (metadata exactly; a time
 * to the precision the storage keeps) and the failure is returned; undefined when all went
 * through. Keys and values that would be refused are refused before anything changes.
 */
export async function applyPropertyChange(
  s: StorageProvider,
  ref: Ref,
  change: PropertyChange,
  opts: MutationOptions = {},
): Promise<PropertyChangeFailure | undefined> {
  const set = change.set ?? {};
  const unset = change.unset ?? [];
  const keys = [...Object.keys(set), ...unset];
  try {
    checkMetadata(set);
    for (const k of unset) checkMetadataKey(k);
  } catch (error) {
    return { part: 'metadata', error };
  }
  if (change.mtime !== undefined && !Number.isFinite(change.mtime))
    return {
      part: 'mtime',
      error: new StorageError('INVALID_ARGUMENT', 'mtime must be a finite number of milliseconds'),
    };
  const parts = [keys.length > 0, change.mtime !== undefined, change.favorite !== undefined];
  // What was there, to put back (only when a later part could fail after an earlier one changed something).
  const before =
    parts.filter(Boolean).length > 1
      ? await s.stat(ref, { fields: [], ...(keys.length && { metadataKeys: keys }) })
      : undefined;
  const restoreMetadata = async () => {
    if (!before || !keys.length) return;
    const was = before.metadata ?? {};
    const back: Record<string, string> = {};
    for (const k of keys) if (was[k] !== undefined) back[k] = was[k];
    const gone = keys.filter((k) => was[k] === undefined);
    if (Object.keys(back).length) await s.setMetadata(ref, back, opts).catch(() => {});
    if (gone.length) await s.unsetMetadata(ref, gone, opts).catch(() => {});
  };
  if (keys.length) {
    try {
      if (Object.keys(set).length) await s.setMetadata(ref, set, opts);
      if (unset.length) await s.unsetMetadata(ref, unset, opts);
    } catch (error) {
      await restoreMetadata();
      return { part: 'metadata', error };
    }
  }
  let timed = false;
  if (change.mtime !== undefined) {
    try {
      await s.setMtime(ref, change.mtime, opts);
      timed = true;
    } catch (error) {
      await restoreMetadata();
      return { part: 'mtime', error };
    }
  }
  if (change.favorite !== undefined) {
    try {
      await s.setFavorite(ref, change.favorite);
    } catch (error) {
      if (timed && before) await s.setMtime(ref, before.mtime, opts).catch(() => {});
      await restoreMetadata();
      return { part: 'favorite', error };
    }
  }
  return undefined;
}
