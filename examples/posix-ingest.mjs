// Ingest a local folder into a POSIX space, streaming each file with its checksum verified, then
// check the storage with fsck. This is what a migration script or an instrument's uploader does.
// Run: npm run build && node examples/posix-ingest.mjs [source-folder] [storage-root]
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StorageError, StorageProvider } from 'stowage';
import { createPosixDriver } from 'stowage/drivers/posix';

const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-example-'));
const source = process.argv[2] ?? (await makeSampleTree(path.join(tmp, 'instrument-output')));
const root = process.argv[3] ?? path.join(tmp, 'storage');

const driver = await createPosixDriver({ root });
const storage = new StorageProvider({ drivers: driver });
let space;
try {
  space = await storage.getSpace('project/ingest');
} catch (err) {
  if (!StorageError.is(err, 'NOT_FOUND')) throw err;
  space = await storage.createSpace({ type: 'project', name: 'Ingest', alias: 'project/ingest' });
}

let files = 0;
let bytes = 0;
async function ingest(dir, rel) {
  for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name);
    const to = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      await storage.mkdir({ space: space.id, path: to }, { parents: true });
      await ingest(from, to);
    } else if (entry.isFile()) {
      const st = await fsp.stat(from);
      // Hash the source as it is on disk (streamed: files can be larger than memory).
      const hash = createHash('sha1');
      await pipeline(fs.createReadStream(from), hash);
      const sha1 = hash.digest('hex');
      // The upload is refused, and leaves nothing, if the bytes do not match the checksum.
      await storage.write({ space: space.id, path: to }, fs.createReadStream(from), {
        size: st.size,
        mtime: st.mtimeMs,
        checksums: { sha1 },
      });
      files++;
      bytes += st.size;
    }
  }
}
await ingest(source, '');
console.log(`ingested ${files} files (${bytes} bytes) from ${source} into ${space.alias}`);
console.log(
  `on disk, as they were: ${await driver.spacePath(space.id)}` +
    (process.argv[3] ? '' : ' (a temporary folder, removed on exit: pass a storage root to keep it)'),
);

const [report] = await driver.fsck({ space: space.id });
console.log(
  `fsck: ${report.files} files, ${report.folders} folders, problems: ${JSON.stringify(report.problems)}`,
);
if (Object.keys(report.problems).length) process.exitCode = 1;
await storage.close();
if (!process.argv[3]) await fsp.rm(tmp, { recursive: true, force: true });

async function makeSampleTree(dir) {
  for (const [name, size] of [
    ['run-001/frame-0001.tif', 40_000],
    ['run-001/frame-0002.tif', 40_000],
    ['run-001/meta.json', 120],
    ['README.txt', 64],
  ]) {
    await fsp.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fsp.writeFile(path.join(dir, name), Buffer.alloc(size, name.length));
  }
  return dir;
}
