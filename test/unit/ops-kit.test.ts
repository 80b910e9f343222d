/**
 * The operations kit stays whole: every alert has a runbook section in the README and both a firing
 * and a non-firing case in alerts.test.yml (promtool runs them in CI), and every tasker metric the
 * alerts and the dashboard use is one the README lists. (The alerts and dashboard queries are run
 * against real workers in test/e2e/prometheus.test.ts.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from '@jest/globals';
import { projectRoot } from '../../src/paths.ts';

const read = (...path: string[]) => readFileSync(join(projectRoot, ...path), 'utf8');
const alerts = read('ops', 'prometheus', 'alerts.yml');
const tests = read('ops', 'prometheus', 'alerts.test.yml');
const dashboard = read('ops', 'grafana', 'dashboard.json');
const readme = read('README.md');
const names = [...alerts.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);

it('ships a dozen alerts', () => {
  expect(names.length).toBeGreaterThanOrEqual(12);
});

it.each(names.map((n) => [n]))('%s links to its README runbook section, which exists', (name) => {
  const rule = alerts.slice(alerts.indexOf(`- alert: ${name}`)).split(/\n {6}- alert: /)[0]!;
  expect(rule).toContain(`runbook_url: README.md#${name.toLowerCase()}`);
  expect(rule).toMatch(/severity: (critical|warning)/);
  expect(rule).toMatch(/summary: /);
  expect(rule).toMatch(/description: /);
  expect(readme).toContain(`\n#### ${name}\n`);
});

it.each(names.map((n) => [n]))('%s has a firing and a non-firing unit test case', (name) => {
  const cases = tests.split(/\n\s+- eval_time: /).filter((c) => c.includes(`alertname: ${name}\n`));
  expect(cases.some((c) => /exp_alerts: \[\]/.test(c))).toBe(true);
  expect(cases.some((c) => /exp_labels:/.test(c))).toBe(true);
});

it('every tasker metric the alerts and the dashboard use is in the README metric list', () => {
  const used = new Set(
    [...`${alerts}\n${dashboard}`.matchAll(/\btasker_[a-z_]+/g)]
      .map((m) => m[0].replace(/_(bucket|count|sum)$/, ''))
      .filter((n) => !n.endsWith('_')), // tasker_dlq_* in prose
  );
  const listed = readme.slice(readme.indexOf('## Metrics and alerts'), readme.indexOf('## Configuration'));
  for (const metric of used)
    expect({ metric, listed: listed.includes(`\`${metric}\``) }).toEqual({ metric, listed: true });
});
