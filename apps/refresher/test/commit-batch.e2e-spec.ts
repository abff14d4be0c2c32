import { Secret } from '@tokenkeeper/common';
import { createTestDatabase, type TestDatabase } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommittedChange } from '../src/domain/committed-change.js';
import type { TimedLease } from '../src/persistence/credential.repository.js';
import { auditRecord } from '../src/persistence/audit-record.js';
import type { TokenWrite } from '../src/persistence/credential.repository.js';
import { openRepository, Sql, type StandaloneRepository } from './cluster.fixtures.js';
import { testKeys } from './refresher.harness.js';

/**
 * The grouped fenced commit (RefreshCommitBatcher behind CredentialRepository.commitRefresh)
 * against real PostgreSQL: commits asked for while one is in flight share one statement
 * (one transaction: the same xmin on their rows), and within it every row is fenced on its
 * own, keeps its rotation, and gets outbox records only if it landed.
 */
describe('credential repository: commits grouped into one statement', () => {
  let db: TestDatabase;
  let a: StandaloneRepository;
  let sql: Sql;

  beforeAll(async () => {
    db = await createTestDatabase('tk_batch');
    a = await openRepository(db.url, testKeys());
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await Promise.all([a?.close(), sql?.close()]);
    await db?.drop();
  });

  const write = (tag: string, rotate = true): TokenWrite => ({
    accessToken: new Secret(`at_${tag}`),
    refreshToken: rotate ? new Secret(`rt_${tag}`) : undefined,
    tokenType: 'Bearer',
    scope: `scope-${tag}`,
    issuedAt: new Date(),
    expiresAt: new Date(Date.now() + 3_600_000),
    nextRefreshAt: new Date(Date.now() + 3_000_000),
  });

  async function leased(tenant: string, connection: string): Promise<TimedLease> {
    await a.repository.register(
      {
        tenant,
        connection,
        provider: 'sandbox',
        accessToken: new Secret('at_v1'),
        refreshToken: new Secret(`rt_v1_${connection}`),
        tokenType: 'Bearer',
        issuedAt: new Date(),
        expiresAt: null,
        nextRefreshAt: new Date(Date.now() - 1_000),
      },
      [],
    );
    const lease = await a.repository.tryLease({ tenant, connection }, 'replica-a', 30);
    expect(lease).not.toBeNull();
    return lease!;
  }

  const commit = (l: TimedLease, w: TokenWrite, lease = l.lease) => {
    const audit = auditRecord('refreshed', l.credential, 'replica-a');
    const done = a.repository.commitRefresh(l.credential, lease, w, [audit]);
    return { audit, done };
  };

  async function xminOf(tenant: string, connection: string): Promise<string> {
    const [row] = await sql.query<{ xmin: string }>(
      'SELECT xmin::text FROM credentials WHERE tenant = $1 AND connection = $2',
      [tenant, connection],
    );
    return row!.xmin;
  }

  async function outboxEventIds(eventIds: string[]): Promise<string[]> {
    const rows = await sql.query<{ event_id: string }>(
      'SELECT event_id::text FROM outbox WHERE event_id = ANY($1::uuid[])',
      [eventIds],
    );
    return rows.map((r) => r.event_id);
  }

  it('lands the winners, answers the losers null, and writes outbox rows only for the winners', async () => {
    const primer = await leased('batch-t0', 'primer');
    const one = await leased('batch-t1', 'one');
    const other = await leased('batch-t2', 'other');
    const kept = await leased('batch-t2', 'kept');
    const stale = await leased('batch-t1', 'stale');

    // The primer goes out alone (nothing in flight: no waiting); the rest are asked for
    // while it is in flight, so they share the next statement.
    const first = commit(primer, write('primer'));
    const winner = commit(one, write('one'));
    // The same credential and lease again: never in the same statement, and the fence
    // then no longer holds (the version moved), exactly like two single commits.
    const sameLease = commit(one, write('one-again'));
    const otherTenant = commit(other, write('other'));
    // No new refresh token from the provider: the stored one stays.
    const noRotation = commit(kept, write('kept', false));
    // A lease that is not the current one.
    const staleLease = commit(stale, write('stale'), {
      leaseId: '00000000-0000-4000-8000-000000000000',
      version: stale.lease.version,
    });

    const [p, w, s, o, k, st] = await Promise.all([
      first.done,
      winner.done,
      sameLease.done,
      otherTenant.done,
      noRotation.done,
      staleLease.done,
    ]);
    expect(p?.credential.version).toBe(2);
    expect(w).toMatchObject({ kind: 'refreshed', credential: { tenant: 'batch-t1', connection: 'one', version: 2 } });
    expect(w!.eventId).toBe(winner.audit.event_id);
    expect(s).toBeNull();
    expect(o).toMatchObject({ kind: 'refreshed', credential: { tenant: 'batch-t2', connection: 'other', version: 2 } });
    expect(o!.eventId).toBe(otherTenant.audit.event_id);
    expect(k?.credential.version).toBe(2);
    expect(st).toBeNull();

    // One transaction for the grouped commits, another for the primer.
    const batchXmin = await xminOf('batch-t1', 'one');
    expect(await xminOf('batch-t2', 'other')).toBe(batchXmin);
    expect(await xminOf('batch-t2', 'kept')).toBe(batchXmin);
    expect(await xminOf('batch-t0', 'primer')).not.toBe(batchXmin);

    // Rotation kept per row: new access and refresh token together, or the old refresh token.
    const stored = async (tenant: string, connection: string) => (await a.repository.find({ tenant, connection }))!;
    const s1 = await stored('batch-t1', 'one');
    expect([s1.accessToken?.reveal(), s1.refreshToken?.reveal(), s1.scope]).toEqual(['at_one', 'rt_one', 'scope-one']);
    const s2 = await stored('batch-t2', 'other');
    expect([s2.accessToken?.reveal(), s2.refreshToken?.reveal()]).toEqual(['at_other', 'rt_other']);
    const s3 = await stored('batch-t2', 'kept');
    expect([s3.accessToken?.reveal(), s3.refreshToken?.reveal()]).toEqual(['at_kept', 'rt_v1_kept']);
    const s4 = await stored('batch-t1', 'stale');
    expect([s4.version, s4.accessToken?.reveal(), s4.refreshToken?.reveal()]).toEqual([1, 'at_v1', 'rt_v1_stale']);
    // The stale commit did not release the lease it did not hold.
    const [staleRow] = (await sql.rows('batch-t1')).filter((r) => r.connection === 'stale');
    expect(staleRow).toMatchObject({ lease_owner: 'replica-a', lease_live: true });

    // Outbox rows for the winners only, each stamped with the version it committed.
    const all = [first, winner, sameLease, otherTenant, noRotation, staleLease].map((c) => c.audit.event_id);
    expect((await outboxEventIds(all)).sort()).toEqual(
      [first, winner, otherTenant, noRotation].map((c) => c.audit.event_id).sort(),
    );
    const [rec] = await sql.query<{ version: number; subject: string }>(
      `SELECT (payload->>'version')::int AS version, subject FROM outbox WHERE event_id = $1`,
      [winner.audit.event_id],
    );
    expect(rec).toMatchObject({ version: 2 });
    expect(rec!.subject).toContain('batch-t1');
  });

  it('a statement the database rejects is retried one commit at a time: only the bad commit fails', async () => {
    const primer = await leased('batch-t3', 'primer');
    const good = await leased('batch-t3', 'good');
    const bad = await leased('batch-t4', 'bad');
    const first = commit(primer, write('primer'));
    const fine = commit(good, write('good'));
    // PostgreSQL text cannot hold a NUL character: the statement carrying it fails.
    const broken = commit(bad, { ...write('bad'), scope: 'bad\u0000scope' });
    const results = await Promise.allSettled([first.done, fine.done, broken.done]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((results[1] as PromiseFulfilledResult<CommittedChange | null>).value?.credential.version).toBe(2);
    expect(await outboxEventIds([fine.audit.event_id, broken.audit.event_id])).toEqual([fine.audit.event_id]);
    const badNow = (await a.repository.find({ tenant: 'batch-t4', connection: 'bad' }))!;
    expect([badNow.version, badNow.refreshToken?.reveal()]).toEqual([1, 'rt_v1_bad']);
  });
});
