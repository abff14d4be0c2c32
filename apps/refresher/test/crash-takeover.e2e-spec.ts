import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RefresherProcess, Sql, type RowState } from './cluster.fixtures.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

const TENANT = 'crash';
const CREDENTIALS = 20;
const LEASE_SECONDS = 3;
/** Provider latency while the doomed replica works: its requests are in flight when it dies. */
const SLOW_PROVIDER_MS = 800;
/**
 * The refresh tokens the killed replica presented were rotated by the provider after it
 * died (a provider finishes a grant whose client has gone away). The survivor can only
 * present the refresh token the database holds, i.e. the rotated-away one: with a reuse
 * grace of 0, Auth0/Okta-style reuse detection would revoke every one of these families.
 * This is inherent to a crash between "request sent" and "answer committed", and it is
 * what the providers' reuse interval (Auth0) / grace period (Okta) exists for. So the
 * grace here is longer than the lease, and the test asserts that every credential
 * recovers within it.
 */
const REUSE_GRACE_SECONDS = 15;

const pad = (i: number) => `c${String(i).padStart(2, '0')}`;

/**
 * The refresh policy: "A crashed replica's lease expires and another takes the credential over."
 * A refresher process is SIGKILLed while it holds leases with requests in flight; an
 * in-process refresher takes every credential over once (and not before) the leases
 * expire, and nothing is lost.
 */
describe('crash takeover: a replica killed while holding leases', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let doomed: RefresherProcess | undefined;
  let survivor: TestRefresher | undefined;
  let caller: RawCaller;
  let sql: Sql;
  let dir: string;
  const keys = testKeys();
  const initialRefreshTokens = new Map<string, string>();

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_crash'),
      startSandboxProvider({
        accessTokenTtlSeconds: 4,
        rotateRefreshTokens: true,
        reuseGraceSeconds: REUSE_GRACE_SECONDS,
      }),
    ]);
    dir = mkdtempSync(join(tmpdir(), 'tk-crash-'));
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await doomed?.kill();
    await caller?.close();
    await survivor?.close();
    await Promise.all([sandbox?.close(), nats?.stop(), sql?.close()]);
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('takes over every credential after the lease expires, and every credential recovers', async () => {
    const providersFile = join(dir, 'providers.yaml');
    writeFileSync(
      providersFile,
      [
        'providers:',
        '  sandbox:',
        `    tokenUrl: ${sandbox.tokenUrl}`,
        `    revocationUrl: ${sandbox.revocationUrl}`,
        '    clientId: sandbox-client',
        '    clientSecret: ${SANDBOX_SECRET}',
        '    authMethod: client_secret_basic',
        '    grant: refresh_token',
        `    maxConcurrency: ${CREDENTIALS * 2}`,
        '',
      ].join('\n'),
    );
    const env = (replica: string) =>
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys },
        {
          REPLICA_ID: replica,
          LEASE_SECONDS: String(LEASE_SECONDS),
          REFRESH_TIMEOUT_MS: '1000',
          PROVIDERS_FILE: providersFile,
          SANDBOX_SECRET: 'sandbox-secret',
        },
      );
    const t0 = Date.now();
    doomed = await RefresherProcess.start(env('doomed'));
    const childStartMs = Date.now() - t0;
    caller = await RawCaller.connect(nats.url);

    // 20 credentials with tokens good for an hour, registered through the doomed replica.
    await Promise.all(
      Array.from({ length: CREDENTIALS }, async (_, i) => {
        const tokens = sandbox.issueTokens();
        initialRefreshTokens.set(pad(i), tokens.refreshToken);
        const reply = await caller.admin('register', {
          tenant: TENANT,
          connection: pad(i),
          provider: 'sandbox',
          accessToken: tokens.accessToken,
          refreshToken: tokens.refreshToken,
          expiresIn: 3600,
        });
        expect(reply.ok).toBe(true);
      }),
    );
    // A slow provider, then all of them due at the same instant: the doomed replica claims
    // them in one statement and sends 20 requests that take SLOW_PROVIDER_MS to be answered.
    sandbox.setTokenDelay(SLOW_PROVIDER_MS);
    await sql.query('UPDATE credentials SET next_refresh_at = now() WHERE tenant = $1', [TENANT]);
    await waitFor(() => sandbox.stats.tokenRequests >= CREDENTIALS, {
      timeoutMs: 5_000,
      intervalMs: 5,
      message: 'the doomed replica to send its requests',
    });
    await sleep(20); // let the provider read the request bodies
    await doomed.kill();
    expect(doomed.signal).toBe('SIGKILL');
    // With the replica dead and no other one running, the rows are as they were at the kill.
    const held: RowState[] = await sql.rows(TENANT);
    sandbox.setTokenDelay(0);
    // The provider still processes the grants of the dead client and rotates those refresh tokens.
    await waitFor(() => sandbox.stats.refreshGrants >= CREDENTIALS, {
      timeoutMs: 5_000,
      message: 'the provider to process the orphaned grants',
    });
    expect(sandbox.stats.successes).toBe(CREDENTIALS);

    const killedAt = Date.now();
    survivor = await startTestRefresher(env('survivor'), sandboxProviders(sandbox));
    await waitFor(async () => (await sql.rows(TENANT)).every((r) => r.version >= 2 && r.status === 'active'), {
      timeoutMs: 15_000,
      intervalMs: 100,
      message: 'every credential to be refreshed by the survivor',
    });
    const takeoverMs = Date.now() - killedAt;

    // The survivor claimed each credential only after the dead replica's lease had run out.
    const firstClaims = await sql.query<{ connection: string; first: Date }>(
      `SELECT connection, min(created_at) AS first FROM outbox
       WHERE tenant = $1 AND type = 'refresh_started' AND payload->>'replica' = 'survivor' GROUP BY connection`,
      [TENANT],
    );
    expect(firstClaims).toHaveLength(CREDENTIALS);
    for (const claim of firstClaims) {
      const lease = held.find((r) => r.connection === claim.connection)!;
      expect(claim.first.getTime(), `survivor's claim of ${claim.connection}`).toBeGreaterThan(
        lease.lease_until!.getTime(),
      );
    }
    // Nothing lost: the audit trail has the dead replica's attempts and the survivor's refreshes.
    expect(await sql.auditCountsByReplica('refresh_started', TENANT)).toMatchObject({ doomed: CREDENTIALS });
    const refreshedBy = await sql.auditCountsByReplica('refreshed', TENANT);
    expect(refreshedBy.doomed).toBeUndefined();
    expect(refreshedBy.survivor).toBeGreaterThanOrEqual(CREDENTIALS);

    // No lease is left with the dead replica; a live one can only be the survivor's.
    for (const row of await sql.rows(TENANT)) {
      expect(
        row.lease_owner === null || (row.lease_owner === 'survivor' && row.lease_live),
        `lease of ${row.connection}: ${row.lease_owner}`,
      ).toBe(true);
    }

    // Each initial refresh token was presented twice, by the dead replica and by the
    // survivor, and the second presentation was accepted within the reuse grace.
    for (const [connection, token] of initialRefreshTokens) expect(sandbox.presentations(token), connection).toBe(2);
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.reuseDetected).toBe(0);
    expect(sandbox.stats.familiesRevoked).toBe(0);

    // Every credential serves a valid token that the provider's API accepts.
    for (let i = 0; i < CREDENTIALS; i++) {
      const got = await caller.get({ tenant: TENANT, connection: pad(i) });
      expect(got.ok, `token.get ${pad(i)}: ${JSON.stringify(got.error)}`).toBe(true);
      expect(got.token.version).toBeGreaterThanOrEqual(2);
      expect(Date.parse(got.token.expiresAt)).toBeGreaterThan(Date.now());
      const api = await fetch(sandbox.apiUrl, { headers: { authorization: `Bearer ${got.token.accessToken}` } });
      expect(api.status, `API with the token of ${pad(i)}`).toBe(200);
    }

    // And the chains go on with the survivor's refresh tokens: one more round for everyone.
    const afterTakeover = new Map((await sql.rows(TENANT)).map((r) => [r.connection, r.version]));
    await waitFor(async () => (await sql.rows(TENANT)).every((r) => r.version > afterTakeover.get(r.connection)!), {
      timeoutMs: 10_000,
      intervalMs: 100,
      message: 'another scheduled refresh of every credential',
    });

    // A graceful stop finishes in-flight work and leaves no lease behind.
    await survivor.close();
    survivor = undefined;
    for (const row of await sql.rows(TENANT))
      expect(row, row.connection).toMatchObject({ status: 'active', lease_owner: null, lease_until: null });
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.familiesRevoked).toBe(0);
    console.info(
      `crash-takeover: child start ${childStartMs} ms, kill to full takeover ${takeoverMs} ms, total ${Date.now() - t0} ms`,
    );
  });
});
