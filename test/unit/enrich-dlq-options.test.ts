/**
 * The enrichment job's options: fed from the configuration (whose defaults base.toml repeats),
 * strictly validated, the sends detection makes (one per batch, carrying its entries) and how
 * queued requests are merged into one run. No database needed.
 */
import { describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
  enrichmentRequestsFor,
  MAX_ENTRY_UUIDS,
  REQUESTS_PER_RUN,
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
      max_attempts: 8,
      retry_delay_seconds: 60,
      retry_delay_max_seconds: 3600,
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
    ['no attempt at all', { max_attempts: 0 }, 'max_attempts'],
    [
      'a first retry delay over the longest',
      { retry_delay_seconds: 7200, retry_delay_max_seconds: 3600 },
      'retry_delay_seconds',
    ],
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
  const id = (n: number) => `0190a3b4-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;

  it("gives one send for a batch's entries, keyed by its smallest entry", () => {
    const a = '0190a3b4-0000-7000-8000-00000000000A';
    const b = '0190a3b4-0000-7000-8000-00000000000b';
    const requests = enrichmentRequestsFor([b, a, a.toLowerCase(), null, undefined]);
    expect(requests).toEqual([
      { data: { entry_uuids: [a.toLowerCase(), b] }, singletonKey: `dlq-entries:${a.toLowerCase()}` },
    ]);
    expect(EnrichDlqSnapshotsOptions.safeParse({ ...defaults, ...requests[0]!.data }).success).toBe(true);
    expect(enrichmentRequestsFor([null])).toEqual([]);
  });

  it('splits a batch of more than MAX_ENTRY_UUIDS entries into requests the options accept', () => {
    const ids = Array.from({ length: 2 * MAX_ENTRY_UUIDS + 1 }, (_, i) => id(i));
    const requests = enrichmentRequestsFor(ids.toReversed());
    expect(requests.map((r) => r.data.entry_uuids.length)).toEqual([MAX_ENTRY_UUIDS, MAX_ENTRY_UUIDS, 1]);
    expect(requests.map((r) => r.singletonKey)).toEqual([
      `dlq-entries:${id(0)}`,
      `dlq-entries:${id(MAX_ENTRY_UUIDS)}`,
      `dlq-entries:${id(2 * MAX_ENTRY_UUIDS)}`,
    ]);
    expect(requests.flatMap((r) => r.data.entry_uuids)).toEqual(ids);
    for (const r of requests) {
      expect(EnrichDlqSnapshotsOptions.safeParse({ ...defaults, ...r.data }).success).toBe(true);
    }
  });
});

describe('requests served together', () => {
  const merge = (requests: Array<Partial<EnrichDlqSnapshotsOptions>>) =>
    enrichJob.batch!.merge(requests.map((r) => EnrichDlqSnapshotsOptions.parse({ ...defaults, ...r })));
  const a = '0190a3b4-0000-7000-8000-00000000000a';
  const b = '0190a3b4-0000-7000-8000-00000000000b';

  it('are at most REQUESTS_PER_RUN per run', () => {
    expect(enrichJob.batch!.size).toBe(REQUESTS_PER_RUN);
  });

  it('entry requests: their entries, no sweep', () => {
    const merged = merge([{ entry_uuids: [a] }, { entry_uuids: [b, a] }]);
    expect(merged.entry_uuids).toEqual([a, b]);
    expect(merged.sweep).toBeUndefined();
  });

  it('a sweep among entry requests: their entries, then a sweep; neither is dropped', () => {
    const merged = merge([{ entry_uuids: [a] }, {}, { entry_uuids: [b] }]);
    expect(merged).toMatchObject({ entry_uuids: [a, b], sweep: true });
    expect(merge([{}, {}])).toMatchObject({ entry_uuids: [] });
  });
});
