import { Logger } from '@nestjs/common';
import { ContractError } from '@tokenkeeper/contracts';
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
import { ProviderRevocation } from '../providers/provider-revocation.client.js';
import type { RefreshCoordinator } from '../refresh/refresh-coordinator.service.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { TokenService } from './token.service.js';

/** The control and data plane for a credential whose provider no longer allows its tenant. */
describe('TokenService: a provider withdrawn from the tenant', () => {
  const key = { tenant: 'acme', connection: 'github' };
  let clock: FakeClock;
  let repository: FakeRepository;
  let refreshes: number;
  let service: TokenService;

  const codeOf = async (work: () => unknown): Promise<string> => {
    try {
      await work();
    } catch (error) {
      return (error as ContractError).code;
    }
    return 'answered';
  };

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    clock = new FakeClock(T0);
    repository = new FakeRepository(clock);
    refreshes = 0;
    const coordinator = {
      refresh: async () => {
        refreshes++;
        throw new Error('not expected');
      },
    } as unknown as RefreshCoordinator;
    const parts = cacheAndNotifier();
    const providers = new ProviderRegistry(new Map([['sandbox', provider({ tenants: ['other'] })]]));
    service = new TokenService(
      testConfig(),
      repository.asRepository,
      providers,
      coordinator,
      parts.cache,
      parts.notifier,
      new ProviderRevocation(providers, new FakeTokenEndpoint(clock)),
      clock,
      new RefreshMetrics(),
    );
    // Stored while the tenant was allowed, with a token still valid for an hour.
    repository.put(credential(clock));
  });

  it('describe says why at once, before the next due refresh records it', async () => {
    const view = await service.describe(key);
    expect(view.status).toBe('active');
    expect(view.lastError).toEqual({
      code: 'forbidden',
      message: expect.stringMatching(/`tenants` of provider "sandbox"/),
    });
  });

  it('token.get answers forbidden, even with a valid token stored; admin refresh too, and nothing is refreshed', async () => {
    expect(await codeOf(() => service.get(key))).toBe('forbidden');
    expect(await codeOf(() => service.get({ ...key, minTtlSeconds: 0 }))).toBe('forbidden');
    expect(await codeOf(() => service.refreshNow(key))).toBe('forbidden');
    expect(refreshes).toBe(0);
  });

  it('register is refused and stores nothing', async () => {
    expect(await codeOf(() => service.register({ tenant: 'acme', connection: 'new', provider: 'sandbox' }))).toBe(
      'forbidden',
    );
    expect(await repository.find({ tenant: 'acme', connection: 'new' })).toBeNull();
  });
});
