// Spaces, grants, trash, versions and locks, as users see them through sessions.
// Run: npm run build && node examples/collaboration.mjs
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { collect, fromLetters, ROLES, StaticIdentitySource, StorageError, StorageProvider } from 'stowage';
import { createPosixDriver } from 'stowage/drivers/posix';

const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-collab-'));
const identity = await StaticIdentitySource.create({
  groups: [{ id: 'lab', name: 'The lab' }],
  users: [
    { id: 'u-alan', username: 'alan', createSpaces: true },
    { id: 'u-mary', username: 'mary', groups: ['lab'] },
    { id: 'u-eve', username: 'eve' },
    { id: 'u-root', username: 'root', admin: true },
  ],
});
const storage = new StorageProvider({ drivers: await createPosixDriver({ root }), identity });

// Alan creates a project space; he becomes a manager of it, not its owner.
const alan = await storage.as('alan');
const project = await alan.createSpace({ type: 'project', name: 'Microscopy 2026' });
const at = (p) => ({ space: project.id, path: p });
await alan.mkdir(at('raw'));
await alan.write(at('raw/img-001.tif'), Buffer.alloc(2048, 1));
await alan.write(at('plan.md'), '# plan v1\n');
await alan.write(at('plan.md'), '# plan v2\n');

// He shares: the lab group may edit raw/, Mary becomes a second manager, Eve gets nothing.
await alan.setGrant(at('raw'), {
  grantee: { type: 'group', id: 'lab' },
  permissions: fromLetters(ROLES.editor),
});
await alan.setGrant(at(''), {
  grantee: { type: 'user', id: 'u-mary' },
  permissions: fromLetters(ROLES.manager),
});
const eve = await storage.as('eve');
try {
  await eve.stat(at('plan.md'));
} catch (err) {
  console.log(`eve sees the plan? ${err instanceof StorageError ? err.code : err}`);
}

// Versions: every overwrite keeps the previous content.
const [v1] = await alan.listVersions(at('plan.md'));
console.log(
  `plan.md has a version of ${v1.size} bytes: "${(await collect((await alan.readVersion(at('plan.md'), v1.key)).body)).toString().trim()}"`,
);

// Locks: an editor app locks a document; others cannot write it without the lock id.
const mary = await storage.as('mary');
const lock = await mary.setLock(at('plan.md'), { lockId: 'office-42', type: 'exclusive', appName: 'Office' });
try {
  await alan.write(at('plan.md'), 'overwrite?');
} catch (err) {
  console.log(`alan writes a locked file: ${err.code}`);
}
await mary.write(at('plan.md'), '# plan v3\n', { lockId: lock.lockId });
await mary.unlock(at('plan.md'), lock.lockId);

// Trash: deleting keeps the item (and its id) until it is purged.
const img = await mary.stat(at('raw/img-001.tif'));
await mary.delete(at('raw/img-001.tif'));
const [item] = await all(mary.listTrash(project.id));
console.log(`in the trash: ${item.path} (${item.size} bytes, deleted by ${item.deletedBy})`);
const back = await mary.restoreTrash(project.id, item.key);
console.log(`restored with the same id: ${back.id.opaqueId === img.id.opaqueId}`);

// Favorites: each user's own marks; nobody else sees them, and the file does not change.
await mary.setFavorite(at('raw/img-001.tif'), true);
const marked = [];
for await (const f of mary.listFavorites()) marked.push(f.path);
const seenByAlan = await alan.stat(at('raw/img-001.tif'), { fields: ['favorite'] });
console.log(`mary's favorites: ${marked.join(', ')}; a favorite of alan's? ${seenByAlan.favorite}`);

// Alan leaves. The project, its files and its other manager are untouched.
identity.remove('alan');
await (await storage.as('root')).offboardUser('u-alan');
await mary.updateSpace(project.id, { name: 'Microscopy 2026 (continued)' });
const space = await mary.getSpace(project.id);
console.log(
  `${space.name}: ${space.usage.files} bytes of files, ${space.usage.versions} in versions, ${space.usage.trash} in the trash`,
);

await storage.close();
await fsp.rm(root, { recursive: true, force: true });

/** The items of an async iterable (Array.fromAsync needs Node 22). */
async function all(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}
