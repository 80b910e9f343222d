/**
 * The words a command prints when its database fails it: a cut connection is said to be cut (a
 * look in flight when PostgreSQL stopped), not passed on as the driver's bare message.
 */
import { expect, it } from '@jest/globals';
import { describeFailure, targetOf } from '../../src/cli/failures.ts';

const target = targetOf('postgres://postgres@127.0.0.1:5433/app', false);

it('a connection cut in use says it was cut, where, and the likely causes', () => {
  expect(describeFailure(new Error('Connection terminated unexpectedly'), target)).toBe(
    'the connection to 127.0.0.1:5433/app was cut (Connection terminated unexpectedly): PostgreSQL stopped or restarted, or something between here and there closed it',
  );
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  expect(describeFailure(reset, target)).toMatch(
    /^the connection to 127\.0\.0\.1:5433\/app was cut \(read ECONNRESET\)/,
  );
});

it('a refused connection still says nothing listens there', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' });
  expect(describeFailure(refused, target)).toMatch(
    /^cannot connect to 127\.0\.0\.1:5433\/app: nothing listens there/,
  );
});
