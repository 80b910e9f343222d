/**
 * The newcomer's path, end to end: `npm start` as a person runs it (through npm, with the embedded
 * PostgreSQL), checked from a second process, then Ctrl-C. Slow (about a minute) and run once by
 * .ci/run from a clone in a private directory, not with every `npm test`.
 */
import base from './jest.config.js';

export default {
  ...base,
  roots: ['<rootDir>/test/e2e'],
  testPathIgnorePatterns: ['/node_modules/'],
  globalSetup: undefined,
  globalTeardown: undefined,
  testTimeout: 300_000,
  maxWorkers: 1,
};
