import { randomUUID } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { AUDIT_STREAM, encodeJson, parseTokenEventSubject } from '@tokenkeeper/contracts';
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
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
  wire,
} from '../../refresher/test/refresher.harness.js';
import {
  auditEnv,
  Db,
  readAuditStream,
  startTestAudit,
  type TestAudit,
  waitForAuditToCatchUp,
} from './audit.harness.js';

/**
 * The audit pipeline end to end with a refresher and an audit app in this process:
 * every lifecycle change lands once in the audit table with who/what/when/which
 * replica, no secret reaches the stream, the table or a reply, and audit.query filters
 * and pages newest first.
 */
describe('audit: records, secrets, audit.query', () => {
  let nats: NatsServerHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let caller: RawCaller;
  let rdb: Db;
  let adb: Db;
  const issuedAccessTokens: string[] = [];

  const query = (body: Record<string, unknown>) => caller.auditQuery(body);

  beforeAll(async () => {
    [nats, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_aq_r'),
      createTestDatabase('tk_aq_a'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: refresherDb.url, keys: testKeys() },
        { REPLICA_ID: 'replica-a', LOG_LEVEL: 'trace' },
      ),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url, { LOG_LEVEL: 'trace' }));
    caller = await RawCaller.connect(nats.url);
    caller.nc.subscribe('token.*.*.*', {
      callback: (_err, msg) => {
        if (parseTokenEventSubject(msg.subject) === null) return; // token.get.<tenant>.<connection> is a request
        const event = msg.json<{ accessToken?: string }>();
        if (event.accessToken) issuedAccessTokens.push(event.accessToken);
      },
    });
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
  });

  afterAll(async () => {
    await caller?.close();
    await audit?.close();
    await refresher?.close();
    await Promise.all([rdb?.close(), adb?.close()]);
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
  });

  it('stores one record per lifecycle change, with who, what, when and which replica, and no secret anywhere', async () => {
    const plantedRefresh = sandbox.issueRefreshToken();
    const key = { tenant: 'acme', connection: 'github' };
    expect((await caller.admin('register', { ...key, provider: 'sandbox', refreshToken: plantedRefresh })).ok).toBe(
      true,
    );
    expect((await caller.get(key)).token.version).toBe(2);
    expect((await caller.admin('refresh', key)).credential.version).toBe(3);
    expect((await caller.admin('revoke', key)).ok).toBe(true);
    const plantedAccess = `at_planted_${randomUUID()}`;
    const plantedRefresh2 = `rt_planted_${randomUUID()}`;
    await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: plantedAccess,
      refreshToken: plantedRefresh2,
      expiresIn: 3600,
    });

    const expected = [
      ['registered', 1],
      ['refresh_started', 1],
      ['refreshed', 2],
      ['refresh_started', 2],
      ['refreshed', 3],
      ['revoked', 4],
      ['registered', 5],
    ];
    const records = await waitFor(
      async () => {
        const reply = await query({ ...key, limit: 100 });
        return reply.items.length >= expected.length ? reply.items : undefined;
      },
      { timeoutMs: 15_000, message: 'all records of acme/github' },
    );
    expect(records.map((r: any) => [r.type, r.version]).reverse()).toEqual(expected);
    for (const record of records) {
      expect(
        Object.keys(record).every((k) =>
          [
            'recordId',
            'eventId',
            'type',
            'tenant',
            'connection',
            'provider',
            'version',
            'outcome',
            'code',
            'message',
            'at',
            'replica',
          ].includes(k),
        ),
      ).toBe(true);
      expect(record).toMatchObject({ tenant: 'acme', connection: 'github', provider: 'sandbox', replica: 'replica-a' });
      expect(record.eventId).toMatch(/^[0-9a-f-]{36}$/);
      // Its own id, not the core event's: that one is public, this one is the message id.
      expect(record.recordId).toMatch(/^[0-9a-f-]{36}$/);
      expect(record.recordId).not.toBe(record.eventId);
      expect(Date.parse(record.at)).toBeGreaterThan(Date.now() - 120_000);
    }
    expect(records[records.length - 2]).toMatchObject({ type: 'refresh_started' });
    expect(records[0]).toMatchObject({ type: 'registered', outcome: 'with_access_token' });

    // Failures: a provider error page that echoes the refresh token and a bearer header, then invalid_grant.
    const failing = { tenant: 'acme', connection: 'failing' };
    const failingRefresh = sandbox.issueRefreshToken();
    await caller.admin('register', { ...failing, provider: 'sandbox', refreshToken: failingRefresh });
    sandbox.setFault({
      type: 'status',
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({
        error: 'temporarily_unavailable',
        error_description: `retry ${failingRefresh}; Authorization: Bearer ${issuedAccessTokens.at(-1)}`,
      }),
    });
    expect((await caller.get(failing)).ok).toBe(false);
    sandbox.setFault({ type: 'oauth_error', error: 'invalid_grant' });
    await waitFor(async () => (await caller.admin('describe', failing)).credential.status === 'reauth_required', {
      timeoutMs: 15_000,
      message: 'reauth_required',
    });
    sandbox.setFault(null);
    const failures = await waitFor(
      async () => {
        const reply = await query({ ...failing, type: 'reauth_required' });
        return reply.items.length === 1 ? (await query({ ...failing, limit: 1000 })).items : undefined;
      },
      { message: 'the reauth_required record' },
    );
    const failed = failures.filter((r: any) => r.type === 'failed');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]).toMatchObject({
      outcome: 'retryable',
      code: 'temporarily_unavailable',
      version: 1,
      message: 'HTTP 503 temporarily_unavailable',
    });
    expect(failures[0]).toMatchObject({
      type: 'reauth_required',
      outcome: 'invalid_grant',
      code: 'invalid_grant',
      version: 1,
    });
    expect(failures.at(-1)).toMatchObject({ type: 'registered', outcome: 'refresh_pending' });

    // Nothing secret in the stream, the table or the replies.
    await waitForAuditToCatchUp(rdb, adb);
    const secrets = [
      plantedRefresh,
      failingRefresh,
      plantedAccess,
      plantedRefresh2,
      ...issuedAccessTokens,
      'sandbox-secret',
      Buffer.from('sandbox-client:sandbox-secret').toString('base64'),
    ];
    expect(issuedAccessTokens.length).toBeGreaterThanOrEqual(2);
    const stream = JSON.stringify(await readAuditStream(caller.nc));
    const table = JSON.stringify(await adb.rows('SELECT * FROM audit_records'));
    const outbox = JSON.stringify(await rdb.rows('SELECT * FROM outbox'));
    const replies = JSON.stringify(await query({ limit: 1000 }));
    for (const secret of secrets) {
      expect(stream).not.toContain(secret);
      expect(table).not.toContain(secret);
      expect(outbox).not.toContain(secret);
      expect(replies).not.toContain(secret);
    }
    // The logs, at trace level: every secret above, the echoed ones included, and any token
    // of the sandbox's shape (the refresh tokens it rotated in were never seen here).
    const logs = audit.logs.text() + refresher.logs.text();
    expect(logs).toMatch(/"level":"(info|debug|trace)"/);
    for (const secret of secrets) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/\b(rt|at)_[A-Za-z0-9_-]{32}/);
  });

  it('strips fields outside the allow-list and redacts secret-looking text from records it did not write', async () => {
    const js = jetstream(caller.nc);
    const secret = `at_forged_${randomUUID()}${randomUUID()}`;
    const eventId = randomUUID();
    await js.publish(
      'audit.token.failed.forged.conn',
      encodeJson({
        eventId,
        type: 'failed',
        tenant: 'forged',
        connection: 'conn',
        provider: 'sandbox',
        version: 7,
        at: new Date().toISOString(),
        replica: 'elsewhere',
        code: 'invalid_request',
        message: `rejected Bearer ${secret} and refresh_token=${secret.slice(0, 20)}`,
        accessToken: secret,
        refreshToken: secret,
        clientSecret: secret,
        headers: { authorization: `Bearer ${secret}` },
      }),
      { msgID: eventId },
    );
    // Refused: subject and record disagree, or a field has the wrong type.
    const mismatched = randomUUID();
    await js.publish(
      'audit.token.failed.forged.other',
      encodeJson({
        eventId: mismatched,
        type: 'failed',
        tenant: 'forged',
        connection: 'conn',
        provider: 'sandbox',
        version: 1,
        at: new Date().toISOString(),
        replica: 'r',
      }),
    );
    await js.publish(
      'audit.token.failed.forged.conn',
      encodeJson({
        eventId: randomUUID(),
        type: 'failed',
        tenant: 'forged',
        connection: 'conn',
        provider: 'sandbox',
        version: 'seven',
        at: 'yesterday',
        replica: 'r',
      }),
    );
    await js.publish('audit.token.failed.forged.conn', new TextEncoder().encode('not json'));

    const reply = await waitFor(
      async () => {
        const r = await query({ tenant: 'forged' });
        return r.items.length === 1 ? r : undefined;
      },
      { message: 'the forged record' },
    );
    expect(reply.items[0]).toEqual({
      recordId: eventId, // no recordId of its own, as from an older refresher: the event id stands in
      eventId,
      type: 'failed',
      tenant: 'forged',
      connection: 'conn',
      provider: 'sandbox',
      version: 7,
      at: expect.any(String),
      replica: 'elsewhere',
      code: 'invalid_request',
      message: 'rejected Bearer [redacted] and refresh_token=[redacted]',
    });
    await waitFor(() => audit.consumer.stats.rejected >= 3, { message: 'three refusals' });
    const table = JSON.stringify(await adb.rows(`SELECT * FROM audit_records WHERE tenant = 'forged'`));
    expect(table).not.toContain(secret.slice(10, 30));
    expect(await adb.count(`SELECT count(*) AS n FROM audit_records WHERE event_id = $1`, [mismatched])).toBe(0);
    expect(audit.logs.text()).not.toContain(secret.slice(10, 30));
  });

  it('filters by tenant, connection, type and since, newest first, and pages with a cursor', async () => {
    const js = jetstream(caller.nc);
    const base = Date.parse('2030-01-01T00:00:00.000Z');
    const types = ['refreshed', 'refresh_started', 'failed'] as const;
    const published: { eventId: string; connection: string; type: string; at: string }[] = [];
    for (let i = 0; i < 30; i++) {
      const record = {
        eventId: randomUUID(),
        type: types[i % 3],
        tenant: 'paging',
        connection: i % 2 === 0 ? 'even' : 'odd',
        provider: 'sandbox',
        version: i,
        at: new Date(base + Math.floor(i / 2) * 1_000).toISOString(),
        replica: 'r1', // pairs share a timestamp: the id breaks ties
      };
      published.push(record);
      await js.publish(`audit.token.${record.type}.paging.${record.connection}`, encodeJson(record), {
        msgID: record.eventId,
      });
    }
    await waitFor(async () => (await query({ tenant: 'paging', limit: 1000 })).items.length === 30, {
      message: 'the paging records',
    });

    // Pages of 7, newest first, no overlap, no gap.
    const seen: any[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await query({ tenant: 'paging', limit: 7, ...(cursor ? { cursor } : {}) });
      expect(page.ok).toBe(true);
      seen.push(...page.items);
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(5);
    expect(seen.map((r) => r.eventId).sort()).toEqual(published.map((r) => r.eventId).sort());
    for (let i = 1; i < seen.length; i++)
      expect(Date.parse(seen[i - 1].at)).toBeGreaterThanOrEqual(Date.parse(seen[i].at));
    expect(seen[0].version).toBeGreaterThanOrEqual(28);

    const odd = await query({ tenant: 'paging', connection: 'odd', limit: 100 });
    expect(odd.items).toHaveLength(15);
    expect(odd.items.every((r: any) => r.connection === 'odd')).toBe(true);
    expect(odd.items.map((r: any) => r.version)).toEqual([29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1]);

    const failed = await query({ tenant: 'paging', type: 'failed' });
    expect(failed.items.map((r: any) => r.version)).toEqual([29, 26, 23, 20, 17, 14, 11, 8, 5, 2]);

    const recent = await query({ tenant: 'paging', since: new Date(base + 10_000).toISOString() });
    expect(recent.items.map((r: any) => r.version)).toEqual([29, 28, 27, 26, 25, 24, 23, 22, 21, 20]);
    const recentOddFailed = await query({
      tenant: 'paging',
      connection: 'odd',
      type: 'failed',
      since: new Date(base + 10_000).toISOString(),
    });
    expect(recentOddFailed.items.map((r: any) => r.version)).toEqual([29, 23]);

    // The cross-tenant subject with a tenant filter answers what the tenant's subject answers; an
    // empty payload is {}, and a payload naming the subject's own tenant is accepted.
    const ofTenant = await caller.call(wire.auditQuery('paging'), '');
    expect(ofTenant.items).toHaveLength(30);
    expect(await caller.call(wire.auditQuery(), { tenant: 'paging', limit: 1000 })).toEqual(ofTenant);
    expect(await caller.call(wire.auditQuery('paging'), { tenant: 'paging', limit: 1000 })).toEqual(ofTenant);

    // Newest first across tenants, without any filter.
    const all = await query({ limit: 3 });
    expect(all.items.map((r: any) => r.tenant)).toEqual(['paging', 'paging', 'paging']);
    expect(all.nextCursor).toEqual(expect.any(String));
  });

  it('answers bad requests with bad_request', async () => {
    const badRequest = { ok: false, error: { code: 'bad_request', message: expect.any(String) } };
    for (const body of [
      { cursor: 'bm90LWEtY3Vyc29y' },
      { limit: 0 },
      { limit: 1001 },
      { tenant: 'a.b' },
      { type: 'stolen' },
      { since: 'yesterday' },
      { password: 'x' },
    ]) {
      // The body as is, on both subjects (on a tenant's subject a payload tenant other than its own is refused as well).
      expect(await caller.call(wire.auditQuery(), body), JSON.stringify(body)).toEqual(badRequest);
      expect(await caller.call(wire.auditQuery('acme'), body), `acme ${JSON.stringify(body)}`).toEqual(badRequest);
    }
    // A subject token outside the name rule, and a payload naming another tenant than the subject.
    for (const tenant of ['a%b', 'a$b', 'x'.repeat(129)])
      expect(await caller.call(wire.auditQuery(tenant), {}), tenant).toEqual(badRequest);
    expect(await caller.call(wire.auditQuery('acme'), { tenant: 'paging' })).toEqual(badRequest);
    for (const subject of [wire.auditQuery(), wire.auditQuery('acme')]) {
      const raw = await caller.nc.request(subject, new TextEncoder().encode('{oops'), { timeout: 5_000 });
      expect(raw.json<any>().error.code).toBe('bad_request');
    }
  });

  it('creates the TOKEN_AUDIT stream with file storage, limits and the dedupe window', async () => {
    const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(caller.nc);
    const info = await jsm.streams.info(AUDIT_STREAM);
    expect(info.config).toMatchObject({
      storage: 'file',
      retention: 'limits',
      subjects: ['audit.token.>'],
      duplicate_window: 120 * 1e9,
      num_replicas: 1,
    });
    expect(info.config.max_age).toBe(720 * 3600 * 1e9);
    expect(info.config.max_bytes).toBe(1024 ** 3);
  });
});
