/**
 * Traces, when the standard variables ask for them: a worker with OTEL_EXPORTER_OTLP_ENDPOINT set
 * sends (OTLP over HTTP/JSON, to a receiver in this test) a span per run, under pg-boss's process
 * span for the job, with the run's pg queries as its children. Without those variables, no tracer
 * provider is set up at all.
 */
import { createServer } from 'node:http';
import { beforeAll, expect, it } from '@jest/globals';
import { tracesRequested } from '../../src/telemetry/metrics.ts';
import { runCli } from '../helpers/cli-process.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { FAST_WORKER_ENV, installFor, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const db = useTestDatabase();
beforeAll(async () => {
  await installFor(db.url, { TASKER__staleness_detection__enabled: 'false' });
});

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}

it('tracing is on only when OTEL_TRACES_EXPORTER or an OTLP endpoint asks for it', () => {
  expect(tracesRequested({})).toBe(false);
  expect(tracesRequested({ OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
  expect(tracesRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })).toBe(
    false,
  );
  expect(tracesRequested({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
  expect(tracesRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
  expect(tracesRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' })).toBe(
    true,
  );
});

it('a run is a span under pg-boss process span, with its pg queries under it', async () => {
  const spans: Span[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const payload = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: Span[] }> }>;
        };
        for (const r of payload.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as { port: number }).port;
  const worker = startWorkerProcess(db.url, {
    TASKER__staleness_detection__enabled: 'false',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '200',
  });
  try {
    await waitForWorkers(db.pool, 1);
    const run = await runCli(['enqueue', 'detect-stale', '--wait'], {
      DATABASE_URL: db.url,
      ...FAST_WORKER_ENV,
    });
    expect(run.code).toBe(0);
    const runSpan = await waitFor('the run span', async () =>
      spans.find((s) => s.name === 'run tasker.detect-stale-tasks'),
    );
    const attribute = (s: Span, key: string) => s.attributes.find((a) => a.key === key)?.value;
    expect(attribute(runSpan, 'tasker.outcome')).toEqual({ stringValue: 'completed' });
    expect(attribute(runSpan, 'tasker.trigger')).toEqual({ stringValue: 'adhoc' });
    const children = await waitFor('pg spans under the run', async () => {
      const c = spans.filter((s) => s.parentSpanId === runSpan.spanId);
      return c.length > 0 ? c : undefined;
    });
    expect(children.some((s) => /^pg\.query/.test(s.name))).toBe(true);
    const parent = spans.find((s) => s.spanId === runSpan.parentSpanId);
    expect(parent?.name).toMatch(/process tasker\.detect-stale-tasks/);
    expect(parent?.traceId).toBe(runSpan.traceId);
  } finally {
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
    receiver.close();
  }
});
