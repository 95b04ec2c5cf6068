import { createMemoryDriver } from '../../src/drivers/memory/index.js';
import { describeConformance } from '../conformance/index.js';

await describeConformance({ name: 'memory', createDriver: async () => createMemoryDriver() });
