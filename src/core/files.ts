/**
 * Small files written whole or not at all (upload states, notes, user lists).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * Write `text` to a new temp file next to `file` (readable by this user only), synced: what a
 * caller then renames or links into place is whole, even on kill -9. Returns its path.
 */
export async function syncedTemp(file: string, text: string): Promise<string> {
  const tmp = `${file}.${randomUUID()}`;
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return tmp;
}

/** Sync a folder, so that a rename or link into it survives a power cut. */
export async function syncFolderOf(file: string): Promise<void> {
  const dir = await fsp.open(path.dirname(file), 'r');
  await dir.sync().finally(() => dir.close());
}

/**
 * Replace `file` with `text`, whole or not at all, even on kill -9 (a synced temp file renamed
 * over it). With `syncFolder`, the folder is synced too, so the rename survives a power cut.
 */
export async function replaceFile(
  file: string,
  text: string,
  opts: { syncFolder?: boolean } = {},
): Promise<void> {
  await fsp.rename(await syncedTemp(file, text), file);
  if (opts.syncFolder) await syncFolderOf(file);
}
