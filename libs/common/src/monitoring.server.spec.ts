import { Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MonitoringServer } from './monitoring.server.js';

/** The audit app's /healthz and /metrics server, on a free loopback port in this process. */
describe('MonitoringServer', () => {
  let server: MonitoringServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(registry: Registry): Promise<string> {
    server = await MonitoringServer.listen({ host: '127.0.0.1', port: 0, registry });
    return `http://127.0.0.1:${server.port}`;
  }

  it('answers liveness and the registry in the Prometheus text format, uncached', async () => {
    const registry = new Registry();
    new Gauge({ name: 'tk_test_gauge', help: 'a gauge', registers: [registry] }).set(42);
    const base = await start(registry);
    const health = await fetch(`${base}/healthz?probe=1`);
    expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }]);
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toBe(registry.contentType);
    expect(metrics.headers.get('cache-control')).toBe('no-store');
    expect(await metrics.text()).toMatch(/^tk_test_gauge 42$/m);
  });

  it('answers 404 elsewhere and 405 to anything but GET or HEAD', async () => {
    const base = await start(new Registry());
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics/x`)).status).toBe(404);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
  });

  it('answers 500 naming only the error class when a collector fails: its message may hold a secret', async () => {
    const registry = new Registry();
    new Gauge({
      name: 'tk_failing',
      help: 'fails',
      registers: [registry],
      collect() {
        throw new TypeError('connect postgres://u:pw-secret@db/x failed');
      },
    });
    const res = await fetch(`${await start(registry)}/metrics`);
    expect(res.status).toBe(500);
    const body = await res.text();
    expect(body).toBe('metrics collection failed: TypeError\n');
    expect(body).not.toContain('pw-secret');
  });

  it('refuses to start on a port in use, and answers nothing once closed', async () => {
    const base = await start(new Registry());
    // A keep-alive connection left idle must not hold close() up.
    await fetch(`${base}/healthz`);
    await expect(
      MonitoringServer.listen({ host: '127.0.0.1', port: server!.port, registry: new Registry() }),
    ).rejects.toThrow(/EADDRINUSE/);
    await server!.close();
    server = undefined;
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
