/**
 * Where secrets travel, watched from a permissive bus, the case where
 * permissions are misconfigured: a spy subscribed to `>` records every message while a
 * credential is registered, served, refreshed (with rotation), described, listed, audited
 * and revoked, and while someone sends requests with hostile reply subjects.
 *
 * - refresh tokens (the registered one and every one the provider rotates in) appear on no
 *   subject but the admin request that carried the first one in;
 * - the client secret appears on no subject at all;
 * - access tokens appear only in `token.get` replies and `token.refreshed`/`token.registered`
 *   events (and in the register request that brought one);
 * - none of them is in a log line (at trace level), an audit record, or the TOKEN_AUDIT
 *   stream, also after the provider echoed the refresh token and client secret in an error;
 * - a request whose reply subject is `audit.token.…` or `token.refreshed.…` is not answered,
 *   so nothing lands on those subjects.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  adminListSubject,
  adminSubject,
  AUDIT_STREAM,
  auditQuerySubject,
  encodeJson,
  tokenGetSubject,
} from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEnv, startTestAudit, type TestAudit } from '../apps/audit/test/audit.harness.js';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';

interface Seen {
  subject: string;
  text: string;
}

const REFRESH_TOKEN = /rt_[A-Za-z0-9_-]{32}/;
const ACCESS_TOKEN = /at_[A-Za-z0-9_-]{32}/;
const allRefreshTokens = (text: string) => text.match(new RegExp(REFRESH_TOKEN.source, 'g')) ?? [];

/** Every message on the bus, headers included (a signature header must not carry a secret either). */
function spyOn(nc: NatsConnection): Seen[] {
  const seen: Seen[] = [];
  nc.subscribe('>', {
    callback: (_err, msg) => {
      const headers = msg.headers
        ? [...msg.headers.keys()].map((k) => `${k}: ${msg.headers!.values(k).join(',')}`).join('\n')
        : '';
      seen.push({ subject: msg.subject, text: `${headers}\n${new TextDecoder().decode(msg.data)}` });
    },
  });
  return seen;
}

describe('secrets on the bus, seen by a subscriber to everything', () => {
  const clientSecret = `cs_planted_${randomBytes(16).toString('hex')}`;
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let spyConnection: NatsConnection;
  let admin: NatsConnection;
  /** token.get only, so that its replies (the one place access tokens may go back) are told apart by inbox. */
  let getter: NatsConnection;
  let seen: Seen[];

  beforeAll(async () => {
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_bus'),
      createTestDatabase('tk_bus_audit'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600, clientSecret }),
    ]);
    spyConnection = await connect({ servers: nats.url });
    seen = spyOn(spyConnection);
    await spyConnection.flush();
    // Trace level: a secret logged at debug or trace is as leaked as one logged at warn.
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, { LOG_LEVEL: 'trace' }),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url, { LOG_LEVEL: 'trace' }));
    admin = await connect({ servers: nats.url, inboxPrefix: '_INBOX_admin' });
    getter = await connect({ servers: nats.url, inboxPrefix: '_INBOX_getter' });
  }, 120_000);

  afterAll(async () => {
    await admin?.close();
    await getter?.close();
    await spyConnection?.close();
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  it('refresh tokens and the client secret never leave the admin request; access tokens travel only to their readers', async () => {
    const ask = async (nc: NatsConnection, subject: string, body: unknown = {}) =>
      (await nc.request(subject, encodeJson(body), { timeout: 10_000 })).json<any>();
    const call = (subject: string, body: unknown = {}) => ask(admin, subject, body);
    const get = (subject: string) => ask(getter, subject);
    const tokens = sandbox.issueTokens();
    expect(
      await call(adminSubject('register', 'acme', 'github'), { provider: 'sandbox', ...tokens, expiresIn: 3600 }),
    ).toMatchObject({ ok: true });
    expect(await get(tokenGetSubject('acme', 'github'))).toMatchObject({
      ok: true,
      token: { accessToken: tokens.accessToken },
    });
    // A provider that echoes what it was sent into its error: the refresh token it was
    // presented and the client secret come back in the body the refresher reads and reports.
    const echoed = JSON.stringify({
      error: 'temporarily_unavailable',
      error_description: `busy; you sent refresh_token=${tokens.refreshToken}&client_secret=${clientSecret}`,
    });
    sandbox.injectFault({ type: 'status', status: 503, contentType: 'application/json', body: echoed });
    const requestsBefore = sandbox.stats.tokenRequests;
    await call(adminSubject('refresh', 'acme', 'github'));
    expect(sandbox.stats.tokenRequests, 'the echoing answer was served').toBeGreaterThan(requestsBefore);
    // It was read and reported (describe, the audit trail, any log line), without what it echoed.
    const afterFault = await call(adminSubject('describe', 'acme', 'github'));
    expect(afterFault.credential.lastError, JSON.stringify(afterFault.credential)).toMatchObject({
      code: expect.any(String),
    });
    for (let i = 0; i < 3; i++)
      expect(await call(adminSubject('refresh', 'acme', 'github'))).toMatchObject({ ok: true });
    expect(await get(tokenGetSubject('acme', 'github'))).toMatchObject({ ok: true, token: { version: 4 } });
    expect(await call(adminSubject('describe', 'acme', 'github'))).toMatchObject({ ok: true });
    expect(await call(adminListSubject('acme'))).toMatchObject({ ok: true });

    // Hostile reply subjects: the refresher must not publish a token there.
    for (const reply of [
      'audit.token.refreshed.acme.decoy',
      'token.refreshed.acme.decoy',
      '$JS.API.STREAM.DELETE.TOKEN_AUDIT',
    ]) {
      getter.publish(tokenGetSubject('acme', 'github'), encodeJson({}), { reply });
    }
    expect(await call(adminSubject('revoke', 'acme', 'github'))).toMatchObject({ ok: true });
    await waitFor(
      async () => (await call(auditQuerySubject('acme'))).items?.some((r: { type: string }) => r.type === 'revoked'),
      { timeoutMs: 20_000 },
    );
    await getter.flush();
    await spyConnection.flush();

    // At least the first refresh token and three rotated ones (the sandbox rotates on every refresh).
    const refreshTokensSeen = new Set(seen.flatMap((m) => allRefreshTokens(m.text)));
    expect(refreshTokensSeen).toEqual(new Set([tokens.refreshToken]));
    const carriersOfRefreshTokens = new Set(seen.filter((m) => REFRESH_TOKEN.test(m.text)).map((m) => m.subject));
    expect(carriersOfRefreshTokens).toEqual(new Set([adminSubject('register', 'acme', 'github')]));
    expect(sandbox.stats.successes).toBeGreaterThanOrEqual(3);

    expect(seen.filter((m) => m.text.includes(clientSecret)).map((m) => m.subject)).toEqual([]);

    const accessCarriers = new Set(
      seen.filter((m) => ACCESS_TOKEN.test(m.text)).map((m) => m.subject.split('.').slice(0, 2).join('.')),
    );
    for (const carrier of accessCarriers) {
      expect(
        ['token.refreshed', 'token.registered', 'tokenkeeper.admin'].includes(carrier) ||
          carrier.startsWith('_INBOX_getter.'),
        carrier,
      ).toBe(true);
    }
    expect(
      seen.filter(
        (m) =>
          m.subject.startsWith('tokenkeeper.admin.') &&
          !m.subject.startsWith('tokenkeeper.admin.register.') &&
          ACCESS_TOKEN.test(m.text),
      ),
    ).toEqual([]);

    expect(
      seen
        .filter((m) => m.subject.endsWith('.decoy') || m.subject === '$JS.API.STREAM.DELETE.TOKEN_AUDIT')
        .map((m) => m.subject),
    ).toEqual([]);

    // The durable trail and every log line: no token, no secret.
    const jsm = await jetstreamManager(spyConnection);
    const info = await jsm.streams.info(AUDIT_STREAM);
    expect(info.state.messages).toBeGreaterThan(0);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const stored = await jsm.streams.getMessage(AUDIT_STREAM, { seq });
      const text = new TextDecoder().decode(stored!.data);
      expect(text).not.toMatch(ACCESS_TOKEN);
      expect(text).not.toMatch(REFRESH_TOKEN);
      expect(stored!.subject.endsWith('.decoy')).toBe(false);
    }
    const client = new pg.Client({ connectionString: auditDb.url });
    await client.connect();
    try {
      const rows = await client.query<{ row: string }>(`SELECT row_to_json(a)::text AS row FROM audit_records a`);
      expect(rows.rows.length).toBeGreaterThan(0);
      for (const { row } of rows.rows) {
        expect(row).not.toMatch(ACCESS_TOKEN);
        expect(row).not.toMatch(REFRESH_TOKEN);
      }
    } finally {
      await client.end();
    }
    const logs = `${refresher.logs.text()}\n${audit.logs.text()}`;
    // The scan has something to read: both apps logged below warn.
    for (const text of [refresher.logs.text(), audit.logs.text()]) expect(text).toMatch(/"level":"(info|debug|trace)"/);
    expect(logs).not.toMatch(ACCESS_TOKEN);
    expect(logs).not.toMatch(REFRESH_TOKEN);
    expect(logs).not.toContain(clientSecret);
  }, 120_000);
});
