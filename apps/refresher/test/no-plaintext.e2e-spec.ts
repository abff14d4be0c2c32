import pg from 'pg';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RefreshMetrics } from '../src/metrics/refresh.metrics.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

/**
 * Plants known token values, drives them through every path (register, refresh with
 * rotation, provider errors that echo the request, revocation) and then searches every
 * place a secret could leak: each database column, every log line at trace level,
 * every reply, the audit outbox and the metrics.
 */
/** Any token the sandbox issues (`rt_`/`at_` and 24 random bytes in base64url), including those the test never saw. */
const ROTATED_IN = /\b(rt|at)_[A-Za-z0-9_-]{32}/;

describe('refresher: no plaintext secret anywhere', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  const replies: unknown[] = [];
  const secrets: string[] = [];

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_plain'),
      startSandboxProvider({ accessTokenTtlSeconds: 3 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, { LOG_LEVEL: 'trace' }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const call = async (sent: Promise<any>) => {
    const reply = await sent;
    replies.push(reply);
    return reply;
  };

  it('drives planted secrets through every path', async () => {
    const tokens = sandbox.issueTokens();
    secrets.push(tokens.accessToken, tokens.refreshToken, 'sandbox-secret');
    await call(
      caller.admin('register', { tenant: 'acme', connection: 'github', provider: 'sandbox', ...tokens, expiresIn: 3 }),
    );
    const first = await call(caller.get({ tenant: 'acme', connection: 'github' }));
    expect(first.ok).toBe(true);

    // A provider that echoes the presented refresh token and the client secret in its error.
    sandbox.injectFault(
      {
        type: 'status',
        status: 400,
        contentType: 'application/json',
        body: JSON.stringify({
          error: 'invalid_request',
          error_description: `bad refresh_token=${tokens.refreshToken} client_secret=sandbox-secret`,
        }),
      },
      1,
    );
    sandbox.injectFault({ type: 'html' }, 1);
    await waitFor(
      async () =>
        (await call(caller.admin('describe', { tenant: 'acme', connection: 'github' }))).credential.failures >= 2,
      { timeoutMs: 15_000 },
    );
    // Then it recovers and rotates: the rotated tokens are secrets too.
    const refreshed = await waitFor(
      async () => {
        const got = await call(caller.get({ tenant: 'acme', connection: 'github', minTtlSeconds: 1 }));
        return got.ok && got.token.version > 1 ? got : null;
      },
      { timeoutMs: 15_000 },
    );
    secrets.push(refreshed.token.accessToken);
    // The refresh tokens the provider rotated in are never seen by this test: every check
    // below also searches for the shape of any sandbox token (ROTATED_IN).
    expect(sandbox.stats.successes, 'the provider rotated a refresh token in').toBeGreaterThanOrEqual(1);

    // A register with a secret in a wrong field, and an admin refresh that fails.
    await call(
      caller.admin('register', {
        tenant: 'acme',
        connection: 'bad',
        provider: 'sandbox',
        accessToken: ['at_planted_in_array_0123456789'],
      }),
    );
    secrets.push('at_planted_in_array_0123456789');
    await call(caller.admin('revoke', { tenant: 'acme', connection: 'github' }));
  });

  it('finds no plaintext secret in any database column', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const tables = await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
      let dump = '';
      for (const { tablename } of tables.rows) {
        const rows = await client.query(
          `SELECT t::text AS row, encode(convert_to(t::text, 'UTF8'), 'escape') AS raw FROM "${tablename}" t`,
        );
        dump += rows.rows.map((r) => r.row).join('\n');
      }
      // bytea columns print as hex: decode them too, so plaintext inside a blob would show.
      const blobs = await client.query(`SELECT access_token_enc, refresh_token_enc FROM credentials`);
      for (const row of blobs.rows)
        dump += `${row.access_token_enc?.toString('latin1') ?? ''}${row.refresh_token_enc?.toString('latin1') ?? ''}`;
      expect(dump.length).toBeGreaterThan(100);
      for (const secret of secrets) expect(dump).not.toContain(secret);
      expect(dump).not.toMatch(ROTATED_IN);
      const outbox = await client.query(`SELECT count(*)::int AS n FROM outbox`);
      expect(outbox.rows[0].n).toBeGreaterThan(3);
    } finally {
      await client.end();
    }
  });

  it('finds no plaintext secret in logs, replies or metrics', async () => {
    const logs = refresher.logs.text();
    expect(logs).toContain('refresh failed'); // the failure paths were logged …
    const metrics = await refresher.app.get(RefreshMetrics).registry.metrics();
    const haystack = [logs, JSON.stringify(replies.filter((r: any) => !r.token)), metrics].join('\n');
    for (const secret of secrets) expect(haystack).not.toContain(secret); // … without the secrets
    expect(haystack).not.toMatch(ROTATED_IN);
  });
});
