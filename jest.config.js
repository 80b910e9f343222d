/**
 * Jest against real PostgreSQL: DATABASE_URL if set (a server where we may create databases), else an
 * embedded PostgreSQL started by test/global-setup.ts. Each test file gets its own database, copied
 * from a migrated template. TypeScript is compiled by SWC as native ES modules (hence
 * --experimental-vm-modules in the npm test script).
 */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // test/e2e runs `npm start` end to end: once, by `npm run test:e2e` (jest.e2e.config.js).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/e2e/'],
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2023', keepClassNames: true },
        module: { type: 'es6' },
      },
    ],
  },
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 60_000,
  maxWorkers: 2,
  watchman: false,
};
