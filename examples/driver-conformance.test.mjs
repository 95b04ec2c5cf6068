// How a third-party driver proves it behaves like the others: run the shared suite on it.
// Run: npx vitest run examples/driver-conformance.test.mjs
import { createMemoryDriver } from 'stowage/drivers/memory';
import { describeConformance } from 'stowage/testing';

await describeConformance({
  name: 'memory driver, as a package user sees it',
  createDriver: async () => createMemoryDriver(),
});
