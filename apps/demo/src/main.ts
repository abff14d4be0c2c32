/**
 * The live demo: the seed story (a service whose OAuth2 token keeps expiring) with
 * Tokenkeeper doing the refreshing. A sandbox provider issues 20-second tokens with
 * rotating refresh tokens; the refresher keeps two tenants' credentials fresh; two
 * consumer services, one of each tenant, call the provider's protected API about once a
 * second through the client. Halfway, the provider revokes one access token, to show the
 * 401 path. At the end, one consumer asks for the other tenant's token and is refused.
 *
 * Where a nats-server binary is at hand, the demo runs its own with the permissions
 * `tokenctl authz` generates ("secure bus"), every part under its own user;
 * otherwise it uses NATS_URL without permissions ("open bus"). DEMO_BUS=open|secure chooses.
 *
 *   npm run demo                 # 90 s
 *   DEMO_SECONDS=30 npm run demo
 *   DEMO_CONNECT=1 npm run demo  # the first tenant's credential comes through a browser
 *
 * With DEMO_CONNECT=1 the first tenant's credential is not handed over by the sandbox but
 * connected: the demo prints a one-time link, a person opens it, presses Allow on
 * the sandbox's consent page, and the demo goes on once `token.registered` arrives (waiting
 * up to DEMO_SECONDS; the DEMO_SECONDS of the story start after that).
 */
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { redactServers } from '@tokenkeeper/nats';
import {
  adminSubject,
  auditQuerySubject,
  EventSigner,
  generateSigningSeed,
  TOKEN_EVENT_KINDS,
  tokenEventFilter,
  tokenGetSubject,
  type CredentialKey,
} from '@tokenkeeper/contracts';
import { startSandboxProvider } from '@tokenkeeper/sandbox';
import { loadConfig } from '../../refresher/src/config/app-config.js';
import { parseProvidersDocument } from '../../refresher/src/providers/providers-file.loader.js';
import { startRefresher } from '../../refresher/src/refresher.app.js';
import { startAudit } from '../../audit/src/audit.app.js';
import { loadAuditConfig } from '../../audit/src/config/audit-config.js';
import { freePort } from '../../../libs/testing/src/free-port.js';
import { DemoBus, natsServerAvailable, type DemoRole } from './demo-bus.js';
import { connectThroughBrowser } from './demo-connect.js';
import { DemoConsumer, type ConsumerSummary, type ForeignTokenOutcome } from './demo-consumer.js';
import { DemoLog, preview } from './demo-log.js';

const seconds = Number(process.env.DEMO_SECONDS ?? 90);
if (!Number.isFinite(seconds) || seconds <= 0) {
  process.stderr.write('DEMO_SECONDS must be a positive number\n');
  process.exit(2);
}
const TOKEN_TTL_SECONDS = Number(process.env.DEMO_TOKEN_TTL_SECONDS ?? 20);
/** Two tenants, one credential each, and a consumer service of each tenant. */
const services = [
  { service: 'billing', key: { tenant: 'acme', connection: 'sandbox-api' } },
  { service: 'reports', key: { tenant: 'globex', connection: 'sandbox-api' } },
];
const keyName = (k: CredentialKey) => `${k.tenant}/${k.connection}`;
const connectMode = process.env.DEMO_CONNECT === '1';
if (
  process.env.DEMO_CONNECT !== undefined &&
  process.env.DEMO_CONNECT !== '' &&
  process.env.DEMO_CONNECT !== '0' &&
  !connectMode
) {
  process.stderr.write('DEMO_CONNECT must be 1 (or unset)\n');
  process.exit(2);
}
/** With DEMO_CONNECT, this one comes through the browser; the others are handed over as before. */
const connectKey: CredentialKey | undefined = connectMode ? services[0].key : undefined;
const log = new DemoLog();

const requestedBus = process.env.DEMO_BUS;
if (requestedBus !== undefined && requestedBus !== 'secure' && requestedBus !== 'open') {
  process.stderr.write('DEMO_BUS must be secure or open\n');
  process.exit(2);
}
const haveServer = natsServerAvailable(process.env);
if (requestedBus === 'secure' && !haveServer) {
  process.stderr.write('DEMO_BUS=secure needs a nats-server binary (/usr/sbin/nats-server or on PATH)\n');
  process.exit(2);
}
const AUDIT_CONSUMER_NAME = process.env.AUDIT_CONSUMER_NAME ?? 'tokenkeeper-demo-audit';
const bus = await DemoBus.start({
  mode: requestedBus ?? (haveServer ? 'secure' : 'open'),
  openUrl: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
  auditConsumer: AUDIT_CONSUMER_NAME,
  consumers: services.map((s) => ({ tenant: s.key.tenant, service: s.service })),
});
// The connect pages on a port of their own, as in production; the link the person opens points there.
const publicHttpPort = connectMode ? (process.env.PUBLIC_HTTP_PORT ?? String(await freePort())) : undefined;
const connectEnv: Record<string, string> = publicHttpPort
  ? {
      PUBLIC_HTTP_PORT: publicHttpPort,
      PUBLIC_BASE_URL: process.env.PUBLIC_BASE_URL ?? `http://127.0.0.1:${publicHttpPort}`,
    }
  : {};
// The refresher signs token replies and events with this key; the consumers trust only it.
const signingSeed = process.env.EVENT_SIGNING_KEY ?? generateSigningSeed();
const signerPublicKey = EventSigner.fromSeed(signingSeed).publicKey;

const config = loadConfig({
  ...process.env,
  NATS_URL: bus.url,
  ...bus.env('refresher'),
  EVENT_SIGNING_KEY: signingSeed,
  DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tokenkeeper_demo',
  HTTP_PORT: process.env.HTTP_PORT ?? '0',
  REPLICA_ID: 'demo-refresher',
  // Refresh 7 s before expiry, so that consumers (which want 5 s left) always have the pushed token in time.
  REFRESH_MIN_MARGIN_SECONDS: process.env.REFRESH_MIN_MARGIN_SECONDS ?? '7',
  ...connectEnv,
});

log.section(`Tokenkeeper demo: ${seconds} s, tokens live ${TOKEN_TTL_SECONDS} s`);
if (bus.mode === 'secure') {
  log.line(
    'nats',
    `secure bus: per-tenant permissions (own nats-server on ${bus.url}, configuration from tokenctl authz; users ${(['refresher', 'audit', 'operator', ...services.map((s) => `consumer:${s.service}`)] as DemoRole[]).map((r) => bus.userOf(r)).join(', ')})`,
  );
} else {
  log.line(
    'nats',
    `open bus: no permissions (NATS_URL ${redactServers([bus.url]).join(',')}); any client could read any tenant's token. With a nats-server binary at hand the demo runs the secure bus.`,
  );
}
// Each run starts from an empty demo database: credentials left by an earlier run belong
// to a sandbox provider that no longer exists.
const auditConfig = loadAuditConfig({
  ...process.env,
  NATS_URL: bus.url,
  ...bus.env('audit'),
  AUDIT_DATABASE_URL: process.env.AUDIT_DATABASE_URL ?? `${config.database.url}_audit`,
  AUDIT_CONSUMER_NAME,
  // A free port, like the refresher's HTTP_PORT above: the demo must not collide with a local audit app.
  AUDIT_MONITORING_PORT: process.env.AUDIT_MONITORING_PORT ?? '0',
});
await resetDatabase(config.database.url);
await resetDatabase(auditConfig.database.url);
const demoStartedAt = new Date().toISOString();
// Connecting, the sandbox also declares an issuer, so the callback's RFC 9207 check is part of the story.
const sandbox = await startSandboxProvider({
  accessTokenTtlSeconds: TOKEN_TTL_SECONDS,
  rotateRefreshTokens: true,
  ...(connectMode ? { issuer: true as const } : {}),
});
log.line(
  'provider',
  `sandbox OAuth2 provider on ${sandbox.url} (rotating refresh tokens, reuse revokes the family${connectMode ? '; consent page at /authorize' : ''})`,
);

// The demo's tokens live seconds, not an hour: a budget of on-demand refreshes to match
// (the default cooldown, 30 s, is longer than a demo token's whole life).
const ON_DEMAND_COOLDOWN_SECONDS = 2;
const sandboxEntry = sandbox.providerSettings({
  onDemandCooldownSeconds: ON_DEMAND_COOLDOWN_SECONDS,
  ...(connectMode ? { authorizationUrl: sandbox.authorizationUrl } : {}),
});
const providers = parseProvidersDocument(JSON.stringify({ providers: { sandbox: sandboxEntry } }), 'json', {});
// The refresher's own log is JSON; here only its warnings reach stderr, to keep the story readable.
const refresherLogger = new PinoLoggerService(
  createLogger({ level: process.env.LOG_LEVEL ?? 'warn', name: 'refresher', destination: process.stderr }),
);
const refresher = await startRefresher({ config, logger: refresherLogger, providers });
log.line(
  'refresher',
  `started: PostgreSQL ${new URL(config.database.url).pathname.slice(1)}, NATS ${redactServers(config.nats.servers).join(',')}${connectMode ? `, connect pages on ${config.connect.publicBaseUrl}` : ''}`,
);
const audit = await startAudit({ config: auditConfig, logger: refresherLogger });
log.line('audit', `started: durable JetStream consumer into ${new URL(auditConfig.database.url).pathname.slice(1)}`);

// The demo itself watches, registers and queries as the operator, what tokenctl runs as.
const nc = await connect({ servers: bus.url, ...bus.connectOptions('operator') });
let refreshes = 0;
const lastExpiry = new Map<string, number>();
// The four event types one by one: the operator may subscribe to those, not to `token.*.…`.
for (const kind of TOKEN_EVENT_KINDS) {
  nc.subscribe(tokenEventFilter(kind, '*', '*'), {
    callback: (_err, msg) => {
      const event = msg.json<{
        tenant: string;
        connection: string;
        version: number;
        expiresAt: string;
        accessToken?: string;
        code?: string;
        message?: string;
      }>();
      const name = keyName(event);
      if (kind === 'refreshed') {
        refreshes++;
        const previous = lastExpiry.get(name);
        const early = previous ? ((previous - Date.now()) / 1000).toFixed(1) : '?';
        log.line(
          'refresher',
          `token refreshed → v${event.version} of ${name} ${preview(event.accessToken ?? '')}, ${early} s before the old one expired; pushed to its tenant's consumer`,
        );
      } else if (kind === 'registered') {
        log.line('refresher', `credential ${name} registered as v${event.version}`);
      } else if (kind === 'failed') {
        log.line('refresher', `refresh of ${name} failed: ${event.code} ${event.message}`);
      }
      if (event.expiresAt) lastExpiry.set(name, Date.parse(event.expiresAt));
    },
  });
}

// The seed's "initial OAuth2 token loaded": an access token and a refresh token from the provider, per tenant.
for (const { key } of services) {
  if (key === connectKey) continue;
  const initial = sandbox.issueTokens();
  const registered = await nc.request(
    adminSubject('register', key.tenant, key.connection),
    JSON.stringify({ ...key, provider: 'sandbox', ...initial }),
    { timeout: 10_000 },
  );
  const reply = registered.json<{ ok: boolean; error?: { message: string } }>();
  if (!reply.ok) throw new Error(`register ${keyName(key)} failed: ${reply.error?.message}`);
}

if (connectKey) {
  const interrupted = new AbortController();
  const interrupt = () => interrupted.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const outcome = await connectThroughBrowser(nc, connectKey, {
    provider: 'sandbox',
    waitSeconds: seconds,
    log,
    signal: interrupted.signal,
  });
  process.off('SIGINT', interrupt);
  process.off('SIGTERM', interrupt);
  if (!outcome.connected) await stopBeforeTheStory(`not connected: ${outcome.reason}`);
  else
    log.line(
      'demo',
      `connected ${keyName(connectKey)} through the browser (consent on the sandbox provider, code with PKCE): v${outcome.version}; the story goes on with it`,
    );
}

const consumers = services.map(
  ({ service, key }) =>
    new DemoConsumer(service, bus.url, key, sandbox.apiUrl, log, {
      servers: bus.url,
      connect: bus.connectOptions(`consumer:${service}`),
      trustedSigners: [signerPublicKey],
    }),
);
await Promise.all(
  consumers.map((c, i) => new Promise<void>((resolve) => setTimeout(() => void c.start(1_000).then(resolve), i * 500))),
);
log.line(
  'demo',
  `two consumer services are calling the protected API every second: ${services.map((s) => `${s.service} of tenant ${s.key.tenant} (as ${bus.userOf(`consumer:${s.service}`)})`).join(', ')}; replies and events verified against the refresher's key ${signerPublicKey.slice(0, 8)}…`,
);

const revokeAt = setTimeout(
  () => {
    revokeEarly().catch((error: Error) => log.line('demo', `could not revoke a token early: ${error.message}`));
  },
  (seconds * 1000) / 2,
);
async function revokeEarly(): Promise<void> {
  const key = services[0].key;
  // Right after a refresh the consumer's report of the revoked token would be inside the
  // on-demand budget (answered rate_limited, the 401 passed on): the story shows the refresh
  // it causes, so the revoke waits until the budget has room.
  const describe = await nc.request(adminSubject('describe', key.tenant, key.connection), '{}', { timeout: 5_000 });
  const last = describe.json<{ credential?: { lastRefreshedAt: string | null } }>().credential?.lastRefreshedAt;
  const wait = last ? Date.parse(last) + (ON_DEMAND_COOLDOWN_SECONDS + 1) * 1000 - Date.now() : 0;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const got = await nc.request(tokenGetSubject(key.tenant, key.connection), '{}', { timeout: 5_000 });
  const token = got.json<{ token: { accessToken: string; version: number } }>().token;
  sandbox.revokeAccessToken(token.accessToken);
  log.line(
    'provider',
    `revoked access token v${token.version} of ${keyName(key)} early (as a provider might): the next calls get 401`,
  );
}

let stopping = false;
async function finish(reason: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearTimeout(revokeAt);
  log.line('demo', `${reason}; stopping`);
  // Tenant isolation: the first tenant's service asks for the second tenant's token.
  const foreignKey = services[1].key;
  const foreign: ForeignTokenOutcome = await consumers[0].tryForeignToken(foreignKey);
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
  process.stdout.write(
    `token refreshes:     ${refreshes} (provider saw ${sandbox.stats.refreshGrants} refresh grants, ${sandbox.stats.reuseDetected} reused refresh tokens)\n`,
  );
  for (const s of summaries) {
    process.stdout.write(
      `${s.name.padEnd(8)} versions seen ${s.versionsSeen.join(', ')}; tokens from cache ${s.fromCache}, fetched via token.get ${s.fetched}, pushed updates ${s.pushedUpdates}, 401 retries ${s.retriedAfter401}\n`,
    );
  }
  process.stdout.write(`audit records:       ${auditCounts}\n`);
  if (connectKey)
    process.stdout.write(
      `connect:             ${keyName(connectKey)} connected through the browser (sandbox consent page, code with PKCE)\n`,
    );
  process.stdout.write(
    `bus:                 ${bus.mode === 'secure' ? 'secure bus: per-tenant permissions' : 'open bus (no permissions)'}\n`,
  );
  const who = `${consumers[0].name} (tenant ${services[0].key.tenant}) asked for ${keyName(foreignKey)}`;
  // On the secure bus this must be refused; on the open bus it shows why the secure one exists.
  const isolated = bus.mode === 'open' || foreign.refused;
  if (bus.mode === 'secure')
    process.stdout.write(
      `tenant isolation:    ${who}: ${foreign.detail}${foreign.refused ? '' : '  ← NOT ISOLATED'}\n`,
    );
  else process.stdout.write(`tenant isolation:    none on an open bus: ${who}: ${foreign.detail}\n`);
  await bus.stop();
  process.stdout.write(
    failed === 0
      ? '\nNo API call failed: every token was refreshed before it expired.\n'
      : `\n${failed} API calls failed.\n`,
  );
  process.exit(failed === 0 && calls > 0 && isolated ? 0 : 1);
}

/** Nobody connected in time (or Ctrl-C while waiting): everything started so far stops, exit 1. */
async function stopBeforeTheStory(reason: string): Promise<never> {
  log.line('demo', `${reason}; stopping`);
  await refresher.close();
  await audit.close();
  await nc.drain();
  await sandbox.close();
  await bus.stop();
  process.exit(1);
}

/** What the audit app stored for this run, by type (it may take a moment to catch up). */
async function countAuditRecords(): Promise<string> {
  let counts = new Map<string, number>();
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      // Across tenants, as the operator may.
      const res = await nc.request(auditQuerySubject(), JSON.stringify({ since: demoStartedAt, limit: 1000 }), {
        timeout: 2_000,
      });
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
