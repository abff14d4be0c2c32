import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** Writes a whole response; never cached, as every probe and scrape wants the current state. */
export function sendPlain(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.statusCode = status;
  res.setHeader('content-type', contentType);
  res.setHeader('cache-control', 'no-store');
  res.end(body);
}

/**
 * The Prometheus text exposition of a registry. A failing collector answers 500 naming
 * only the error's class: its message could carry a connection string.
 */
export async function sendMetrics(res: ServerResponse, registry: Registry): Promise<void> {
  try {
    const body = await registry.metrics();
    sendPlain(res, 200, registry.contentType, body);
  } catch (error) {
    sendPlain(
      res,
      500,
      'text/plain; charset=utf-8',
      `metrics collection failed: ${(error as Error).constructor.name}\n`,
    );
  }
}

export interface MonitoringServerOptions {
  host: string;
  /** 0: a free port (tests); the bound one is `port`. */
  port: number;
  registry: Registry;
}

/**
 * Liveness (`GET /healthz`) and Prometheus metrics (`GET /metrics`) on a port of their own,
 * for an app without an HTTP server (the audit app). Plain node:http rather than Nest's
 * express adapter: two fixed routes do not need a framework, and the app stays a
 * microservice. The refresher serves the same two answers from its HealthController.
 */
export class MonitoringServer {
  private constructor(private readonly server: Server) {}

  static async listen(options: MonitoringServerOptions): Promise<MonitoringServer> {
    const server = createServer((req, res) => void route(req, res, options.registry));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject).listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new MonitoringServer(server);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Stops accepting and waits for open requests; idle keep-alive connections (a scraper's) are dropped by close itself. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function route(req: IncomingMessage, res: ServerResponse, registry: Registry): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return sendPlain(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  if (path === '/healthz') return sendPlain(res, 200, 'application/json; charset=utf-8', '{"status":"ok"}');
  if (path === '/metrics') return sendMetrics(res, registry);
  sendPlain(res, 404, 'text/plain; charset=utf-8', 'not found\n');
}
