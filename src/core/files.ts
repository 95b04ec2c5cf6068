/**
 * Small files written whole or not at all (upload states, notes, user lists).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * Replace `file` with `text`, whole or not at all, even on kill -9: a temp file next to it
 * (readable by this user only), synced, renamed over it. With `syncFolder`, the folder is synced
 * too, so the rename survives a power cut.
 */
export async function replaceFile(
  file: string,
  text: string,
  opts: { syncFolder?: boolean } = {},
): Promise<void> {
  const tmp = `${file}.${randomUUID()}`;
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  if (opts.syncFolder) {
    const dir = await fsp.open(path.dirname(file), 'r');
    await dir.sync().finally(() => dir.close());
  }
}
