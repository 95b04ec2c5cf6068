/**
 * The whole driver conformance suite, through the WebDAV door: a WebDAV client driver talking
 * HTTP to the door (`/dav/spaces/...`) over a POSIX driver on this machine's disk.
 */
import { afterAll } from 'vitest';
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
  scale: { manyEntries: 1500, parallel: 12 },
});
