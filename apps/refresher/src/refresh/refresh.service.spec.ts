import { Logger } from '@nestjs/common';
import { credentialId } from '@tokenkeeper/contracts';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  cacheAndNotifier,
  credential,
  FakeClock,
  FakeRepository,
  FakeTokenEndpoint,
  provider,
  testConfig,
  T0,
} from '../../test/unit/core-fakes.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import type { ProviderConfig } from '../providers/provider.types.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { RefreshService } from './refresh.service.js';

describe('RefreshService (fakes: repository, token endpoint, clock, notifier)', () => {
  let clock: FakeClock;
  let repository: FakeRepository;
  let endpoint: FakeTokenEndpoint;
  let parts: ReturnType<typeof cacheAndNotifier>;
  let service: RefreshService;
  const key = { tenant: 'acme', connection: 'github' };

  const build = (providers: ProviderConfig[] = [provider()]) => {
    service = new RefreshService(
      testConfig(),
      repository.asRepository,
      new ProviderRegistry(new Map(providers.map((p) => [p.id, p]))),
      endpoint,
      parts.notifier,
      clock,
      new RefreshMetrics(),
    );
  };

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    clock = new FakeClock(T0, 0);
    repository = new FakeRepository(clock);
    endpoint = new FakeTokenEndpoint(clock);
    parts = cacheAndNotifier(clock);
    repository.put(credential(clock));
    build();
  });

  const lease = async () => (await repository.tryLease(key, 'me', 30))!;

  it('commits the new token with a schedule counted from the request, then caches and announces it once', async () => {
    clock.advance(10_000);
    const outcome = await service.refreshLeased(await lease());

    expect(outcome.kind).toBe('refreshed');
    const stored = (await repository.find(key))!;
    expect(stored.version).toBe(2);
    expect(stored.accessToken?.reveal()).toBe('at_new');
    expect(stored.refreshToken?.reveal()).toBe('rt_new');
    // requestedAt comes from the injected clock: lifetime 3600 s, threshold 0.8, no jitter (random 0).
    expect(stored.expiresAt?.getTime()).toBe(T0 + 10_000 + 3_600_000);
    expect(stored.nextRefreshAt?.getTime()).toBe(T0 + 10_000 + 2_880_000);
    expect(endpoint.requests[0].refreshToken?.reveal()).toBe('rt_v1');

    const audit = repository.audit.filter((r) => r.type === 'refreshed');
    expect(audit).toHaveLength(1);
    expect(audit[0].payload.outcome).toBe('rotated');
    expect(parts.publisher.events).toEqual([
      expect.objectContaining({ kind: 'refreshed', version: 2, accessToken: 'at_new', eventId: audit[0].event_id }),
    ]);
    expect(parts.cache.get(credentialId(key))?.version).toBe(2);
  });

  it('keeps the stored refresh token when the provider sends none', async () => {
    endpoint.answer = () => endpoint.issue('at_2', undefined, 3600);
    await service.refreshLeased(await lease());
    const stored = (await repository.find(key))!;
    expect(stored.refreshToken?.reveal()).toBe('rt_v1');
    expect(repository.audit.at(-1)?.payload.outcome).toBe('refreshed');
  });

  it('invalid_grant: reauth_required, no retry scheduled, a failed event and waiters woken', async () => {
    endpoint.answer = () => ({
      ok: false,
      failure: { kind: 'invalid_grant', code: 'invalid_grant', message: 'refresh token revoked' },
    });
    const woken = parts.cache.waitForVersionAbove(credentialId(key), 1, 5_000);
    const outcome = await service.refreshLeased(await lease());

    expect(outcome).toMatchObject({ kind: 'failed', code: 'reauth_required' });
    expect(await repository.find(key)).toMatchObject({
      status: 'reauth_required',
      nextRefreshAt: null,
      failures: 1,
      version: 1,
    });
    expect(await woken).toBe(-1);
    expect(parts.publisher.events).toEqual([
      expect.objectContaining({
        kind: 'failed',
        version: 1,
        notice: expect.objectContaining({ code: 'reauth_required', attempt: 1, retryAt: null }),
      }),
    ]);
    expect(repository.audit.at(-1)?.type).toBe('reauth_required');
  });

  it('a retryable failure backs off from the injected clock and honours Retry-After', async () => {
    clock.randomValue = 0.5;
    endpoint.answer = () => ({
      ok: false,
      failure: { kind: 'retryable', code: 'http_503', message: 'HTTP 503', retryAfterMs: 30_000 },
    });
    await service.refreshLeased(await lease());
    const stored = (await repository.find(key))!;
    expect(stored.status).toBe('failing');
    expect(stored.lastError).toEqual({ code: 'refresh_failed', message: 'HTTP 503' });
    // Backoff for attempt 1 is at most 1 s; Retry-After (30 s) wins.
    expect(stored.nextRefreshAt?.getTime()).toBe(T0 + 30_000);
    expect(parts.publisher.events[0]).toMatchObject({ kind: 'failed', notice: { code: 'refresh_failed', attempt: 1 } });
  });

  it('a commit whose fence no longer holds changes nothing and announces nothing', async () => {
    const leased = await lease();
    endpoint.answer = async () => {
      repository.commitElsewhere(key, 'at_other'); // another replica took over and committed
      return endpoint.issue('at_late', 'rt_late', 3600);
    };
    expect(await service.refreshLeased(leased)).toEqual({ kind: 'superseded' });
    expect((await repository.find(key))!.accessToken?.reveal()).toBe('at_other');
    expect(parts.publisher.events).toEqual([]);
  });

  it('item 1: a commit that fails after the provider rotated is retried with the rotated token until it lands', async () => {
    repository.commitErrors = 3;
    const outcome = await service.refreshLeased(await lease());
    expect(outcome.kind).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect((await repository.find(key))!.refreshToken?.reveal()).toBe('rt_new');
  });

  it('item 1: a lease that lapsed meanwhile (nobody took it) still fences the commit, which lands under it', async () => {
    const leased = await lease();
    endpoint.answer = () => {
      repository.lapseLease(key);
      return endpoint.issue('at_new', 'rt_new', 3600);
    };
    expect((await service.refreshLeased(leased)).kind).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect(repository.leasesTaken, 'committed under the first lease, not a new one').toBe(1);
    const stored = (await repository.find(key))!;
    expect(stored).toMatchObject({ version: 2 });
    expect(stored.refreshToken?.reveal()).toBe('rt_new');
  });

  it('item 1: a lease another replica took and gave back meanwhile is taken again and the rotated token committed under it', async () => {
    const leased = await lease();
    endpoint.answer = () => {
      repository.takenAndReleasedElsewhere(key);
      return endpoint.issue('at_new', 'rt_new', 3600);
    };
    expect((await service.refreshLeased(leased)).kind).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect(repository.leasesTaken).toBe(2);
    const stored = (await repository.find(key))!;
    expect(stored).toMatchObject({ version: 2 });
    expect(stored.refreshToken?.reveal()).toBe('rt_new');
  });

  it('item 1: a newer version found while retrying ends the retry without overwriting it', async () => {
    repository.commitErrors = 1;
    const leased = await lease();
    endpoint.answer = () => {
      repository.commitElsewhere(key, 'at_other');
      return endpoint.issue('at_late', 'rt_late', 3600);
    };
    expect(await service.refreshLeased(leased)).toEqual({ kind: 'superseded' });
    expect((await repository.find(key))!.accessToken?.reveal()).toBe('at_other');
  });

  it('item 1: a commit that landed but whose answer was lost is recognised by its refresh token: refreshed, not announced', async () => {
    repository.commitAnswersLost = 1;
    const outcome = await service.refreshLeased(await lease());
    expect(outcome).toMatchObject({ kind: 'refreshed', credential: { version: 2 } });
    expect(endpoint.requests).toHaveLength(1);
    const stored = (await repository.find(key))!;
    expect(stored).toMatchObject({ version: 2 });
    expect(stored.refreshToken?.reveal()).toBe('rt_new');
    // The event id of the lost answer is unknown here: the next refresh or the cache's expiry corrects clients.
    expect(parts.publisher.events).toEqual([]);
  });

  it('item 2: a commit that hangs past the lease deadline is noticed, logged and retried with the same token', async () => {
    const config = testConfig();
    config.refresh.leaseSeconds = 3;
    service = new RefreshService(
      config,
      repository.asRepository,
      new ProviderRegistry(new Map([['sandbox', provider()]])),
      endpoint,
      parts.notifier,
      clock,
      new RefreshMetrics(),
    );
    repository.commitHangs = 1;
    const warnings: unknown[] = [];
    Logger.overrideLogger({
      log() {},
      error: (m: unknown) => warnings.push(m),
      warn: (m: unknown) => warnings.push(m),
    } as never);
    try {
      const outcome = await service.refreshLeased((await repository.tryLease(key, 'me', 3))!);
      expect(outcome.kind).toBe('refreshed');
    } finally {
      Logger.overrideLogger(false);
    }
    expect(endpoint.requests).toHaveLength(1);
    expect((await repository.find(key))!.refreshToken?.reveal()).toBe('rt_new');
    expect(JSON.stringify(warnings)).toContain('commit did not finish within');
  }, 10_000);

  it('item 4: the lease is extended while a slow request runs, and the slow answer is committed', async () => {
    const config = testConfig();
    config.refresh.leaseSeconds = 1;
    service = new RefreshService(
      config,
      repository.asRepository,
      new ProviderRegistry(new Map([['sandbox', provider()]])),
      endpoint,
      parts.notifier,
      clock,
      new RefreshMetrics(),
    );
    endpoint.answer = async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      return endpoint.issue('at_slow', 'rt_slow', 3600);
    };
    const outcome = await service.refreshLeased((await repository.tryLease(key, 'me', 1))!);
    expect(outcome.kind).toBe('refreshed');
    // One beat per third of the 1 s lease while the 1.1 s request ran.
    expect(repository.extensions).toBeGreaterThanOrEqual(2);
    expect((await repository.find(key))!.refreshToken?.reveal()).toBe('rt_slow');
  });

  it('item 4: after a timed-out request the retry comes within 5 s, however many failures came before', async () => {
    repository.put(credential(clock, { status: 'failing', failures: 8 }));
    clock.randomValue = 0.999;
    endpoint.answer = () => ({
      ok: false,
      failure: { kind: 'retryable', code: 'timeout', message: 'no complete answer within 2000 ms' },
    });
    await service.refreshLeased(await lease());
    const stored = (await repository.find(key))!;
    expect(stored.failures).toBe(9);
    expect(stored.nextRefreshAt!.getTime() - T0).toBeLessThanOrEqual(5_000);
    // Other retryable failures keep their exponential backoff (attempt 9: up to 256 s, capped at 60 s here).
    repository.put(credential(clock, { status: 'failing', failures: 8 }));
    endpoint.answer = () => ({ ok: false, failure: { kind: 'retryable', code: 'http_503', message: 'HTTP 503' } });
    await service.refreshLeased(await lease());
    expect((await repository.find(key))!.nextRefreshAt!.getTime() - T0).toBeGreaterThan(30_000);
  });

  it('item 3: claim room per provider is its free slots while work is leased', async () => {
    build([provider({ maxConcurrency: 2 })]);
    let release!: () => void;
    endpoint.answer = () =>
      new Promise((resolve) => (release = () => resolve(endpoint.issue('at_new', 'rt_new', 3600))));
    expect(service.claimRoom()).toEqual({ perProvider: {}, others: 1 });
    const running = service.refreshLeased(await lease());
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(service.claimRoom()).toEqual({ perProvider: { sandbox: 1 }, others: 1 });
    release();
    await running;
    expect(service.claimRoom()).toEqual({ perProvider: { sandbox: 2 }, others: 1 });
  });

  it('a credential of a provider not in the providers file fails as misconfigured without a request', async () => {
    build([provider({ id: 'other' })]);
    const outcome = await service.refreshLeased(await lease());
    expect(outcome).toMatchObject({ kind: 'failed', code: 'unknown_provider' });
    expect(endpoint.requests).toHaveLength(0);
    expect((await repository.find(key))!.nextRefreshAt!.getTime()).toBeGreaterThan(T0);
  });

  it('while draining, a lease is given back without a request', async () => {
    await service.drain(0);
    expect(await service.refreshLeased(await lease())).toEqual({ kind: 'superseded' });
    expect(endpoint.requests).toHaveLength(0);
    expect(await repository.tryLease(key, 'other', 30)).not.toBeNull();
  });
});
