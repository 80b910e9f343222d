/**
 * The enrichment job's options: fed from the configuration (whose defaults base.toml repeats),
 * strictly validated, and the per-entry sends detection makes. No database needed.
 */
import { describe, expect, it } from '@jest/globals';
import {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
  enrichmentRequestsFor,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { ConfigError } from '../../src/errors.ts';

const defaults = enrichmentOptionsFromConfig(ConfigSchema.parse({}));

describe('options', () => {
  it('come from the configuration, whose defaults base.toml repeats', () => {
    const loaded = loadConfig({ env: { TASKER_ENV: 'test' } });
    expect(loaded.config.dlq.enrichment).toEqual(ConfigSchema.parse({}).dlq.enrichment);
    expect(enrichmentOptionsFromConfig(loaded.config)).toEqual({
      entry_uuids: [],
      batch_size: 50,
      max_batches: 20,
      include_full_task_snapshot: true,
      max_list_items: 500,
      max_history_rows: 200,
      max_payload_bytes: 16384,
      max_snapshot_bytes: 1048576,
      batch_statement_timeout_ms: 10000,
    });
    expect(EnrichDlqSnapshotsOptions.safeParse(defaults).success).toBe(true);
  });

  it.each([
    ['batch_size 0', { batch_size: 0 }, 'batch_size'],
    ['a statement timeout under 100 ms', { batch_statement_timeout_ms: 50 }, 'batch_statement_timeout_ms'],
    [
      '1001 entries',
      { entry_uuids: Array.from({ length: 1001 }, () => '0190a3b4-0000-7000-8000-000000000000') },
      'entry_uuids',
    ],
    ['a payload cap under 256 bytes', { max_payload_bytes: 100 }, 'max_payload_bytes'],
    [
      'a payload cap over the snapshot cap',
      { max_payload_bytes: 65536, max_snapshot_bytes: 32768 },
      'max_payload_bytes',
    ],
    ['a string for a boolean', { include_full_task_snapshot: 'yes' }, 'include_full_task_snapshot'],
    ['an unknown key', { max_histroy_rows: 5 }, ''],
  ])('refuse %s', (_label, bad, path) => {
    const parsed = EnrichDlqSnapshotsOptions.safeParse({ ...defaults, ...bad });
    expect(parsed.success).toBe(false);
    const issue = parsed.error!.issues[0]!;
    expect(issue.path.join('.')).toBe(path);
    if (path === '') expect(issue.message).toContain('max_histroy_rows');
  });

  it('a sweep interval cron cannot keep is refused at load, naming the key', () => {
    expect(() =>
      loadConfig({ env: { TASKER_ENV: 'test', TASKER__dlq__enrichment__sweep_interval_seconds: '90' } }),
    ).toThrow(ConfigError);
    try {
      loadConfig({ env: { TASKER_ENV: 'test', TASKER__dlq__enrichment__sweep_interval_seconds: '90' } });
    } catch (err) {
      expect((err as ConfigError).message).toMatch(/dlq\.enrichment\.sweep_interval_seconds.*cron/s);
    }
  });
});

describe('enrichmentRequestsFor', () => {
  it('gives one send per distinct entry, keyed by the entry', () => {
    const a = '0190a3b4-0000-7000-8000-00000000000A';
    const b = '0190a3b4-0000-7000-8000-00000000000b';
    const requests = enrichmentRequestsFor([a, b, a.toLowerCase(), null, undefined]);
    expect(requests).toEqual([
      { data: { entry_uuids: [a.toLowerCase()] }, singletonKey: `dlq-entry:${a.toLowerCase()}` },
      { data: { entry_uuids: [b] }, singletonKey: `dlq-entry:${b}` },
    ]);
    for (const r of requests) {
      expect(EnrichDlqSnapshotsOptions.safeParse({ ...defaults, ...r.data }).success).toBe(true);
    }
  });
});
