import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  freePort,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawCaller } from '../../refresher/test/refresher.harness.js';
import { auditEnv, ChildApp, Db, REPO_ROOT } from './audit.harness.js';

/**
 * The audit app as `npm run start:audit` runs it (its own process, configured from the
 * environment) serves /metrics and /healthz on AUDIT_MONITORING_PORT: after it stores a
 * record that happened two minutes ago, a scrape over HTTP shows an ingest lag of about two
 * minutes, every audit series the alert rules read, text promtool accepts, and no secret.
 */
const LAG_SECONDS = 120;
const DB_PASSWORD = 'pw-never-in-metrics-7f3a';
const RECORD_SECRET = 'refresh_token=rt_never_in_metrics_91c2';

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The tokenkeeper_audit_* names the alert rules' expressions read. */
function auditSeriesOfRules(): string[] {
  const file = readFileSync(join(REPO_ROOT, 'deploy/prometheus/tokenkeeper-alerts.yml'), 'utf8');
  const rules = (parse(file) as { groups: { rules: { expr: string }[] }[] }).groups.flatMap((g) => g.rules);
  return [...new Set(rules.flatMap((r) => [...r.expr.matchAll(/\btokenkeeper_audit_[a-z_]+\b/g)].map((m) => m[0])))];
}

describe('audit: monitoring port (/metrics, /healthz)', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let caller: RawCaller;
  let db: Db;
  let audit: ChildApp;
  let base: string;
  let scraped: string;

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_amon')]);
    caller = await RawCaller.connect(nats.url);
    await (await jetstreamManager(caller.nc)).streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECT_FILTER] });
    db = new Db(database.url);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // Trust authentication takes any password: one in the URL shows whether it leaks into the series.
    const url = new URL(database.url);
    url.password = DB_PASSWORD;
    audit = new ChildApp(
      'apps/audit/src/main.ts',
      auditEnv(nats.url, url.toString(), { LOG_LEVEL: 'info', AUDIT_MONITORING_PORT: String(port) }),
      'audit started',
    );
    await audit.start(60_000);
  }, 90_000);

  afterAll(async () => {
    await audit?.stop();
    await caller?.close();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  it('logs where it listens: loopback by default', () => {
    expect(audit.log).toContain(`"monitoring":"127.0.0.1:${new URL(base).port}"`);
  });

  it('answers /healthz, and nothing but GET on known paths', async () => {
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('shows the ingest lag of the last stored batch on /metrics', { timeout: 60_000 }, async () => {
    const eventId = randomUUID();
    const record = {
      eventId,
      type: 'failed',
      tenant: 'acme',
      connection: 'crm',
      provider: 'sandbox',
      version: 1,
      outcome: 'retryable',
      code: 'server_error',
      message: `HTTP 500 ${RECORD_SECRET}`,
      at: new Date(Date.now() - LAG_SECONDS * 1000).toISOString(),
      replica: 'synthetic',
    };
    await jetstream(caller.nc).publish(`audit.token.failed.acme.crm`, encodeJson(record), { msgID: eventId });
    await waitFor(async () => (await db.count('SELECT count(*) AS n FROM audit_records')) === 1, {
      timeoutMs: 30_000,
      message: 'the record to be stored',
    });
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    scraped = await response.text();
    const lag = Number(/^tokenkeeper_audit_ingest_lag_seconds (\S+)$/m.exec(scraped)?.[1]);
    // Two minutes before it was stored, give or take the start and a slow machine.
    expect(lag).toBeGreaterThanOrEqual(LAG_SECONDS);
    expect(lag).toBeLessThan(LAG_SECONDS + 60);
    expect(scraped).toMatch(/^process_resident_memory_bytes \d/m);
  });

  it('holds no secret: neither the database password nor anything from a record', () => {
    expect(scraped).toBeDefined();
    for (const secret of [DB_PASSWORD, RECORD_SECRET, 'rt_never', 'acme', 'crm']) expect(scraped).not.toContain(secret);
  });

  it('exports every tokenkeeper_audit_* series the alert rules read', () => {
    const names = auditSeriesOfRules();
    expect(names).toContain('tokenkeeper_audit_ingest_lag_seconds');
    for (const name of names) expect(scraped, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
  });

  it.skipIf(!hasPromtool())('passes `promtool check metrics`: it parses, and no lint finding is ours', () => {
    const checked = spawnSync('promtool', ['check', 'metrics'], { input: scraped, encoding: 'utf8' });
    const findings = `${checked.stdout}${checked.stderr}`.split('\n').filter(Boolean);
    // Exit 1 is a parse error; 3 lint findings, which prom-client's own default gauges named
    // nodejs_*_total draw (the refresher's too): those are allowed, any other is not.
    expect(checked.status, findings.join('\n')).not.toBe(1);
    expect(findings.filter((line) => !line.startsWith('nodejs_'))).toEqual([]);
  });
});
