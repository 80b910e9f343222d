import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { SERVICE_NAME, SERVICE_VERSION } from './service.ts';

/**
 * The web process's own metrics, served on its `/metrics` (the API's port): how many requests it
 * refused, by why. A meter provider of its own, not the worker's NodeSDK, so that `web` exports
 * only what it does (and `npm start`, which runs a worker in the same process, keeps the two apart:
 * the worker's on metrics.port, the web server's on web.port).
 *
 * Reasons:
 *   no_token      an API request without `Authorization: Bearer` (401)
 *   bad_token     a token that does not authenticate: malformed, unknown, wrong, expired, revoked
 *                 (401; also a failed console sign-in)
 *   bad_session   a console session cookie that stands for no one: signed out, expired, idle,
 *                 its token revoked or expired, or never issued
 *   forbidden     a valid token without the permission (403, API and console)
 *   csrf          a console form without the session's CSRF value, or a sign-in form from elsewhere
 *   rate_limited  refused (429) because its address was refused too often just before
 */
export const REFUSAL_REASONS = [
  'no_token',
  'bad_token',
  'bad_session',
  'forbidden',
  'csrf',
  'rate_limited',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface HttpMetrics {
  refused(reason: RefusalReason): void;
  handleScrape(request: IncomingMessage, response: ServerResponse): void;
  shutdown(): Promise<void>;
}

export function createHttpMetrics(options: { instanceId?: string } = {}): HttpMetrics {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: SERVICE_NAME,
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
      'service.instance.id': options.instanceId ?? randomUUID(),
    }),
    readers: [exporter],
  });
  const meter = provider.getMeter('tasker-lifecycle-web', SERVICE_VERSION);
  const refused = meter.createCounter('tasker.http.requests_refused', {
    unit: '{request}',
    description:
      'Requests the web process refused, by reason: no_token, bad_token, bad_session, forbidden, csrf, rate_limited.',
  });
  // Present at 0 from the start, so increase() sees the first refusal.
  for (const reason of REFUSAL_REASONS) refused.add(0, { reason });
  return {
    refused: (reason) => refused.add(1, { reason }),
    handleScrape: (request, response) => exporter.getMetricsRequestHandler(request, response),
    shutdown: () => provider.shutdown(),
  };
}
