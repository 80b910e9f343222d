/**
 * The operations kit stays whole: every alert links to its runbook section in docs/alerts.md, which
 * exists, and has both a firing and a non-firing case in alerts.test.yml (promtool runs them in CI,
 * so the annotations the cases expect must be the rules' own), and every tasker metric the alerts
 * and the dashboard use is one docs/metrics.md lists. (The alerts and dashboard queries are run
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
const runbook = read('docs', 'alerts.md');
const metricsPage = read('docs', 'metrics.md');
const names = [...alerts.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);

it('ships a dozen alerts', () => {
  expect(names.length).toBeGreaterThanOrEqual(12);
});

it.each(names.map((n) => [n]))('%s links to its runbook section in docs/alerts.md, which exists', (name) => {
  const rule = alerts.slice(alerts.indexOf(`- alert: ${name}`)).split(/\n {6}- alert: /)[0]!;
  expect(rule).toContain(`runbook_url: docs/alerts.md#${name.toLowerCase()}`);
  expect(rule).toMatch(/severity: (critical|warning)/);
  expect(rule).toMatch(/summary: /);
  expect(rule).toMatch(/description: /);
  expect(runbook).toContain(`\n## ${name}\n`);
});

it('the rule tests expect the runbook links the rules have', () => {
  const urls = (text: string) => new Set([...text.matchAll(/runbook_url: (\S+)/g)].map((m) => m[1]));
  const ruleUrls = urls(alerts);
  expect([...urls(tests)].filter((url) => !ruleUrls.has(url))).toEqual([]);
});

it.each(names.map((n) => [n]))('%s has a firing and a non-firing unit test case', (name) => {
  const cases = tests.split(/\n\s+- eval_time: /).filter((c) => c.includes(`alertname: ${name}\n`));
  expect(cases.some((c) => /exp_alerts: \[\]/.test(c))).toBe(true);
  expect(cases.some((c) => /exp_labels:/.test(c))).toBe(true);
});

it('every tasker metric the alerts and the dashboard use is in the metric list of docs/metrics.md', () => {
  const used = new Set(
    [...`${alerts}\n${dashboard}`.matchAll(/\btasker_[a-z_]+/g)]
      .map((m) => m[0].replace(/_(bucket|count|sum)$/, ''))
      .filter((n) => !n.endsWith('_')), // tasker_dlq_* in prose
  );
  const listed = metricsPage.slice(metricsPage.indexOf('## The metrics'), metricsPage.indexOf('## Traces'));
  for (const metric of used)
    expect({ metric, listed: listed.includes(`\`${metric}\``) }).toEqual({ metric, listed: true });
});
