import { jetstream } from '@nats-io/jetstream';
import { encodeJson, tokenEventFilter } from '@tokenkeeper/contracts';
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
import { auditEnv, Db, startTestAudit, type TestAudit } from '../../audit/test/audit.harness.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

const CREDENTIALS = 12;

/**
 * Someone who sees the core `token.*` events, on a bus that lets them
 * publish to the audit stream, races the relay with a forged record under each event's id.
 * The genuine records use a message id nobody sees, so none of them is suppressed.
 */
describe('audit: records forged under core event ids', () => {
  let nats: NatsServerHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let attacker: RawCaller;
  let rdb: Db;
  let adb: Db;
  let closed = false;

  beforeAll(async () => {
    [nats, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_af_r'),
      createTestDatabase('tk_af_a'),
      startSandboxProvider({ accessTokenTtlSeconds: 2 }),
    ]);
    // A relay interval well above a NATS round trip: the attacker publishes first.
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: refresherDb.url, keys: testKeys() },
        { REPLICA_ID: 'genuine-replica', REFRESH_MIN_MARGIN_SECONDS: '1', AUDIT_RELAY_INTERVAL_MS: '400' },
      ),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url));
    attacker = await RawCaller.connect(nats.url);
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
  });

  afterAll(async () => {
    await attacker?.close();
    if (!closed) await refresher?.close();
    await audit?.close();
    await Promise.all([rdb?.close(), adb?.close()]);
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
  });

  it('stores every genuine record, however fast the forgeries come', async () => {
    const js = jetstream(attacker.nc);
    let forged = 0;
    let forgedFirst = 0;
    const attacks: Promise<void>[] = [];
    const seen: Record<string, unknown>[] = [];
    const sub = attacker.nc.subscribe(tokenEventFilter('*'), {
      callback: (_err, msg) => {
        const event = msg.json<{
          eventId: string;
          tenant: string;
          connection: string;
          provider?: string;
          version?: number;
        }>();
        seen.push(msg.json<Record<string, unknown>>());
        const record = {
          eventId: event.eventId,
          type: 'refreshed',
          tenant: event.tenant,
          connection: event.connection,
          provider: 'sandbox',
          version: event.version ?? 1,
          outcome: 'forged',
          at: new Date().toISOString(),
          replica: 'attacker',
        };
        attacks.push(
          js
            .publish(`audit.token.refreshed.${event.tenant}.${event.connection}`, encodeJson(record), {
              msgID: event.eventId,
            })
            .then((ack) => {
              forged++;
              if (!ack.duplicate) forgedFirst++;
            }),
        );
      },
    });

    for (let i = 0; i < CREDENTIALS; i++) {
      const reply = await attacker.admin('register', {
        tenant: `t${i % 2}`,
        connection: `c${i}`,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok).toBe(true);
    }
    // Tokens live 2 s: a few refreshes per credential.
    await sleep(4_000);
    // Graceful stop: no change commits after it, and the relay drains the outbox first.
    await refresher.close();
    closed = true;
    sub.unsubscribe();
    await Promise.all(attacks);
    // The attack really ran, and the forgeries got into the stream before the relay's records.
    expect(forged).toBeGreaterThan(CREDENTIALS * 2);
    expect(forgedFirst).toBeGreaterThan(CREDENTIALS);

    expect(await rdb.count('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL')).toBe(0);
    const outbox = await rdb.rows<{
      event_id: string;
      type: string;
      replica: string;
      version: number;
      outcome: string | null;
    }>(
      `SELECT event_id, type, payload->>'replica' AS replica, (payload->>'version')::int AS version, payload->>'outcome' AS outcome
       FROM outbox ORDER BY event_id`,
    );
    expect(outbox.filter((r) => r.type === 'refreshed').length).toBeGreaterThan(CREDENTIALS);
    const genuine = () =>
      adb.rows<{ event_id: string; type: string; replica: string; version: number; outcome: string | null }>(
        `SELECT event_id, type, replica, version, outcome FROM audit_records WHERE replica <> 'attacker' ORDER BY event_id`,
      );
    // Every committed change has its record, as the refresher wrote it: the forgery under the
    // same event id suppressed none of them.
    await waitFor(async () => (await genuine()).length >= outbox.length, {
      timeoutMs: 15_000,
      message: 'every genuine record in the audit table',
    }).catch(() => undefined);
    expect(await genuine()).toEqual(outbox);
    // What made this work: no core event shows a record id.
    const recordIds = new Set(
      (await rdb.rows<{ record_id: string }>('SELECT record_id FROM outbox')).map((r) => r.record_id),
    );
    expect(seen.filter((event) => 'recordId' in event || recordIds.has(event.eventId as string))).toEqual([]);
  }, 60_000);
});
