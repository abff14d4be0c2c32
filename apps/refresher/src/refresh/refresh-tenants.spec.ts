import { Logger } from '@nestjs/common';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  cacheAndNotifier,
  credential,
  FakeClock,
  FakeRepository,
  FakeTokenEndpoint,
  provider,
  T0,
  testConfig,
} from '../../test/unit/core-fakes.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import type { ProviderConfig } from '../providers/provider.types.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { RefreshService } from './refresh.service.js';

/** A refresh of a credential whose provider does not (or no longer) allow its tenant. */
describe('RefreshService: a provider that does not allow the tenant', () => {
  let clock: FakeClock;
  let repository: FakeRepository;
  let endpoint: FakeTokenEndpoint;
  let parts: ReturnType<typeof cacheAndNotifier>;
  const key = { tenant: 'acme', connection: 'github' };

  const service = (config: ProviderConfig) =>
    new RefreshService(
      testConfig(),
      repository.asRepository,
      new ProviderRegistry(new Map([[config.id, config]])),
      endpoint,
      parts.notifier,
      clock,
      new RefreshMetrics(),
    );
  const lease = async () => (await repository.tryLease(key, 'me', 30))!;

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    clock = new FakeClock(T0, 0);
    repository = new FakeRepository(clock);
    endpoint = new FakeTokenEndpoint(clock);
    parts = cacheAndNotifier();
    repository.put(credential(clock));
  });

  it('requests nothing, records failing/forbidden once, looks again after MISCONFIGURED_RETRY_MS, and resumes when allowed', async () => {
    const withdrawn = service(provider({ tenants: ['other-*'] }));
    const outcome = await withdrawn.refreshLeased(await lease());
    expect(outcome).toMatchObject({ kind: 'failed', code: 'forbidden' });
    expect(endpoint.requests).toHaveLength(0);
    const stored = (await repository.find(key))!;
    expect(stored.status).toBe('failing');
    expect(stored.lastError).toEqual({
      code: 'forbidden',
      message: expect.stringMatching(/^not refreshed: .*`tenants` of provider "sandbox"/),
    });
    // Nothing was attempted at the provider: not counted as a failure of it.
    expect(stored.failures).toBe(0);
    // Random 0: half of MISCONFIGURED_RETRY_MS (600 s in the test config).
    expect(stored.nextRefreshAt?.getTime()).toBe(T0 + 300_000);
    expect(repository.audit.map((r) => [r.type, r.payload.code])).toEqual([['failed', 'forbidden']]);
    expect(parts.publisher.events.map((e) => e.kind)).toEqual(['failed']);

    // The next look, still refused: no new record or event for the same refusal.
    clock.advance(300_000);
    await withdrawn.refreshLeased(await lease());
    expect(endpoint.requests).toHaveLength(0);
    expect(repository.audit).toHaveLength(1);
    expect(parts.publisher.events).toHaveLength(1);

    // The providers file allows the tenant again (restart): the next look refreshes.
    const allowed = service(provider({ tenants: ['acme'] }));
    expect((await allowed.refreshLeased(await lease())).kind).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect((await repository.find(key))!).toMatchObject({ status: 'active', lastError: null, version: 2 });
  });

  it('a client_credentials provider without tenants is refused before any request', async () => {
    repository.put(credential(clock, { refreshToken: undefined }));
    const outcome = await service(provider({ grant: 'client_credentials' })).refreshLeased(await lease());
    expect(outcome).toMatchObject({
      kind: 'failed',
      code: 'forbidden',
      message: expect.stringMatching(/client_credentials/),
    });
    expect(endpoint.requests).toHaveLength(0);
  });
});
