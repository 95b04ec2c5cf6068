/**
 * Several changes of one resource's properties made as one, all or nothing: arbitrary metadata
 * (set and removed keys), the file's modification time and the user's favorite mark. WebDAV's
 * PROPPATCH (RFC 4918 §9.2) and CS3's Set/UnsetArbitraryMetadata carry them together; each door
 * maps the part that failed onto its own answer.
 */

import type { MutationOptions } from './driver.js';
import { StorageError } from './errors.js';
import { checkMetadata, checkMetadataKey, restoring, type StorageProvider } from './provider.js';
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

/** Whether an error of a combined change is about the time (the rest is about the metadata). */
function aboutTime(err: unknown): boolean {
  return (
    StorageError.is(err) &&
    (err.reason === 'is-folder' || err.reason === 'not-owner' || err.reason === 'time-out-of-range')
  );
}

/**
 * Apply `change` to `ref`: the metadata and the time as one change (see
 * {@link StorageProvider.changeMetadata}: all or none, across a crash too where the storage can),
 * then the mark, which needs no more than seeing the resource and is never taken back once made
 * (another request may have relied on it). When the mark fails, what the change before it did is
 * put back (metadata exactly; a time to the precision the storage keeps) and the failure is
 * returned; undefined when all went through. Keys and values that would be refused are refused
 * before anything changes.
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
  // What was there, to put back when the mark fails after the rest changed something.
  const before =
    change.favorite !== undefined && (keys.length > 0 || change.mtime !== undefined)
      ? await s.stat(ref, { fields: [], ...(keys.length && { metadataKeys: keys }) })
      : undefined;
  if (keys.length || change.mtime !== undefined) {
    try {
      await s.changeMetadata(
        ref,
        { ...(keys.length && { set, unset }), ...(change.mtime !== undefined && { mtime: change.mtime }) },
        opts,
      );
    } catch (error) {
      return {
        part: change.mtime !== undefined && (!keys.length || aboutTime(error)) ? 'mtime' : 'metadata',
        error,
      };
    }
  }
  if (change.favorite !== undefined) {
    try {
      await s.setFavorite(ref, change.favorite);
    } catch (error) {
      if (before) {
        await s
          .changeMetadata(
            ref,
            {
              ...(keys.length && restoring(keys, before.metadata)),
              ...(change.mtime !== undefined && { mtime: before.mtime }),
            },
            opts,
          )
          .catch(() => {});
      }
      return { part: 'favorite', error };
    }
  }
  return undefined;
}
