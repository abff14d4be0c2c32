import { Logger } from '@nestjs/common';
import { ContractError, credentialId } from '@tokenkeeper/contracts';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  asAdapter,
  cacheAndNotifier,
  credential,
  FakeClock,
  FakeRepository,
  T0,
  testConfig,
} from '../../test/unit/core-fakes.js';
import type { LeasedRefresher } from './refresher.ports.js';
import { toTokenView } from '../domain/token-view.js';
import type { LeasedCredential } from '../domain/credential.js';
import { RefreshCoordinator } from './refresh-coordinator.service.js';
import type { RefreshOutcome, RefreshService } from './refresh.service.js';

/** Stands in for RefreshService: commits a new version under the lease it is given. */
class FakeRefresher implements LeasedRefresher {
  calls = 0;
  isDraining = false;
  outcome: 'refreshed' | 'failed' = 'refreshed';
  constructor(private readonly repository: FakeRepository) {}

  get asService(): RefreshService {
    return asAdapter<LeasedRefresher, RefreshService>(this);
  }

  async refreshLeased({ credential: c, lease }: LeasedCredential): Promise<RefreshOutcome> {
    this.calls++;
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.outcome === 'failed') {
      const change = await this.repository.commitFailure(
        c,
        lease,
        { status: 'failing', failures: 1, lastError: { code: 'unavailable', message: 'down' }, nextRefreshAt: null },
        [],
      );
      return { kind: 'failed', credential: change!.credential, code: 'unavailable', message: 'down' };
    }
    const change = await this.repository.commitRefresh(
      c,
      lease,
      { accessToken: c.accessToken!, tokenType: 'Bearer', issuedAt: new Date(), expiresAt: null, nextRefreshAt: null },
      [],
    );
    return change ? { kind: 'refreshed', credential: change.credential } : { kind: 'superseded' };
  }
}

describe('RefreshCoordinator (fakes: repository, refresher, clock)', () => {
  const key = { tenant: 'acme', connection: 'github' };
  let clock: FakeClock;
  let repository: FakeRepository;
  let refresher: FakeRefresher;
  let parts: ReturnType<typeof cacheAndNotifier>;
  let coordinator: RefreshCoordinator;

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    clock = new FakeClock(T0);
    repository = new FakeRepository(clock);
    repository.put(credential(clock));
    refresher = new FakeRefresher(repository);
    parts = cacheAndNotifier(clock);
    coordinator = new RefreshCoordinator(
      testConfig(),
      repository.asRepository,
      refresher.asService,
      parts.cache,
      clock,
    );
  });

  it('many callers at once: one lease, one refresh, one shared answer', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => coordinator.refresh(key, 1)));
    expect(refresher.calls).toBe(1);
    expect(new Set(results).size).toBe(1);
    expect(results[0].credential.version).toBe(2);
  });

  it('another replica holding the lease: waits for its version instead of refreshing', async () => {
    repository.leasedElsewhere = true;
    const waiting = coordinator.refresh(key, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The other replica commits; its event reaches this replica's cache.
    parts.cache.observe(
      credentialId(key),
      toTokenView(repository.commitElsewhere(key, 'at_other')),
      clock.now(),
      Number.POSITIVE_INFINITY,
    );
    const result = await waiting;
    expect(refresher.calls).toBe(0);
    expect(result.credential.version).toBe(2);
    expect(result.credential.accessToken?.reveal()).toBe('at_other');
  });

  it("reports the refresh's failure with what is stored now", async () => {
    refresher.outcome = 'failed';
    const result = await coordinator.refresh(key, 1);
    expect(result.failure).toEqual({ code: 'unavailable', message: 'down' });
    expect(result.credential.status).toBe('failing');
  });

  it('gives up with refresh_failed once the deadline on the injected clock has passed', async () => {
    repository.leasedElsewhere = true;
    const waiting = coordinator.refresh(key, 1);
    // Past lease (30 s) + request timeout (5 s), without waiting that long.
    clock.advance(36_000);
    await expect(waiting).rejects.toMatchObject({ code: 'refresh_failed' });
    expect(refresher.calls).toBe(0);
  });

  it('refuses at once while the refresher drains', async () => {
    refresher.isDraining = true;
    const error = await coordinator.refresh(key, 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContractError);
    expect(error).toMatchObject({ code: 'unavailable' });
  });

  it('a version that moved on already is answered without a lease', async () => {
    repository.commitElsewhere(key, 'at_v2');
    const result = await coordinator.refresh(key, 1);
    expect(refresher.calls).toBe(0);
    expect(result.credential.version).toBe(2);
  });
});
