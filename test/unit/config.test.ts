/**
 * Configuration: defaults, layers, environment variables, and every error path (each names the
 * dotted key, the value, where it came from and what is allowed).
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { parse } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { ConfigError } from '../../src/errors.ts';
import { defaultConfigDir } from '../../src/paths.ts';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

/** A config directory holding base.toml (copied) and the given environment file. */
function configDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-config-'));
  mkdirSync(join(dir, 'environments'));
  writeFileSync(join(dir, 'base.toml'), readFileSync(join(defaultConfigDir, 'base.toml')));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('defaults', () => {
  it('config/base.toml lists every key with exactly the schema defaults (upstream values)', () => {
    const base = parse(readFileSync(join(defaultConfigDir, 'base.toml'), 'utf8'));
    expect(base).toEqual(ConfigSchema.parse({}));
    expect(ConfigSchema.parse({})).toMatchObject({
      staleness_detection: {
        enabled: true,
        detection_interval_seconds: 300,
        batch_size: 100,
        dry_run: false,
        thresholds: {
          waiting_for_dependencies_minutes: 60,
          waiting_for_retry_minutes: 30,
          steps_in_process_minutes: 30,
          task_max_lifetime_hours: 24,
        },
        actions: {
          auto_transition_to_error: true,
          auto_move_to_dlq: true,
          emit_events: true,
          event_channel: 'task_staleness_detected',
        },
      },
      dlq: {
        enabled: true,
        auto_dlq_on_staleness: true,
        include_full_task_snapshot: true,
        max_pending_age_hours: 168,
      },
      archive: { enabled: true, retention_days: 30, archive_batch_size: 1000, archive_interval_hours: 24 },
    });
  });

  it.each([
    ['test', 60, 10, 5, 2, 5, 1],
    ['development', 120, 50, 15, 10, 15, 4],
    ['production', 600, 200, 120, 60, 60, 48],
  ])('TASKER_ENV=%s applies upstream values', (env, interval, batch, deps, retry, steps, lifetime) => {
    const { config, environment } = loadConfig({ env: { TASKER_ENV: env } });
    expect(environment).toBe(env);
    expect(config.staleness_detection).toMatchObject({
      detection_interval_seconds: interval,
      batch_size: batch,
      thresholds: {
        waiting_for_dependencies_minutes: deps,
        waiting_for_retry_minutes: retry,
        steps_in_process_minutes: steps,
        task_max_lifetime_hours: lifetime,
      },
    });
  });

  it('defaults to development and freezes the result', () => {
    const { config, environment } = loadConfig({ env: {} });
    expect(environment).toBe('development');
    expect(Object.isFrozen(config.dlq.reasons)).toBe(true);
    expect(() => {
      (config.dlq as { enabled: boolean }).enabled = false;
    }).toThrow(TypeError);
  });
});

describe('environment variables', () => {
  it('DATABASE_URL sets database.url', () => {
    const { config, sources } = loadConfig({ env: { DATABASE_URL: 'postgres://u@h:5/d' } });
    expect(config.database.url).toBe('postgres://u@h:5/d');
    expect(sources.get('database.url')).toBe('DATABASE_URL');
  });

  it('TASKER__section__key sets any key, typed as TOML', () => {
    const { config, sources } = loadConfig({
      env: {
        TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '45',
        TASKER__dlq__reasons__worker_unavailable: 'false',
        TASKER__logging__format: 'json',
      },
    });
    expect(config.staleness_detection.thresholds.waiting_for_retry_minutes).toBe(45);
    expect(config.dlq.reasons.worker_unavailable).toBe(false);
    expect(config.logging.format).toBe('json');
    expect(sources.get('dlq.reasons.worker_unavailable')).toBe('TASKER__dlq__reasons__worker_unavailable');
  });

  it('environment variables win over the environment file, which wins over base', () => {
    const dir = configDir({
      'environments/test.toml': '[staleness_detection]\nbatch_size = 7\nmax_batches_per_run = 3\n',
    });
    const { config } = loadConfig({
      configDir: dir,
      env: { TASKER_ENV: 'test', TASKER__staleness_detection__batch_size: '9' },
    });
    expect(config.staleness_detection.batch_size).toBe(9);
    expect(config.staleness_detection.max_batches_per_run).toBe(3);
  });
});

describe('errors name the key, the value, the source and what is allowed', () => {
  it('an unknown key in a file, with a suggestion', () => {
    const dir = configDir({
      'environments/test.toml': '[staleness_detection.thresholds]\nwaiting_for_retry_minute = 5\n',
    });
    expect(problemsOf(() => loadConfig({ configDir: dir, env: { TASKER_ENV: 'test' } }))).toEqual([
      expect.stringMatching(
        /^staleness_detection\.thresholds\.waiting_for_retry_minute \(from .*environments\/test\.toml\): unknown key; did you mean staleness_detection\.thresholds\.waiting_for_retry_minutes\?/,
      ),
    ]);
  });

  it('an unknown section', () => {
    const dir = configDir({ 'environments/test.toml': '[stalenes_detection]\nenabled = true\n' });
    const [problem] = problemsOf(() => loadConfig({ configDir: dir, env: { TASKER_ENV: 'test' } }));
    expect(problem).toMatch(/^stalenes_detection .*unknown key; did you mean staleness_detection\?/);
  });

  it('an unknown key from the environment', () => {
    expect(problemsOf(() => loadConfig({ env: { TASKER__dlq__max_pending_age_hour: '5' } }))).toEqual([
      expect.stringContaining(
        'dlq.max_pending_age_hour (from TASKER__dlq__max_pending_age_hour): unknown key; did you mean dlq.max_pending_age_hours?',
      ),
    ]);
  });

  it.each([
    [
      'TASKER__staleness_detection__batch_size',
      '0',
      'staleness_detection.batch_size = 0',
      'expected a whole number from 1 to 10000',
    ],
    [
      'TASKER__staleness_detection__batch_size',
      '10001',
      'staleness_detection.batch_size = 10001',
      'expected a whole number from 1 to 10000',
    ],
    [
      'TASKER__staleness_detection__batch_size',
      '2.5',
      'staleness_detection.batch_size = 2.5',
      'expected a whole number from 1 to 10000',
    ],
    [
      'TASKER__staleness_detection__batch_size',
      '"many"',
      'staleness_detection.batch_size = "many"',
      'expected a whole number from 1 to 10000',
    ],
    [
      'TASKER__staleness_detection__thresholds__waiting_for_dependencies_minutes',
      '1441',
      'staleness_detection.thresholds.waiting_for_dependencies_minutes = 1441',
      'expected a whole number from 1 to 1440',
    ],
    [
      'TASKER__staleness_detection__thresholds__task_max_lifetime_hours',
      '169',
      'staleness_detection.thresholds.task_max_lifetime_hours = 169',
      'expected a whole number from 1 to 168',
    ],
    [
      'TASKER__staleness_detection__enabled',
      '"yes"',
      'staleness_detection.enabled = "yes"',
      'expected true or false',
    ],
    [
      'TASKER__staleness_detection__detection_interval_seconds',
      '30',
      'staleness_detection.detection_interval_seconds = 30',
      'cron, which has minute resolution',
    ],
    [
      'TASKER__staleness_detection__detection_interval_seconds',
      '420',
      'staleness_detection.detection_interval_seconds = 420',
      'expected one of 60, 120, 180',
    ],
    [
      'TASKER__staleness_detection__actions__event_channel',
      '"Bad Channel"',
      'staleness_detection.actions.event_channel = "Bad Channel"',
      'NOTIFY channel name',
    ],
    [
      'TASKER__dlq__max_pending_age_hours',
      '0',
      'dlq.max_pending_age_hours = 0',
      'expected a whole number from 1 to 8760',
    ],
    [
      'TASKER__archive__retention_days',
      '0',
      'archive.retention_days = 0',
      'expected a whole number from 1 to 3650',
    ],
    [
      'TASKER__archive__archive_interval_hours',
      '5',
      'archive.archive_interval_hours = 5',
      'expected one of 1, 2, 3, 4, 6, 8, 12, 24, 168',
    ],
    [
      'TASKER__database__url',
      '"mysql://x"',
      'database.url = "mysql://x"',
      'expected a postgres:// or postgresql:// URL',
    ],
    ['TASKER__database__pool_max', '0', 'database.pool_max = 0', 'expected a whole number from 1 to 100'],
    [
      'TASKER__logging__level',
      '"loud"',
      'logging.level = "loud"',
      'expected one of "error", "warn", "info", "debug"',
    ],
  ])('%s=%s', (variable, value, shown, allowed) => {
    const [problem] = problemsOf(() => loadConfig({ env: { [variable]: value } }));
    expect(problem).toContain(`${shown} (from ${variable}): `);
    expect(problem).toContain(allowed);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(() =>
      loadConfig({
        env: { TASKER__staleness_detection__batch_size: '0', TASKER__dlq__enabled: '3', TASKER__nope: '1' },
      }),
    );
    expect(problems).toHaveLength(3);
  });

  it('refuses detection that could never act', () => {
    const [problem] = problemsOf(() =>
      loadConfig({
        env: {
          TASKER__staleness_detection__actions__auto_transition_to_error: 'false',
          TASKER__staleness_detection__actions__auto_move_to_dlq: 'false',
        },
      }),
    );
    expect(problem).toMatch(
      /^staleness_detection\.actions \(from TASKER__.*\): .*both false.*dry_run = true/,
    );
  });

  it('a file that is not TOML: file, line and column, and the other problems still reported', () => {
    const dir = configDir({
      'environments/test.toml': '[dlq]\nenabled = true\n[staleness_detection\nbatch_size = 1',
    });
    const problems = problemsOf(() =>
      loadConfig({ configDir: dir, env: { TASKER_ENV: 'test', TASKER__archive__retention_days: '0' } }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/environments\/test\.toml:3:\d+ is not valid TOML: \S/),
      expect.stringMatching(/^archive\.retention_days = 0 \(from TASKER__archive__retention_days\)/),
    ]);
    expect(problems[0]).not.toMatch(/Invalid TOML document|\n/);
  });

  it("a table in one variable sets its keys, keeps the section's others, and a bad key names the variable", () => {
    const { config, sources } = loadConfig({
      env: { TASKER__archive: '{ retention_days = 7 }', TASKER__archive__archive_batch_size: '50' },
    });
    expect(config.archive.retention_days).toBe(7);
    expect(config.archive.archive_batch_size).toBe(50);
    expect(config.archive.policies.archive_completed).toBe(true);
    expect(sources.get('archive.retention_days')).toBe('TASKER__archive');
    expect(problemsOf(() => loadConfig({ env: { TASKER__archive: '{ retention_days = "x" }' } }))).toEqual([
      expect.stringMatching(
        /^archive\.retention_days = "x" \(from TASKER__archive\): expected a whole number/,
      ),
    ]);
    expect(problemsOf(() => loadConfig({ env: { TASKER__archive: '{ retention_days = ' } }))).toEqual([
      expect.stringMatching(/^TASKER__archive: not a valid TOML table or array: /),
    ]);
  });

  it('never shows a password, even in a malformed DATABASE_URL', () => {
    for (const url of ['postgres//admin:s3cret-pw@db.internal/prod', 'mysql://admin:s3cret-pw@db/prod']) {
      const problems = problemsOf(() => loadConfig({ env: { DATABASE_URL: url } }));
      expect(problems).toEqual([
        expect.stringMatching(/^database\.url = "\S*admin:\*\*\*@db\S*" \(from DATABASE_URL\)/),
      ]);
      expect(problems.join('\n')).not.toContain('s3cret');
    }
  });

  it.each([
    ['not a host', 'not a host'],
    ['a NUL', 'local\u0000host'],
    ['a URL', 'http://0.0.0.0'],
  ])('a metrics.host that is %s is refused, naming metrics.host', (_what, host) => {
    expect(problemsOf(() => loadConfig({ env: { TASKER__metrics__host: JSON.stringify(host) } }))).toEqual([
      expect.stringMatching(/^metrics\.host = .* \(from TASKER__metrics__host\): expected an IP address/),
    ]);
  });

  it.each(['0.0.0.0', '127.0.0.1', '::1', 'localhost', 'metrics-1.example.internal'])(
    'metrics.host %s is accepted',
    (host) => {
      expect(loadConfig({ env: { TASKER__metrics__host: JSON.stringify(host) } }).config.metrics.host).toBe(
        host,
      );
    },
  );

  it('a missing base file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-config-'));
    expect(problemsOf(() => loadConfig({ configDir: dir, env: {} }))).toEqual([
      expect.stringMatching(/base\.toml is missing/),
    ]);
  });

  it('an unknown TASKER_ENV', () => {
    expect(problemsOf(() => loadConfig({ env: { TASKER_ENV: 'staging' } }))).toEqual([
      expect.stringMatching(/^TASKER_ENV = "staging": expected one of test, development, production/),
    ]);
  });

  it('a malformed TASKER__ variable', () => {
    expect(problemsOf(() => loadConfig({ env: { TASKER__dlq____enabled: 'true' } }))).toEqual([
      expect.stringMatching(/^TASKER__dlq____enabled: expected TASKER__<section>__<key>/),
    ]);
  });
});
