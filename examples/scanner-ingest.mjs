// A "scanner" writes files straight into a watched folder of the storage, the way instruments,
// rsync jobs and admins do. Stowage notices each one once it is complete, a before-hook validates
// it (TIFF images only), accepted files get an id, checksums and metadata and are announced;
// refused ones go to the space's trash, with the reason.
// Run: npm run build && node examples/scanner-ingest.mjs [storage-root]
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StorageError, StorageProvider } from 'stowage';
import { createPosixDriver } from 'stowage/drivers/posix';

const root = process.argv[2] ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-scanner-')));
const driver = await createPosixDriver({ root });
const storage = new StorageProvider({ drivers: driver });
const space = await storage
  .getSpace('project/microscope')
  .catch(() => storage.createSpace({ type: 'project', name: 'Microscope', alias: 'project/microscope' }));
const folder = await driver.spacePath(space.id);
await fsp.mkdir(path.join(folder, 'incoming'), { recursive: true });

// Validation: only TIFF images (little- or big-endian magic number) are accepted from the scanner.
storage.events.before(async (change) => {
  if (change.origin !== 'external' || change.op !== 'write') return;
  const file = path.join(folder, change.path);
  const head = Buffer.alloc(4);
  const fh = await fsp.open(file, 'r');
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  const tiff = head.equals(Buffer.from('II*\0', 'latin1')) || head.equals(Buffer.from('MM\0*', 'latin1'));
  if (!tiff) throw new StorageError('PERMISSION_DENIED', `${change.path} is not a TIFF image`);
  return { metadata: { instrument: 'scope-3', validated: new Date().toISOString() } };
});

const accepted = [];
const refused = [];
storage.events.on((e) => {
  if (e.origin !== 'external') return;
  if (e.type === 'created' && e.kind === 'file') accepted.push(e);
  if (e.type === 'trashed') refused.push(e);
});

const observer = storage.watch();
await observer.ready;

// The scanner: another process, writing each image in several chunks, as instruments do.
const scanner = `
const fs = require('node:fs');
const dir = process.argv[1];
(async () => {
  for (let i = 1; i <= 5; i++) {
    const fd = fs.openSync(dir + '/scan-' + i + '.tif', 'w');
    fs.writeSync(fd, Buffer.from('II*\\0', 'latin1'));
    for (let c = 0; c < 4; c++) {
      fs.writeSync(fd, Buffer.alloc(64 * 1024, i));
      await new Promise((r) => setTimeout(r, 20));
    }
    fs.closeSync(fd);
  }
  fs.writeFileSync(dir + '/notes.txt', 'not an image');
})();`;
await new Promise((resolve, reject) => {
  const child = spawn(process.execPath, ['-e', scanner, path.join(folder, 'incoming')], { stdio: 'inherit' });
  child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`scanner exited with ${code}`))));
});

const deadline = Date.now() + 20_000;
while ((accepted.length < 5 || refused.length < 1) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 50));
}
await observer.idle();

for (const e of accepted) {
  const info = await storage.stat({ resourceId: e.resourceId }, { metadataKeys: ['instrument'] });
  console.log(
    `accepted ${info.path} (${info.size} bytes) sha1 ${info.checksums?.sha1} id ${info.id.opaqueId} instrument ${info.metadata?.instrument}`,
  );
}
for (const e of refused) console.log(`refused  ${e.path}: ${e.reason} (in the trash, restorable)`);
// The scanner's last writes may still be in the kernel's queue when idle() looks: the tree size
// follows them a moment later.
const expected = 5 * (4 + 4 * 64 * 1024);
let incoming = await storage.stat({ space: space.id, path: '/incoming' });
for (const until = Date.now() + 10_000; incoming.size !== expected && Date.now() < until; ) {
  await new Promise((r) => setTimeout(r, 50));
  await observer.idle();
  incoming = await storage.stat({ space: space.id, path: '/incoming' });
}
console.log(`/incoming holds ${incoming.size} bytes (tree size kept by the observer)`);

await observer.close();
await storage.close();
// (a storage made for this run goes with it; one given on the command line stays)
if (!process.argv[2]) await fsp.rm(root, { recursive: true, force: true });
if (accepted.length !== 5 || refused.length !== 1 || incoming.size !== expected) {
  console.error(
    `expected 5 accepted and 1 refused holding ${expected} bytes, got ${accepted.length} and ${refused.length} holding ${incoming.size}`,
  );
  process.exit(1);
}
