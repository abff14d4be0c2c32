/**
 * The live demo: the seed story (a service whose OAuth2 token keeps expiring) with
 * Tokenkeeper doing the refreshing. A sandbox provider issues 20-second tokens with
 * rotating refresh tokens; the refresher keeps one credential fresh; two consumer
 * services call the provider's protected API about once a second through the client.
 * Halfway, the provider revokes the current access token, to show the 401 path.
 *
 *   npm run demo                 # 90 s
 *   DEMO_SECONDS=30 npm run demo
 */
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { redactServers } from '@tokenkeeper/nats';
import { tokenEventFilter } from '@tokenkeeper/contracts';
import { startSandboxProvider } from '@tokenkeeper/testing';
import { loadConfig } from '../../refresher/src/config/app-config.js';
import { parseProvidersDocument } from '../../refresher/src/providers/providers-file.loader.js';
import { startRefresher } from '../../refresher/src/refresher.app.js';
import { startAudit } from '../../audit/src/audit.app.js';
import { loadAuditConfig } from '../../audit/src/config/audit-config.js';
import { DemoConsumer, type ConsumerSummary } from './demo-consumer.js';
import { DemoLog, preview } from './demo-log.js';

const seconds = Number(process.env.DEMO_SECONDS ?? 90);
if (!Number.isFinite(seconds) || seconds <= 0) {
  process.stderr.write('DEMO_SECONDS must be a positive number\n');
  process.exit(2);
}
const TOKEN_TTL_SECONDS = Number(process.env.DEMO_TOKEN_TTL_SECONDS ?? 20);
const key = { tenant: 'demo', connection: 'sandbox-api' };
const log = new DemoLog();

const config = loadConfig({
  ...process.env,
  DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tokenkeeper_demo',
  HTTP_PORT: process.env.HTTP_PORT ?? '0',
  REPLICA_ID: 'demo-refresher',
  // Refresh 7 s before expiry, so that consumers (which want 5 s left) always have the pushed token in time.
  REFRESH_MIN_MARGIN_SECONDS: process.env.REFRESH_MIN_MARGIN_SECONDS ?? '7',
});

log.section(`Tokenkeeper demo: ${seconds} s, tokens live ${TOKEN_TTL_SECONDS} s`);
// Each run starts from an empty demo database: credentials left by an earlier run belong
// to a sandbox provider that no longer exists.
const auditConfig = loadAuditConfig({
  ...process.env,
  AUDIT_DATABASE_URL: process.env.AUDIT_DATABASE_URL ?? `${config.database.url}_audit`,
  AUDIT_CONSUMER_NAME: process.env.AUDIT_CONSUMER_NAME ?? 'tokenkeeper-demo-audit',
});
await resetDatabase(config.database.url);
await resetDatabase(auditConfig.database.url);
const demoStartedAt = new Date().toISOString();
const sandbox = await startSandboxProvider({ accessTokenTtlSeconds: TOKEN_TTL_SECONDS, rotateRefreshTokens: true });
log.line('provider', `sandbox OAuth2 provider on ${sandbox.url} (rotating refresh tokens, reuse revokes the family)`);

const providers = parseProvidersDocument(JSON.stringify({ providers: { sandbox: sandbox.providerSettings() } }), 'json', {});
// The refresher's own log is JSON; here only its warnings reach stderr, to keep the story readable.
const refresherLogger = new PinoLoggerService(createLogger({ level: process.env.LOG_LEVEL ?? 'warn', name: 'refresher', destination: process.stderr as never }));
const refresher = await startRefresher({ config, logger: refresherLogger, providers });
log.line('refresher', `started: PostgreSQL ${new URL(config.database.url).pathname.slice(1)}, NATS ${redactServers(config.nats.servers).join(',')}`);
const audit = await startAudit({ config: auditConfig, logger: refresherLogger });
log.line('audit', `started: durable JetStream consumer into ${new URL(auditConfig.database.url).pathname.slice(1)}`);

const nc = await connect({ servers: config.nats.servers });
let refreshes = 0;
let lastExpiry = 0;
nc.subscribe(tokenEventFilter('*', key.tenant, key.connection), {
  callback: (_err, msg) => {
    const event = msg.json<{ version: number; expiresAt: string; accessToken?: string; code?: string; message?: string }>();
    const kind = msg.subject.split('.')[1];
    if (kind === 'refreshed') {
      refreshes++;
      const early = lastExpiry ? ((lastExpiry - Date.now()) / 1000).toFixed(1) : '?';
      log.line('refresher', `token refreshed → v${event.version} ${preview(event.accessToken ?? '')}, ${early} s before the old one expired; pushed to consumers`);
    } else if (kind === 'registered') {
      log.line('refresher', `credential registered as v${event.version}`);
    } else if (kind === 'failed') {
      log.line('refresher', `refresh failed: ${event.code} ${event.message}`);
    }
    if (event.expiresAt) lastExpiry = Date.parse(event.expiresAt);
  },
});

// The seed's "initial OAuth2 token loaded": an access token and a refresh token from the provider.
const initial = sandbox.issueTokens();
const registered = await nc.request('token.register', JSON.stringify({ ...key, provider: 'sandbox', ...initial }), { timeout: 10_000 });
const reply = registered.json<{ ok: boolean; error?: { message: string } }>();
if (!reply.ok) throw new Error(`register failed: ${reply.error?.message}`);

const consumers = [
  new DemoConsumer('billing', config.nats.servers.join(','), key, sandbox.apiUrl, log),
  new DemoConsumer('reports', config.nats.servers.join(','), key, sandbox.apiUrl, log),
];
await Promise.all(consumers.map((c, i) => new Promise<void>((resolve) => setTimeout(() => void c.start(1_000).then(resolve), i * 500))));
log.line('demo', 'two consumer services are calling the protected API every second');

const revokeAt = setTimeout(async () => {
  const got = await nc.request('token.get', JSON.stringify(key), { timeout: 5_000 });
  const token = got.json<{ token: { accessToken: string; version: number } }>().token;
  sandbox.revokeAccessToken(token.accessToken);
  log.line('provider', `revoked access token v${token.version} early (as a provider might): the next calls get 401`);
}, (seconds * 1000) / 2);

let stopping = false;
async function finish(reason: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearTimeout(revokeAt);
  log.line('demo', `${reason}; stopping`);
  const summaries: ConsumerSummary[] = await Promise.all(consumers.map((c) => c.stop()));
  await refresher.close(); // publishes what is left in the outbox before it stops
  const auditCounts = await countAuditRecords();
  await audit.close();
  await nc.drain();
  await sandbox.close();

  const calls = summaries.reduce((n, s) => n + s.calls, 0);
  const failed = summaries.reduce((n, s) => n + s.failed, 0);
  log.section('Summary');
  process.stdout.write(`API calls made:      ${calls}\n`);
  process.stdout.write(`API calls failed:    ${failed}\n`);
  process.stdout.write(`token refreshes:     ${refreshes} (provider saw ${sandbox.stats.refreshGrants} refresh grants, ${sandbox.stats.reuseDetected} reused refresh tokens)\n`);
  for (const s of summaries) {
    process.stdout.write(
      `${s.name.padEnd(8)} versions seen ${s.versionsSeen.join(', ')}; tokens from cache ${s.fromCache}, fetched via token.get ${s.fetched}, pushed updates ${s.pushedUpdates}, 401 retries ${s.retriedAfter401}\n`,
    );
  }
  process.stdout.write(`audit records:       ${auditCounts}\n`);
  process.stdout.write(failed === 0 ? '\nNo API call failed: every token was refreshed before it expired.\n' : `\n${failed} API calls failed.\n`);
  process.exit(failed === 0 && calls > 0 ? 0 : 1);
}

/** What the audit app stored for this run, by type (it may take a moment to catch up). */
async function countAuditRecords(): Promise<string> {
  let counts = new Map<string, number>();
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const res = await nc.request('audit.query', JSON.stringify({ ...key, since: demoStartedAt, limit: 1000 }), { timeout: 2_000 });
      const body = res.json<{ ok: boolean; items?: { type: string }[] }>();
      counts = new Map();
      for (const item of body.items ?? []) counts.set(item.type, (counts.get(item.type) ?? 0) + 1);
      if ((counts.get('refreshed') ?? 0) >= refreshes) break;
    } catch {
      // not answering yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const parts = [...counts].map(([type, n]) => `${n} ${type}`);
  return parts.length ? `${parts.join(', ')} (secret-free, stored once each)` : 'none received';
}

process.once('SIGINT', () => void finish('Ctrl-C'));
process.once('SIGTERM', () => void finish('SIGTERM'));
setTimeout(() => void finish(`${seconds} s elapsed`), seconds * 1000);

async function resetDatabase(url: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!/^tokenkeeper_demo|^tk_/.test(name)) return; // never drop a database the demo did not create
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
