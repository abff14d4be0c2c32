import { Secret } from '@tokenkeeper/common';
import { createTestDatabase, type TestDatabase } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardBucketOf } from '../src/persistence/credential.mapper.js';
import { openRepository, type StandaloneRepository } from './cluster.fixtures.js';
import { testKeys } from './refresher.harness.js';

/**
 * The scheduler's probe (CredentialRepository.dueBuckets) against real PostgreSQL: it names
 * exactly the buckets a claim would take something from, so skipping the others loses no work.
 */
describe('credential repository: which shard buckets hold claimable due work', () => {
  let db: TestDatabase;
  let a: StandaloneRepository;

  beforeAll(async () => {
    db = await createTestDatabase('tk_due');
    a = await openRepository(db.url, testKeys());
  });

  afterAll(async () => {
    await a?.close();
    await db?.drop();
  });

  /** Tenants whose buckets differ, so each case below lives in a bucket of its own. */
  function tenantsInDistinctBuckets(n: number): string[] {
    const byBucket = new Map<number, string>();
    for (let i = 0; byBucket.size < n; i++) {
      const tenant = `due${i}`;
      if (!byBucket.has(shardBucketOf(tenant))) byBucket.set(shardBucketOf(tenant), tenant);
    }
    return [...byBucket.values()];
  }

  async function register(tenant: string, nextRefreshAt: Date | null): Promise<void> {
    await a.repository.register(
      {
        tenant,
        connection: 'c',
        provider: 'sandbox',
        accessToken: new Secret('at'),
        refreshToken: new Secret('rt'),
        tokenType: 'Bearer',
        issuedAt: new Date(),
        expiresAt: null,
        nextRefreshAt,
      },
      [],
    );
  }

  it('names the buckets with unleased due rows, and only those; a claim in every other bucket is empty', async () => {
    const [due, leased, future, never] = tenantsInDistinctBuckets(4);
    await register(due!, new Date(Date.now() - 1_000));
    await register(leased!, new Date(Date.now() - 1_000));
    await register(future!, new Date(Date.now() + 3_600_000));
    await register(never!, null);
    expect(await a.repository.tryLease({ tenant: leased!, connection: 'c' }, 'replica-a', 30)).not.toBeNull();

    expect(await a.repository.dueBuckets()).toEqual([shardBucketOf(due!)]);
    for (let bucket = 0; bucket < a.repository.bucketCount; bucket++) {
      if (bucket === shardBucketOf(due!)) continue;
      expect(await a.repository.claimDue(bucket, 100, 'replica-a', 30)).toEqual([]);
    }
    const [claimed] = await a.repository.claimDue(shardBucketOf(due!), 100, 'replica-a', 30);
    expect(claimed?.credential.tenant).toBe(due);
    // Claimed now (leased): nothing is due any more.
    expect(await a.repository.dueBuckets()).toEqual([]);
  });
});
