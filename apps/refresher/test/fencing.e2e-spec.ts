import { Secret } from '@tokenkeeper/common';
import { createTestDatabase, waitFor, type TestDatabase } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecord } from '../src/persistence/audit-record.js';
import { shardBucketOf } from '../src/persistence/credential.mapper.js';
import type { CredentialRepository, FailureWrite, TokenWrite } from '../src/persistence/credential.repository.js';
import type { Credential, Lease, LeasedCredential } from '../src/domain/credential.js';
import { openRepository, Sql, type StandaloneRepository } from './cluster.fixtures.js';
import { testKeys } from './refresher.harness.js';

/**
 * The fenced write of the refresh policy at the repository level: a write made under a lease lands
 * only while that lease is the current one and the stored version is the one it read.
 * Two repositories on two pools play replica A and replica B.
 */
describe('credential repository: leases fence every write', () => {
  let db: TestDatabase;
  let a: StandaloneRepository;
  let b: StandaloneRepository;
  let sql: Sql;
  const keys = testKeys();

  beforeAll(async () => {
    db = await createTestDatabase('tk_fence');
    a = await openRepository(db.url, keys);
    b = await openRepository(db.url, keys); // migrations already applied: a no-op
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), sql?.close()]);
    await db?.drop();
  });

  const tokenWrite = (tag: string): TokenWrite => ({
    accessToken: new Secret(`at_${tag}`),
    refreshToken: new Secret(`rt_${tag}`),
    tokenType: 'Bearer',
    scope: `scope-${tag}`,
    issuedAt: new Date(),
    expiresAt: new Date(Date.now() + 3_600_000),
    nextRefreshAt: new Date(Date.now() + 3_000_000),
  });

  const failureWrite: FailureWrite = {
    status: 'failing',
    failures: 1,
    lastError: { code: 'unavailable', message: 'provider unreachable' },
    nextRefreshAt: new Date(Date.now() + 60_000),
  };

  async function register(repo: CredentialRepository, tenant: string, connection: string): Promise<Credential> {
    const change = await repo.register(
      {
        tenant,
        connection,
        provider: 'sandbox',
        accessToken: new Secret('at_v1'),
        refreshToken: new Secret('rt_v1'),
        tokenType: 'Bearer',
        issuedAt: new Date(),
        expiresAt: new Date(Date.now() + 60_000),
        // Due already, so that the scheduler's claim (claimDue) can see it.
        nextRefreshAt: new Date(Date.now() - 1_000),
      },
      [auditRecord('registered', { tenant, connection, provider: 'sandbox' }, 'test')],
    );
    return change.credential;
  }

  async function outboxHas(eventId: string): Promise<boolean> {
    return (await sql.query('SELECT 1 FROM outbox WHERE event_id = $1', [eventId])).length > 0;
  }

  async function waitUntilLeaseExpired(tenant: string, connection: string): Promise<void> {
    await waitFor(
      async () => {
        const [row] = await sql.query<{ expired: boolean }>(
          'SELECT lease_until < now() AS expired FROM credentials WHERE tenant = $1 AND connection = $2',
          [tenant, connection],
        );
        return row?.expired === true;
      },
      { timeoutMs: 5_000, message: 'lease to expire' },
    );
  }

  it("rejects the old holder's commits once its expired lease was taken over and committed", async () => {
    const key = { tenant: 'fence', connection: 'takeover' };
    await register(a.repository, key.tenant, key.connection);

    // Replica A leases for one second and then stalls (a GC pause, a slow provider …).
    const leasedByA = await a.repository.tryLease(key, 'replica-a', 1);
    expect(leasedByA).not.toBeNull();
    expect(leasedByA!.lease.version).toBe(1);
    expect(leasedByA!.credential.refreshToken?.reveal()).toBe('rt_v1');

    // While A's lease runs, B gets nothing, neither on demand nor through the scheduler's claim.
    expect(await b.repository.tryLease(key, 'replica-b', 30)).toBeNull();
    expect(await b.repository.claimDue(shardBucketOf(key.tenant), 100, 'replica-b', 30)).toEqual([]);

    await waitUntilLeaseExpired(key.tenant, key.connection);

    // B claims the expired lease through the scheduler path and commits a new token.
    const claimed = await b.repository.claimDue(shardBucketOf(key.tenant), 100, 'replica-b', 30);
    const leasedByB = claimed.find((c) => c.credential.connection === key.connection);
    expect(leasedByB).toBeDefined();
    expect(leasedByB!.lease.leaseId).not.toBe(leasedByA!.lease.leaseId);
    expect(leasedByB!.lease.version).toBe(1);

    // A wakes up before B has committed: same version, but the lease is no longer A's.
    const earlyRefresh = auditRecord('refreshed', leasedByA!.credential, 'replica-a');
    expect(await a.repository.commitRefresh(key, leasedByA!.lease, tokenWrite('A-early'), [earlyRefresh])).toBeNull();
    const earlyFailure = auditRecord('failed', leasedByA!.credential, 'replica-a');
    expect(await a.repository.commitFailure(key, leasedByA!.lease, failureWrite, [earlyFailure])).toBeNull();
    expect(await outboxHas(earlyRefresh.event_id)).toBe(false);
    expect(await outboxHas(earlyFailure.event_id)).toBe(false);

    const committedByB = await b.repository.commitRefresh(key, leasedByB!.lease, tokenWrite('B'), [
      auditRecord('refreshed', leasedByB!.credential, 'replica-b'),
    ]);
    expect(committedByB?.credential).toMatchObject({ version: 2, status: 'active' });

    // A wakes up with its answer from the provider: both of its writes must change nothing.
    const lateRefresh = auditRecord('refreshed', leasedByA!.credential, 'replica-a');
    expect(await a.repository.commitRefresh(key, leasedByA!.lease, tokenWrite('A'), [lateRefresh])).toBeNull();
    const lateFailure = auditRecord('failed', leasedByA!.credential, 'replica-a');
    expect(await a.repository.commitFailure(key, leasedByA!.lease, failureWrite, [lateFailure])).toBeNull();
    // Neither does giving back a lease it no longer holds (B's next lease must survive it).
    const leasedByBAgain = await b.repository.tryLease(key, 'replica-b', 30);
    expect(leasedByBAgain).not.toBeNull();
    await a.repository.releaseLease(key, leasedByA!.lease);

    const stored = await a.repository.find(key);
    expect(stored).toMatchObject({ version: 2, status: 'active', failures: 0, lastError: null, scope: 'scope-B' });
    expect(stored!.accessToken?.reveal()).toBe('at_B');
    expect(stored!.refreshToken?.reveal()).toBe('rt_B');
    const [row] = await sql.rows(key.tenant).then((rows) => rows.filter((r) => r.connection === key.connection));
    expect(row).toMatchObject({ lease_owner: 'replica-b', lease_live: true });

    // The rejected writes left no audit record either; B's did.
    expect(await outboxHas(lateRefresh.event_id)).toBe(false);
    expect(await outboxHas(lateFailure.event_id)).toBe(false);
    expect(await sql.auditCountsByReplica('refreshed', key.tenant)).toEqual({ 'replica-b': 1 });
    await b.repository.releaseLease(key, leasedByBAgain!.lease);
  });

  it('lands a commit under a lease that lapsed while nobody took it (the row keeps the lease id)', async () => {
    const key = { tenant: 'fence', connection: 'lapsed' };
    await register(a.repository, key.tenant, key.connection);
    const leased = await a.repository.tryLease(key, 'replica-a', 1);
    expect(leased).not.toBeNull();
    await waitUntilLeaseExpired(key.tenant, key.connection);
    // What the unit fakes must model: the lapsed lease is still named in the row.
    const [lapsed] = await sql.query<{ lease_id: string | null }>(
      'SELECT lease_id FROM credentials WHERE tenant = $1 AND connection = $2',
      [key.tenant, key.connection],
    );
    expect(lapsed!.lease_id).toBe(leased!.lease.leaseId);
    const committed = await a.repository.commitRefresh(key, leased!.lease, tokenWrite('lapsed'), [
      auditRecord('refreshed', leased!.credential, 'replica-a'),
    ]);
    expect(committed?.credential).toMatchObject({ version: 2, status: 'active' });
    expect((await a.repository.find(key))!.refreshToken?.reveal()).toBe('rt_lapsed');
  });

  it('rejects a commit with the current lease but a stale version', async () => {
    const key = { tenant: 'fence', connection: 'stale-version' };
    await register(a.repository, key.tenant, key.connection);
    const first = await a.repository.tryLease(key, 'replica-a', 30);
    expect((await a.repository.commitRefresh(key, first!.lease, tokenWrite('v2'), []))?.credential).toMatchObject({
      version: 2,
    });

    const leased: LeasedCredential | null = await a.repository.tryLease(key, 'replica-a', 30);
    expect(leased!.lease.version).toBe(2);
    const staleLease: Lease = { leaseId: leased!.lease.leaseId, version: 1 };
    const staleAudit = auditRecord('refreshed', leased!.credential, 'replica-a');
    expect(await a.repository.commitRefresh(key, staleLease, tokenWrite('stale'), [staleAudit])).toBeNull();
    expect(await a.repository.commitFailure(key, staleLease, failureWrite, [staleAudit])).toBeNull();
    expect(await outboxHas(staleAudit.event_id)).toBe(false);

    // Nothing changed, and the lease is still held: the rejected commit did not release it.
    let stored = await a.repository.find(key);
    expect(stored).toMatchObject({ version: 2, status: 'active', failures: 0 });
    expect(stored!.refreshToken?.reveal()).toBe('rt_v2');
    expect(await b.repository.tryLease(key, 'replica-b', 30)).toBeNull();

    // The right lease with the right version lands.
    expect((await a.repository.commitRefresh(key, leased!.lease, tokenWrite('v3'), []))?.credential).toMatchObject({
      version: 3,
    });
    stored = await b.repository.find(key);
    expect(stored!.refreshToken?.reveal()).toBe('rt_v3');
    expect(stored!.accessToken?.reveal()).toBe('at_v3');
    // A lease is good for one write: replaying it after the commit changes nothing.
    expect(await a.repository.commitRefresh(key, leased!.lease, tokenWrite('replay'), [])).toBeNull();
    expect(await a.repository.commitFailure(key, { ...leased!.lease, version: 3 }, failureWrite, [])).toBeNull();
    expect((await a.repository.find(key))!.refreshToken?.reveal()).toBe('rt_v3');
  });

  it('tryLease with an expectedVersion that is not current takes no lease', async () => {
    const key = { tenant: 'fence', connection: 'expected-version' };
    await register(a.repository, key.tenant, key.connection);
    const first = await a.repository.tryLease(key, 'replica-a', 30);
    await a.repository.commitRefresh(key, first!.lease, tokenWrite('v2'), []);
    const startedBefore = await sql.query('SELECT 1 FROM outbox WHERE type = $1 AND connection = $2', [
      'refresh_started',
      key.connection,
    ]);

    // Someone reports version 1 rejected, but version 2 is already stored: no refresh.
    expect(await b.repository.tryLease(key, 'replica-b', 30, 1)).toBeNull();
    // A version from the future is not current either.
    expect(await b.repository.tryLease(key, 'replica-b', 30, 3)).toBeNull();
    const [row] = (await sql.rows(key.tenant)).filter((r) => r.connection === key.connection);
    expect(row).toMatchObject({ version: 2, lease_owner: null, lease_until: null });
    const startedAfter = await sql.query('SELECT 1 FROM outbox WHERE type = $1 AND connection = $2', [
      'refresh_started',
      key.connection,
    ]);
    expect(startedAfter.length).toBe(startedBefore.length);

    // The current version does lease, exactly once.
    const current = await b.repository.tryLease(key, 'replica-b', 30, 2);
    expect(current).toMatchObject({ lease: { version: 2 } });
    expect(await a.repository.tryLease(key, 'replica-a', 30, 2)).toBeNull();
  });
});
