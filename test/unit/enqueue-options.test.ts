/**
 * What `enqueue` sends: only the options the operator gave (the worker fills in the rest from its
 * own configuration), including an explicit --no-dry-run, which must reach a worker whose
 * configuration says dry_run = true.
 */
import { expect, it } from '@jest/globals';
import { archiveOptionsGiven } from '../../src/cli/commands/archive.ts';
import { detectOptionsGiven } from '../../src/cli/commands/detect-stale.ts';
import { UsageError } from '../../src/errors.ts';

it('sends nothing the operator did not give', () => {
  expect(detectOptionsGiven({})).toEqual({});
  expect(archiveOptionsGiven({ json: true, wait: true })).toEqual({});
});

it('sends --dry-run and --no-dry-run as they were given, and refuses both at once', () => {
  expect(detectOptionsGiven({ 'no-dry-run': true })).toEqual({ dry_run: false });
  expect(detectOptionsGiven({ 'dry-run': true, 'batch-size': 5 })).toEqual({ dry_run: true, batch_size: 5 });
  expect(archiveOptionsGiven({ 'no-dry-run': true, template: 'invoice' })).toEqual({
    dry_run: false,
    task_name: 'invoice',
  });
  expect(archiveOptionsGiven({ 'batch-target-ms': 200, 'duty-cycle-percent': 25 })).toEqual({
    batch_target_ms: 200,
    duty_cycle_percent: 25,
  });
  expect(() => archiveOptionsGiven({ 'dry-run': true, 'no-dry-run': true })).toThrow(UsageError);
});
