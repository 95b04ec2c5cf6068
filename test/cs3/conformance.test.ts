/**
 * The whole driver conformance suite, through the CS3 wire: a Cs3ClientDriver talking gRPC and
 * HTTP to a CS3 server (`serveCs3`) over a POSIX driver on this machine's disk.
 */
import path from 'node:path';
import { afterAll } from 'vitest';
import { createCs3ClientDriver } from '../../src/cs3/client-driver.js';
import { mintRevaToken } from '../../src/cs3/jwt.js';
import { serveCs3 } from '../../src/cs3/serve.js';
import { createPosixDriver } from '../../src/drivers/posix/index.js';
import { StaticIdentitySource, StorageProvider } from '../../src/index.js';
import { describeConformance } from '../conformance/index.js';
import { tempRoot } from '../helpers/tmp.js';

const root = await tempRoot('cs3-conf');
const secret = 'conformance-secret';
const identity = await StaticIdentitySource.create({
  users: [{ id: 'u-conformance', username: 'conformance', admin: true, createSpaces: true }],
});
const posix = await createPosixDriver({ root: path.join(root, 'storage') });
const provider = new StorageProvider({ drivers: posix, identity });
const server = await serveCs3({
  provider,
  jwtSecret: secret,
  grpc: '127.0.0.1:0',
  http: '127.0.0.1:0',
  uploadsDir: path.join(root, 'uploads'),
});
afterAll(async () => {
  await server.close();
  await provider.close();
});
const token = mintRevaToken({ id: 'u-conformance', username: 'conformance' }, secret);

await describeConformance({
  name: 'cs3 wire (posix behind)',
  createDriver: () => createCs3ClientDriver({ address: server.grpcAddress, token }),
  fixedActor: true,
  oneLockId: true,
  scale: { manyEntries: 1500, parallel: 12 },
});
