/**
 * The whole driver conformance suite, through the WebDAV door: a WebDAV client driver talking
 * HTTP to the door (`/dav/spaces/...`) over a POSIX driver on this machine's disk.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { StorageProvider } from '../../src/core/provider.js';
import { createWebDavClientDriver } from '../../src/webdav/client-driver.js';
import { describeConformance } from '../conformance/index.js';
import { startDav } from './server.js';

const env = await startDav([{ id: 'u-conf', username: 'conf', admin: true, createSpaces: true }]);
afterAll(() => env.close());
const owner = await env.provider.as('conf');
let n = 0;

await describeConformance({
  name: 'webdav wire (posix behind)',
  createDriver: () => createWebDavClientDriver({ url: env.url, username: 'conf', password: 'pw-conf' }),
  // Spaces are not WebDAV's to create: each test gets one made on the server, found by id.
  async freshSpace(driver) {
    const space = await owner.createSpace({ type: 'project', name: `WebDAV conformance ${++n}` });
    return driver.getSpace(space.id);
  },
  fixedActor: true,
  // Metadata travels as dead properties, named `<namespace>/<name>`.
  propertyKeys: true,
  scale: { manyEntries: 1500, parallel: 12 },
});

describe('webdav client driver: metadata as dead properties', () => {
  it('reads and writes structured values as the door keeps them, and refuses keys no property can carry', async () => {
    const driver = await createWebDavClientDriver({ url: env.url, username: 'conf', password: 'pw-conf' });
    const storage = new StorageProvider({ drivers: driver });
    try {
      const space = await owner.createSpace({ type: 'project', name: 'WebDAV client metadata' });
      await storage.getSpace(space.id);
      const ref = { space: space.id, path: 'm.txt' };
      await storage.write(ref, 'x');
      const rich = '<x0:rich xmlns:x0="urn:y" xml:lang="de">a <x0:b>b</x0:b></x0:rich>';
      await storage.setMetadata(ref, { 'urn:y/rich': rich, 'urn:y/text': '<not> & "markup"', tags: 'a,b' });
      // The same values through the API (another door) and back through the client.
      const direct = (await owner.stat(ref, { metadataKeys: '*' })).metadata;
      expect(direct).toEqual({ 'urn:y/rich': rich, 'urn:y/text': '<not> & "markup"', tags: 'a,b' });
      await owner.setMetadata(ref, { 'urn:y/api': 'set elsewhere', 'no-namespace': 'not a property' });
      expect((await storage.stat(ref, { metadataKeys: '*' })).metadata).toEqual({
        'urn:y/rich': rich,
        'urn:y/text': '<not> & "markup"',
        'urn:y/api': 'set elsewhere',
        tags: 'a,b',
      });
      expect((await storage.stat(ref, { metadataKeys: ['urn:y/api', 'no-namespace'] })).metadata).toEqual({
        'urn:y/api': 'set elsewhere',
      });
      for (const values of [
        { 'no-namespace': 'v' },
        { 'urn:y/not a name': 'v' },
        { 'urn:y/ok': 'bell\u0007' },
      ] as Record<string, string>[])
        await expect(storage.setMetadata(ref, values)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await storage.unsetMetadata(ref, ['urn:y/rich', 'tags']);
      expect((await owner.stat(ref, { metadataKeys: '*' })).metadata).toEqual({
        'urn:y/text': '<not> & "markup"',
        'urn:y/api': 'set elsewhere',
        'no-namespace': 'not a property',
      });
    } finally {
      await storage.close();
    }
  });
});
