// Embed Stowage in an app with the in-memory driver: no native dependencies, nothing on disk.
// Run: npm run build && node examples/embed-memory.mjs
import { collect, StorageError, StorageProvider } from 'stowage';
import { createMemoryDriver } from 'stowage/drivers/memory';

const storage = new StorageProvider({ drivers: createMemoryDriver() });
const space = await storage.createSpace({ type: 'project', name: 'Lab notebook', quota: 10_000_000 });

await storage.mkdir({ space: space.id, path: 'runs/2026-11' }, { parents: true });
const file = await storage.write({ space: space.id, path: 'runs/2026-11/notes.md' }, '# Run 42\nAll good.\n');
console.log(`wrote ${file.path} (${file.size} bytes), sha1 ${file.checksums.sha1}, id ${file.id.opaqueId}`);

// Ids survive renames; references can be an id plus a relative path.
await storage.move({ space: space.id, path: 'runs/2026-11' }, { space: space.id, path: 'runs/november' });
const byId = await storage.stat({ resourceId: file.id });
console.log(`after the rename, the same id is at ${byId.path}`);

// Reads take ranges and HTTP-style conditions, answered before any content is touched.
const range = await storage.read({ resourceId: file.id }, { range: { start: 2, end: 7 } });
console.log(`bytes 2-7: ${(await collect(range.body)).toString()}`);
const unchanged = await storage.read({ resourceId: file.id }, { conditions: { ifNoneMatch: [file.etag] } });
console.log(`conditional read: ${unchanged.status}`);

// A file's time can be set without rewriting it (touch -d): the etag changes, the bytes do not.
const touched = await storage.setMtime({ resourceId: file.id }, Date.parse('2026-11-01T08:00:00Z'));
console.log(`touched: ${new Date(touched.mtime).toISOString()}, etag changed: ${touched.etag !== file.etag}`);
// When it came to be stays put through renames, rewrites and new times.
console.log(`created unchanged: ${touched.created === file.created}`);

// Errors carry a closed set of codes.
try {
  await storage.write({ space: space.id, path: 'missing/folder/x.txt' }, 'x');
} catch (err) {
  if (!(err instanceof StorageError)) throw err;
  console.log(`refused: ${err.code} (${err.reason})`);
}
for await (const entry of storage.list({ space: space.id, path: 'runs' }))
  console.log(`  ${entry.type} ${entry.name} ${entry.size} B`);
console.log(`space uses ${(await storage.getSpace(space.id)).used} bytes`);
