// Serve a POSIX storage over CS3 gRPC + its HTTP data plane, and use it as a CS3 client would:
// raw RPCs with a Reva access token, bytes through the data plane, then the same storage as a
// Driver over the wire.
// Run: npm run build && node examples/cs3-serve.mjs
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StaticIdentitySource, StorageProvider } from 'stowage';
import { Cs3Client, createCs3ClientDriver, mintRevaToken, Resources, RpcCode, serveCs3 } from 'stowage/cs3';
import { createPosixDriver } from 'stowage/drivers/posix';

const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stowage-cs3-'));
const jwtSecret = 'example-secret-shared-with-the-gateway';
const users = [{ id: 'u-ada', username: 'ada', createSpaces: true }];
const provider = new StorageProvider({
  drivers: await createPosixDriver({ root: path.join(dir, 'data') }),
  identity: await StaticIdentitySource.create({ users }),
});
const server = await serveCs3({
  provider,
  jwtSecret,
  grpc: '127.0.0.1:0', // any free port
  http: '127.0.0.1:0',
  uploadsDir: path.join(dir, 'uploads'), // resumable (TUS) uploads survive restarts here
});
console.log(`CS3 gRPC on ${server.grpcAddress}, data plane at ${server.dataUrl}`);

// A token as a Reva gateway would mint it (HS256, the user in Go-JSON shape).
const token = mintRevaToken(users[0], jwtSecret, { ttlSeconds: 600 });
const cs3 = new Cs3Client(server.grpcAddress, { token });

// SpacesAPI: a project space. Domain errors come back in `status`, with gRPC OK.
const created = await cs3.spacesOk('createStorageSpace', { type: 'project', name: 'Beamline 7' });
const root = created.storageSpace.root;
const ref = (p) => ({ resourceId: root, path: `./${p}` });

// Upload: InitiateFileUpload returns endpoints; the bytes go over HTTP with the transfer token.
const up = await cs3.providerOk('initiateFileUpload', { ref: ref('run-001.csv') });
const simple = up.protocols.find((p) => p.protocol === 'simple');
const put = await fetch(simple.uploadEndpoint, { method: 'PUT', body: 't,counts\n0,12\n1,15\n' });
console.log(`uploaded: HTTP ${put.status}, OC-FileId ${put.headers.get('oc-fileid')}`);

// Stat and list through gRPC.
const { info } = await cs3.providerOk('stat', { ref: ref('run-001.csv') });
const algo = Resources.ResourceChecksumType[info.checksum.type].replace('RESOURCE_CHECKSUM_TYPE_', '');
console.log(`stat: ${info.path} ${info.size} bytes, etag ${info.etag}, ${algo} ${info.checksum.sum}`);
const listed = await cs3.providerOk('listContainer', { ref: ref('') });
console.log(`list: ${listed.infos.map((i) => i.path).join(', ')}`);

// A missing file is a status, not an exception.
const missing = await cs3.provider('stat', { ref: ref('nope.csv') });
if (missing.status.code !== RpcCode.Code.CODE_NOT_FOUND) throw new Error('expected NOT_FOUND');

// Download through the data plane, with a range.
const down = await cs3.providerOk('initiateFileDownload', { ref: ref('run-001.csv') });
const get = await fetch(down.protocols[0].downloadEndpoint, { headers: { range: 'bytes=0-7' } });
console.log(`range read: HTTP ${get.status} ${JSON.stringify(await get.text())}`);

// The same storage as a Driver over the wire: the whole Stowage API, remotely.
const remote = new StorageProvider({
  drivers: await createCs3ClientDriver({ address: server.grpcAddress, token }),
});
await remote.write({ space: root.spaceId, path: 'notes.md' }, '# remote write\n');
const names = [];
for await (const entry of remote.list({ space: root.spaceId, path: '' })) names.push(entry.name);
console.log(`through the client driver: ${names.sort().join(', ')}`);

cs3.close();
await remote.close();
await server.close();
await provider.close();
await fsp.rm(dir, { recursive: true, force: true });
