import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, startNatsServer, startSandboxProvider } from '@tokenkeeper/testing';
import { expect, it } from 'vitest';
import { dashboard } from '../../../tools/grafana-dashboard.js';
import { AuditMetrics } from '../../audit/src/audit.metrics.js';
import { baseUrlOf, httpGet, REPO_ROOT } from './ops-support.js';
import { sandboxProviders, startTestRefresher, testEnv, testKeys } from './refresher.harness.js';

/** The committed Grafana dashboard is the generated one, and queries only series the refresher exports. */
it('deploy/grafana/tokenkeeper.json is up to date and every series it queries is on /metrics', async () => {
  const committed = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy/grafana/tokenkeeper.json'), 'utf8'));
  expect(committed, 'regenerate with npm run dashboard').toEqual(JSON.parse(JSON.stringify(dashboard())));
  const queried = new Set(
    (committed.panels as { targets: { expr: string }[] }[]).flatMap((p) =>
      p.targets.flatMap((t) => t.expr.match(/tokenkeeper_[a-z_]+/g) ?? []),
    ),
  );
  expect(queried.size).toBeGreaterThanOrEqual(9);

  const [nats, db, sandbox] = await Promise.all([
    startNatsServer(),
    createTestDatabase('tk_dash'),
    startSandboxProvider(),
  ]);
  const refresher = await startTestRefresher(
    testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
    sandboxProviders(sandbox),
  );
  try {
    const metrics = await httpGet(baseUrlOf(refresher.app), '/metrics');
    expect(metrics.status).toBe(200);
    // The audit app's series, from its own registry (audit-monitoring.e2e-spec.ts scrapes its HTTP port).
    const text = metrics.text + (await new AuditMetrics().registry.metrics());
    const exported = new Set(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
        type === 'histogram' ? [`${name}_bucket`] : [name],
      ),
    );
    for (const series of queried) expect(exported, series).toContain(series);
  } finally {
    await refresher.close();
    await Promise.all([sandbox.close(), nats.stop()]);
    await db.drop();
  }
});
