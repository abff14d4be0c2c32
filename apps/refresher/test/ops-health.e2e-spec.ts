import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_GAUGE_TTL_MS } from '../src/observability/ops-metrics.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';
import { baseUrlOf, blockDatabase, httpGet, sample, unblockDatabase } from './ops-support.js';

/**
 * /healthz and /readyz against real dependencies: a per-file nats-server that is stopped
 * and started again, and a throwaway database that is cut off (connections refused and
 * terminated) and let back in. The machine's PostgreSQL server itself is never stopped.
 */
describe('refresher ops: health and readiness', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let base: string;

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_ready'),
      startSandboxProvider(),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    base = baseUrlOf(refresher.app);
  });

  afterAll(async () => {
    if (db) await unblockDatabase(db.name).catch(() => undefined);
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const readyz = async () => {
    const answer = await httpGet(base, '/readyz');
    return { status: answer.status, body: answer.json(), contentType: answer.contentType };
  };

  it('answers /healthz 200 and /readyz 200 with every check up', async () => {
    const health = await httpGet(base, '/healthz');
    expect(health.status).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });

    const ready = await readyz();
    expect(ready.status).toBe(200);
    expect(ready.contentType).toMatch(/application\/json/);
    expect(ready.body.status).toBe('ok');
    expect(ready.body.down).toEqual([]);
    expect(Object.keys(ready.body.checks).sort()).toEqual(['migrations', 'nats', 'postgres']);
    for (const check of Object.values<any>(ready.body.checks)) expect(check.status).toBe('up');
  });

  it('turns /readyz 503 naming nats while NATS is gone, and 200 once it is back', async () => {
    const before = sample((await httpGet(base, '/metrics')).text, 'tokenkeeper_nats_reconnects_total');
    expect(before).toBe(0);

    await nats.stop();
    const down = await waitFor(
      async () => {
        const r = await readyz();
        return r.status === 503 ? r : null;
      },
      { timeoutMs: 10_000, message: '/readyz 503 after the NATS server stopped' },
    );
    expect(down.body.status).toBe('unavailable');
    expect(down.body.down).toEqual(['nats']);
    expect(down.body.checks.nats.status).toBe('down');
    expect(down.body.checks.nats.reason).toMatch(/disconnected|reconnecting/);
    expect(down.body.checks.postgres.status).toBe('up');
    // Liveness does not depend on the dependencies: restarting the process would not help.
    expect((await httpGet(base, '/healthz')).status).toBe(200);
    expect(sample((await httpGet(base, '/metrics')).text, 'tokenkeeper_nats_connected')).toBe(0);

    await nats.restart();
    const up = await waitFor(
      async () => {
        const r = await readyz();
        return r.status === 200 ? r : null;
      },
      { timeoutMs: 15_000, message: '/readyz 200 after the NATS server came back' },
    );
    expect(up.body.down).toEqual([]);
    const metrics = (await httpGet(base, '/metrics')).text;
    expect(sample(metrics, 'tokenkeeper_nats_reconnects_total')).toBe(1);
    expect(sample(metrics, 'tokenkeeper_nats_connected')).toBe(1);
  });

  it('turns /readyz 503 naming postgres while its database refuses connections, and 200 once it accepts them again', async () => {
    // A credential counted before the cut, so that "its last value" is not a 0 a reset would give too.
    const caller = await RawCaller.connect(nats.url);
    try {
      expect(
        (
          await caller.admin('register', {
            tenant: 'acme',
            connection: 'gauge',
            provider: 'sandbox',
            ...sandbox.issueTokens(),
            expiresIn: 3600,
          })
        ).ok,
      ).toBe(true);
    } finally {
      await caller.close();
    }
    await waitFor(
      async () => sample((await httpGet(base, '/metrics')).text, 'tokenkeeper_credentials', { status: 'active' }) === 1,
      {
        timeoutMs: DB_GAUGE_TTL_MS * 3,
        message: 'the active gauge counting the credential',
      },
    );
    try {
      await blockDatabase(db.name);
      const down = await waitFor(
        async () => {
          const r = await readyz();
          return r.status === 503 ? r : null;
        },
        { timeoutMs: 10_000, message: '/readyz 503 after the database was cut off' },
      );
      expect(down.body.down).toEqual(['postgres']);
      expect(down.body.checks.postgres.status).toBe('down');
      expect(down.body.checks.postgres.reason).toBeTruthy();
      expect(down.body.checks.nats.status).toBe('up');
      // Stays 503 while the database stays unreachable (not a one-off failed probe).
      expect((await readyz()).status).toBe(503);
      expect((await httpGet(base, '/healthz')).status).toBe(200);
      // A scrape still answers, with the database-backed gauges at their last values (after
      // the cached count has aged out, so that this scrape did ask the database).
      await sleep(DB_GAUGE_TTL_MS + 500);
      const metrics = await httpGet(base, '/metrics');
      expect(metrics.status).toBe(200);
      expect(sample(metrics.text, 'tokenkeeper_credentials', { status: 'active' })).toBe(1);
    } finally {
      await unblockDatabase(db.name);
    }
    const up = await waitFor(
      async () => {
        const r = await readyz();
        return r.status === 200 ? r : null;
      },
      { timeoutMs: 15_000, message: '/readyz 200 after the database accepts connections again' },
    );
    expect(up.body.checks.postgres.status).toBe('up');
  });

  it('answers 503 naming shutdown from the first moment of shutdown', async () => {
    const { ReadinessService } = await import('../src/observability/readiness.service.js');
    const readiness = refresher.app.get(ReadinessService);
    readiness.markStopping();
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.down).toEqual(['shutdown']);
  });
});
