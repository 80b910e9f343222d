import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The worker's HTTP endpoints:
 *   /healthz  200 while the process is running and not shutting down (liveness);
 *   /readyz   200 when the database answers within 2 s and the worker has started (readiness);
 *   /metrics  Prometheus text (src/telemetry/metrics.ts), when metrics are on.
 */
export interface HealthState {
  stopping: boolean;
  started: boolean;
  checkDatabase(): Promise<void>;
  metrics?: (request: IncomingMessage, response: ServerResponse) => void;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(
  host: string,
  port: number,
  state: HealthState,
): Promise<HealthServer> {
  const server: Server = createServer(async (req, res) => {
    const send = (status: number, body: unknown, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(typeof body === 'string' ? body : `${JSON.stringify(body)}\n`);
    };
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz')
        return send(state.stopping ? 503 : 200, { status: state.stopping ? 'stopping' : 'ok' });
      if (path === '/readyz') {
        if (state.stopping || !state.started)
          return send(503, { status: state.stopping ? 'stopping' : 'starting' });
        try {
          await withTimeout(state.checkDatabase(), 2000);
          return send(200, { status: 'ready' });
        } catch (err) {
          return send(503, { status: 'database unavailable', error: (err as Error).message });
        }
      }
      if (path === '/metrics' && state.metrics) return state.metrics(req, res);
      return send(404, {
        error: 'not found',
        endpoints: ['/healthz', '/readyz', ...(state.metrics ? ['/metrics'] : [])],
      });
    } catch (err) {
      return send(500, { error: (err as Error).message });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
