import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sql } from './cluster.fixtures.js';
import { callApi } from './e2e-support.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
  wire,
} from './refresher.harness.js';
import { httpGet, sample, spawnRefresher, type ChildRefresher } from './ops-support.js';

/**
 * SIGTERM to a real refresher process (main.ts, as `npm run start:refresher` runs it)
 * while a refresh storm is in flight against a slow provider: it must exit 0 within
 * SHUTDOWN_GRACE_MS, leave no lease behind and lose no token, which a fresh refresher
 * then proves by serving every credential with a token the provider accepts.
 */

interface Scenario {
  name: string;
  /** Default 30: a lease left behind would still be live when the test looks. */
  leaseSeconds?: number;
  count: number;
  graceMs: number;
  tokenDelayMs: number;
  rotate: boolean;
}

/** The providers file below sets no maxConcurrency: the loader's default. */
const PROVIDER_MAX_CONCURRENCY = 8;

const plant = (label: string) => `${label}_planted_${randomBytes(9).toString('hex')}`;

/** Everything one scenario needs: dependencies, a providers file, the child refresher. */
function useStack(scenario: Scenario) {
  const s = {
    nats: undefined as unknown as NatsServerHandle,
    db: undefined as unknown as TestDatabase,
    sandbox: undefined as unknown as SandboxProvider,
    sql: undefined as unknown as Sql,
    caller: undefined as unknown as RawCaller,
    child: undefined as unknown as ChildRefresher,
    fresh: undefined as TestRefresher | undefined,
    keys: testKeys(),
    replicaId: `ops-shutdown-${randomBytes(4).toString('hex')}`,
    clientSecret: plant('cs'),
    dir: mkdtempSync(join(tmpdir(), 'tk-ops-')),
    secrets: [] as string[],
  };
  s.secrets.push(s.clientSecret);

  beforeAll(async () => {
    [s.nats, s.db, s.sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_shutdown'),
      startSandboxProvider({
        accessTokenTtlSeconds: 30,
        clientSecret: s.clientSecret,
        rotateRefreshTokens: scenario.rotate,
      }),
    ]);
    const providersFile = join(s.dir, 'providers.yaml');
    writeFileSync(
      providersFile,
      [
        'providers:',
        '  sandbox:',
        `    tokenUrl: ${s.sandbox.tokenUrl}`,
        `    revocationUrl: ${s.sandbox.revocationUrl}`,
        '    clientId: sandbox-client',
        '    clientSecret: ${SANDBOX_SECRET}',
        '    authMethod: client_secret_basic',
        '',
      ].join('\n'),
    );
    s.child = await spawnRefresher(
      testEnv(
        { natsUrl: s.nats.url, databaseUrl: s.db.url, keys: s.keys },
        {
          REPLICA_ID: s.replicaId,
          PROVIDERS_FILE: providersFile,
          SANDBOX_SECRET: s.clientSecret,
          LOG_LEVEL: 'trace',
          SHUTDOWN_GRACE_MS: String(scenario.graceMs),
          LEASE_SECONDS: String(scenario.leaseSeconds ?? 30),
          REFRESH_TIMEOUT_MS: '10000',
        },
      ),
    );
    await waitFor(async () => (await httpGet(s.child.url, '/readyz', 1_000)).status === 200, {
      timeoutMs: 40_000,
      message: `the refresher child is ready; output:\n${s.child.output().slice(-2_000)}`,
    });
    s.sql = Sql.open(s.db.url);
    s.caller = await RawCaller.connect(s.nats.url);
  }, 90_000);

  afterAll(async () => {
    s.child?.kill();
    await s.caller?.close();
    await s.fresh?.close();
    await s.sql?.close();
    await Promise.all([s.sandbox?.close(), s.nats?.stop()]);
    await s.db?.drop();
    rmSync(s.dir, { recursive: true, force: true });
  });

  /**
   * Registers `count` credentials whose tokens are already due. The scheduler claims no more
   * than the provider's free request slots (maxConcurrency, 8 by default), so
   * the storm is "every slot busy", and the rest are claimed as slots free up.
   */
  async function startStorm(): Promise<void> {
    s.sandbox.setTokenDelay(scenario.tokenDelayMs);
    await Promise.all(
      Array.from({ length: scenario.count }, async (_, i) => {
        const tokens = s.sandbox.issueTokens();
        s.secrets.push(tokens.accessToken, tokens.refreshToken);
        const reply = await s.caller.admin('register', {
          tenant: 'storm',
          connection: `c${i}`,
          provider: 'sandbox',
          ...tokens,
          expiresIn: 1,
        });
        expect(reply.ok, JSON.stringify(reply)).toBe(true);
      }),
    );
    await waitFor(
      async () => {
        const [leased] = await s.sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM credentials WHERE lease_owner = $1 AND lease_until > now()`,
          [s.replicaId],
        );
        return leased.n >= Math.min(scenario.count, PROVIDER_MAX_CONCURRENCY) && s.sandbox.stats.tokenRequests >= 4;
      },
      { timeoutMs: 15_000, message: 'refreshes in flight' },
    );
  }

  /** SIGTERM, then the exit, with how long it took. */
  async function terminate(): Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    ms: number;
    inFlight: number;
  }> {
    const metrics = await httpGet(s.child.url, '/metrics');
    const inFlight = sample(metrics.text, 'tokenkeeper_refreshes_in_flight') ?? 0;
    const sent = Date.now();
    s.child.child.kill('SIGTERM');
    const exit = await Promise.race([
      s.child.exited,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), scenario.graceMs + 20_000)),
    ]);
    if (!exit) throw new Error(`the refresher did not exit after SIGTERM; output:\n${s.child.output().slice(-3_000)}`);
    return { code: exit.code, signal: exit.signal, ms: exit.at - sent, inFlight };
  }

  async function liveLeases(): Promise<number> {
    const [row] = await s.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credentials WHERE lease_owner = $1 AND lease_until > now()`,
      [s.replicaId],
    );
    return row.n;
  }

  /** The drain summary the child logged at shutdown. */
  function drained(): { finished: number; cancelled: number } {
    const line = s.child
      .output()
      .split('\n')
      .find((l) => l.includes('"refresh work drained"'));
    if (!line) throw new Error(`no drain summary in the output:\n${s.child.output().slice(-3_000)}`);
    return JSON.parse(line);
  }

  /** A fresh in-process refresher on the same database serves every stored credential with a token the provider accepts. */
  async function everyTokenServed(): Promise<void> {
    s.sandbox.setTokenDelay(0);
    s.fresh = await startTestRefresher(
      testEnv({ natsUrl: s.nats.url, databaseUrl: s.db.url, keys: s.keys }, { REPLICA_ID: `${s.replicaId}-fresh` }),
      sandboxProviders(s.sandbox, { clientSecret: s.clientSecret }),
    );
    for (let i = 0; i < scenario.count; i++) {
      const key = { tenant: 'storm', connection: `c${i}` };
      const got = await waitFor(
        async () => {
          const reply = await s.caller.get({ ...key, minTtlSeconds: 5 });
          if (!reply.ok && ['reauth_required', 'revoked', 'not_found'].includes(reply.error.code)) {
            throw new Error(`storm/c${i} is lost: ${JSON.stringify(reply.error)}`);
          }
          return reply.ok ? reply : null;
        },
        { timeoutMs: 15_000, message: `storm/c${i} served` },
      );
      expect(await callApi(s.sandbox, got.token.accessToken), `storm/c${i}: the provider accepts its token`).toBe(200);
    }
    const [dead] = await s.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credentials WHERE status IN ('reauth_required', 'revoked')`,
    );
    expect(dead.n).toBe(0);
    // A refresh token presented again after its rotation would mean two replicas raced it.
    expect(s.sandbox.everPresentedTwice()).toEqual([]);
  }

  return { s, startStorm, terminate, liveLeases, drained, everyTokenServed };
}

describe('refresher ops: SIGTERM during a refresh storm (in-flight refreshes finish within the grace period)', () => {
  const scenario: Scenario = { name: 'finish', count: 60, graceMs: 5_000, tokenDelayMs: 1_500, rotate: true };
  const { s, startStorm, terminate, liveLeases, drained, everyTokenServed } = useStack(scenario);

  it('keeps planted secrets out of every failure path while the storm runs', async () => {
    await startStorm();

    // A provider whose error bodies echo the request: refresh token and client secret.
    const echoed = s.secrets[2]; // a refresh token being presented right now
    s.sandbox.injectFault({
      type: 'status',
      status: 400,
      contentType: 'application/json',
      body: JSON.stringify({
        error: 'invalid_request',
        error_description: `refresh_token=${echoed}&client_secret=${s.clientSecret}`,
      }),
    });
    s.sandbox.injectFault({
      type: 'status',
      status: 502,
      contentType: 'text/html',
      body: `<pre>grant_type=refresh_token&refresh_token=${echoed} Authorization: Basic ${s.clientSecret}</pre>`,
    });

    // Validation errors with secrets in the rejected fields.
    const v = [plant('rt'), plant('rt'), plant('pw'), plant('at'), plant('at')];
    s.secrets.push(...v);
    const rejected = await Promise.all([
      // A payload name outside the name rule (a subject could not even carry it).
      s.caller.call(wire.admin('register', 'acme', 'x'), {
        tenant: 'bad tenant!',
        connection: 'x',
        provider: 'sandbox',
        refreshToken: v[0],
      }),
      s.caller.admin('register', {
        tenant: 'acme',
        connection: 'x',
        provider: 'sandbox',
        refreshToken: v[1],
        password: v[2],
      }),
      s.caller.admin('register', {
        tenant: 'acme',
        connection: 'x',
        provider: 'sandbox',
        accessToken: { nested: v[3] },
      }),
      s.caller.call(wire.tokenGet('acme', 'x'), `{"tenant":"acme","connection":"x","accessToken":"${v[4]}"`),
    ]);
    for (const reply of rejected) expect(reply.error?.code, JSON.stringify(reply)).toBe('bad_request');

    // A handler crash: a stored ciphertext that does not decrypt, naming a "key id" that is a secret.
    const crashSecret = plant('kid');
    s.secrets.push(crashSecret);
    const tokens = s.sandbox.issueTokens();
    s.secrets.push(tokens.accessToken, tokens.refreshToken);
    expect(
      (
        await s.caller.admin('register', {
          tenant: 'crash',
          connection: 'c',
          provider: 'sandbox',
          ...tokens,
          expiresIn: 3600,
        })
      ).ok,
    ).toBe(true);
    const kid = Buffer.from(crashSecret, 'utf8');
    await s.sql.query(`UPDATE credentials SET access_token_enc = $1 WHERE tenant = 'crash'`, [
      Buffer.concat([Buffer.from([1, kid.length]), kid, randomBytes(40)]),
    ]);
    const crashed = await s.caller.get({ tenant: 'crash', connection: 'c', rejectedVersion: 1 });
    expect(crashed.error?.code).toBe('internal');
    expect(JSON.stringify(crashed)).not.toContain(crashSecret);
    await s.sql.query(`DELETE FROM credentials WHERE tenant = 'crash'`);
  });

  it('exits with code 0 within SHUTDOWN_GRACE_MS after SIGTERM', async () => {
    const exit = await terminate();
    expect(exit.inFlight, 'refreshes were in flight at SIGTERM').toBeGreaterThan(0);
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.ms).toBeLessThan(scenario.graceMs);
    // Every request in flight finished in time: nothing had to be cancelled.
    expect(drained().cancelled).toBe(0);
    expect(s.child.output()).toContain('"shutting down: no new work; waiting for refreshes in flight"');
  });

  it('leaves no credential leased by the stopped replica', async () => {
    expect(await liveLeases()).toBe(0);
    const [refreshed] = await s.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credentials WHERE tenant = 'storm' AND version > 1`,
    );
    // Some refreshes completed during the grace period; the others were given back unstarted.
    expect(refreshed.n).toBeGreaterThan(0);
    expect(refreshed.n).toBeLessThan(scenario.count);
  });

  it('loses no token: a fresh refresher serves every credential with a valid token', async () => {
    await everyTokenServed();
  });

  it('wrote none of the planted secrets to its logs, though it logged every failure path', async () => {
    const output = s.child.output() + (s.fresh?.logs.text() ?? '');
    expect(output).toContain('PROVIDER MISCONFIGURED'); // the echoing 400
    expect(output).toContain('refresh failed; will retry'); // the 502
    expect(output).toContain('unexpected error while handling a request'); // the crash
    expect(s.secrets.length).toBeGreaterThan(scenario.count * 2);
    for (const secret of s.secrets) expect(output).not.toContain(secret);
    // Nor any the provider rotated in, which the test never saw: any sandbox token by its shape.
    expect(s.sandbox.stats.successes, 'refresh tokens were rotated in').toBeGreaterThan(0);
    expect(output).not.toMatch(/\b(rt|at)_[A-Za-z0-9_-]{32}/);
  });
});

describe('refresher ops: SIGTERM while token requests outlast the grace period', () => {
  // Without rotation a cancelled request cannot cost the refresh token, so every token must survive.
  const scenario: Scenario = {
    name: 'cancel',
    count: 12,
    graceMs: 1_500,
    tokenDelayMs: 8_000,
    rotate: false,
    leaseSeconds: 12,
  };
  const { s, startStorm, terminate, liveLeases, drained, everyTokenServed } = useStack(scenario);

  it('cancels the requests still in flight when the grace period ends, keeps their leases until they expire and exits 0', async () => {
    await startStorm();
    const exit = await terminate();
    expect(exit.inFlight).toBeGreaterThan(0);
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.ms).toBeGreaterThanOrEqual(scenario.graceMs);
    expect(exit.ms).toBeLessThan(scenario.graceMs + 2_500);
    const { cancelled } = drained();
    expect(cancelled).toBeGreaterThan(0);
    // A cancelled request may still be processed by the provider: its lease is kept, so no
    // other replica presents the same refresh token meanwhile, but never beyond LEASE_SECONDS.
    // (Requests still queued for a provider slot were never sent: their leases were given back.)
    const kept = await liveLeases();
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cancelled);
    const [longest] = await s.sql.query<{ s: number }>(
      `SELECT coalesce(max(extract(epoch FROM lease_until - now())), 0)::float AS s FROM credentials WHERE lease_owner = $1`,
      [s.replicaId],
    );
    expect(longest.s).toBeLessThanOrEqual(scenario.leaseSeconds!);
    // A request cancelled by the shutdown is not a provider failure: nothing is recorded against the credential.
    const [failed] = await s.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credentials WHERE failures > 0 OR status <> 'active'`,
    );
    expect(failed.n).toBe(0);
    const [events] = await s.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox WHERE type IN ('failed', 'reauth_required')`,
    );
    expect(events.n).toBe(0);
  });

  it('loses no token', async () => {
    await everyTokenServed();
  });
});
