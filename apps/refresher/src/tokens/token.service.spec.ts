import { Logger } from '@nestjs/common';
import {
  credentialId,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  SIGNER_HEADER,
  type TokenGetRequest,
} from '@tokenkeeper/contracts';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  asAdapter,
  cacheAndNotifier,
  credential,
  decodeReply,
  FakeClock,
  FakeRepository,
  FakeTokenEndpoint,
  provider,
  T0,
  testConfig,
  testSigner,
} from '../../test/unit/core-fakes.js';
import type { Credential } from '../domain/credential.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { ProviderRevocation } from '../providers/provider-revocation.client.js';
import type { OnDemandResult, RefreshCoordinator } from '../refresh/refresh-coordinator.service.js';
import type { OnDemandRefresher } from '../refresh/refresher.ports.js';
import type { ReplyWithHeaders } from '@tokenkeeper/nats';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { TokenService } from './token.service.js';

/** Stands in for the coordinator: "refreshes" by committing a new version, as RefreshService would, through the notifier. */
class FakeCoordinator implements OnDemandRefresher {
  calls: { staleVersion?: number }[] = [];
  fail = false;
  constructor(
    private readonly repository: FakeRepository,
    private readonly committed: (
      change: Parameters<ReturnType<typeof cacheAndNotifier>['notifier']['committed']>[0],
    ) => void,
  ) {}

  get asCoordinator(): RefreshCoordinator {
    return asAdapter<OnDemandRefresher, RefreshCoordinator>(this);
  }

  async refresh(key: { tenant: string; connection: string }, staleVersion?: number): Promise<OnDemandResult> {
    this.calls.push({ staleVersion });
    const leased = (await this.repository.tryLease(key, 'me', 30))!;
    if (this.fail) {
      const change = await this.repository.commitFailure(
        key,
        leased.lease,
        {
          status: 'failing',
          failures: 1,
          lastError: { code: 'refresh_failed', message: 'HTTP 500' },
          nextRefreshAt: null,
        },
        [],
      );
      return { credential: change!.credential, failure: { code: 'refresh_failed', message: 'HTTP 500' } };
    }
    const c = leased.credential;
    const change = (await this.repository.commitRefresh(
      key,
      leased.lease,
      {
        accessToken: (await import('@tokenkeeper/common')).Secret.of(`at_v${c.version + 1}`)!,
        tokenType: 'Bearer',
        issuedAt: new Date(T0),
        expiresAt: new Date(T0 + 7_200_000),
        nextRefreshAt: null,
      },
      [],
    ))!;
    this.committed(change);
    return { credential: change.credential };
  }
}

describe('TokenService (fakes: repository, coordinator, token endpoint, clock)', () => {
  const key = { tenant: 'acme', connection: 'github' };
  let clock: FakeClock;
  let repository: FakeRepository;
  let endpoint: FakeTokenEndpoint;
  let parts: ReturnType<typeof cacheAndNotifier>;
  let coordinator: FakeCoordinator;
  let service: TokenService;

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    clock = new FakeClock(T0);
    repository = new FakeRepository(clock);
    endpoint = new FakeTokenEndpoint(clock);
    parts = cacheAndNotifier(clock);
    coordinator = new FakeCoordinator(repository, (change) => parts.notifier.committed(change));
    const providers = new ProviderRegistry(
      new Map([['sandbox', provider({ revocationUrl: 'https://provider.test/revoke' })]]),
    );
    service = new TokenService(
      testConfig(),
      repository.asRepository,
      providers,
      coordinator.asCoordinator,
      parts.cache,
      parts.notifier,
      new ProviderRevocation(providers, endpoint),
      clock,
      new RefreshMetrics(),
    );
  });

  const get = async (request: Partial<TokenGetRequest> = {}) => decodeReply(await service.get({ ...key, ...request }));
  const store = (over: Partial<Credential> = {}) => repository.put(credential(clock, over));

  it('answers a fresh token from memory after the first read: same bytes, no database', async () => {
    store();
    const first = await service.get(key);
    const reads = repository.finds;
    const second = service.get(key);
    expect(second).not.toBeInstanceOf(Promise);
    expect(second).toBe(first);
    expect(repository.finds).toBe(reads);
    expect(decodeReply(second as ReplyWithHeaders).token).toMatchObject({ accessToken: 'at_v1', version: 1 });
    // Signed over exactly the bytes answered, by this replica's key.
    const { data, headers } = second as ReplyWithHeaders;
    expect(headers.get(SIGNER_HEADER)).toBe(testSigner.publicKey);
    expect(
      new SignatureVerifier([testSigner.publicKey]).verify('token.get.acme.github', data, headers, clock.now()),
    ).toBe('ok');
  });

  it('re-signs a cached reply on the hot path once its signature is a third of the max age old, without the database', async () => {
    store();
    const first = (await service.get(key)) as ReplyWithHeaders;
    const reads = repository.finds;
    clock.advance(299_999);
    expect(service.get(key)).toBe(first);
    clock.advance(1);
    const resigned = service.get(key) as ReplyWithHeaders;
    expect(resigned).not.toBeInstanceOf(Promise);
    expect(resigned).not.toBe(first);
    expect(resigned.headers.get(SIGNED_AT_HEADER)).toBe(String(clock.now()));
    expect(
      new SignatureVerifier([testSigner.publicKey]).verify(
        'token.get.acme.github',
        resigned.data,
        resigned.headers,
        clock.now(),
      ),
    ).toBe('ok');
    expect(service.get(key)).toBe(resigned);
    expect(repository.finds).toBe(reads);
  });

  it('the injected clock decides: a cached token no longer valid for minTtl is refreshed', async () => {
    store();
    await get();
    // 3600 s token: with the default minTtl (30 s) it stops being served 30 s before expiry.
    clock.advance(3_600_000 - 30_000 + 1);
    const reply = await get();
    expect(coordinator.calls).toEqual([{ staleVersion: 1 }]);
    expect(reply.token).toMatchObject({ accessToken: 'at_v2', version: 2 });
  });

  it('minTtl is capped at half the lifetime, on the hot path and the slow path alike', async () => {
    // A 60 s token asked for minTtl 3600 s: served while 30 s (half its lifetime) remain.
    store({ expiresAt: new Date(T0 + 60_000) });
    expect((await get({ minTtlSeconds: 3600 })).token.version).toBe(1);
    clock.advance(29_000);
    expect((await get({ minTtlSeconds: 3600 })).token.version).toBe(1);
    expect(coordinator.calls).toHaveLength(0);
    clock.advance(2_000);
    expect((await get({ minTtlSeconds: 3600 })).token.version).toBe(2);
  });

  it('minTtl 0 still wants a second left (the delivery margin): a token about to expire is refreshed, unless no refresh can happen', async () => {
    store({ expiresAt: new Date(T0 + 60_000) });
    expect((await get({ minTtlSeconds: 0 })).token.version).toBe(1);
    clock.advance(59_000);
    expect((await get({ minTtlSeconds: 0 })).token.version).toBe(1);
    expect(coordinator.calls).toHaveLength(0);
    // 999 ms left: it would arrive all but expired.
    clock.advance(1);
    expect((await get({ minTtlSeconds: 0 })).token.version).toBe(2);
    expect(coordinator.calls).toEqual([{ staleVersion: 1 }]);
  });

  it('with the refresh failing, a token inside the delivery margin is still served (it beats an error) until it expires', async () => {
    coordinator.fail = true;
    store({ expiresAt: new Date(T0 + 60_000) });
    clock.advance(59_500);
    expect((await get({ minTtlSeconds: 0 })).token.version).toBe(1);
    expect(coordinator.calls).toHaveLength(1);
    clock.advance(501);
    await expect(service.get({ ...key, minTtlSeconds: 0 })).rejects.toMatchObject({ code: 'refresh_failed' });
  });

  it('a slow token.get that refreshes answers the reply the commit cached: one view, one put, one encoding', async () => {
    // An hour-long token with 10 s left: not valid for the default 30 s.
    store({ issuedAt: new Date(T0 - 3_590_000), expiresAt: new Date(T0 + 10_000) });
    const reply = await service.get(key);
    const cached = parts.cache.get(credentialId(key))!;
    expect(cached.version).toBe(2);
    expect(reply).toBe(cached.reply);
    expect(parts.publisher.events.map((e) => e.kind)).toEqual(['refreshed']);
  });

  it('the version a caller reports rejected is refreshed once; an older report is answered from memory', async () => {
    store();
    await get();
    expect((await get({ rejectedVersion: 1 })).token.version).toBe(2);
    expect((await get({ rejectedVersion: 1 })).token.version).toBe(2);
    expect(coordinator.calls).toHaveLength(1);
  });

  it('on-demand budget: after a refresh at the provider, a rejected current version is rate_limited until the cooldown (30 s) is over', async () => {
    store();
    expect((await get({ rejectedVersion: 1 })).token.version).toBe(2);
    clock.advance(10_000);
    await expect(service.get({ ...key, rejectedVersion: 2 })).rejects.toMatchObject({
      code: 'rate_limited',
      retryAfterSeconds: 20,
    });
    clock.advance(19_500);
    await expect(service.get({ ...key, rejectedVersion: 2 })).rejects.toMatchObject({
      code: 'rate_limited',
      retryAfterSeconds: 1,
    });
    expect(coordinator.calls).toHaveLength(1);
    clock.advance(500);
    expect((await get({ rejectedVersion: 2 })).token.version).toBe(3);
    expect(coordinator.calls).toHaveLength(2);
  });

  it('on-demand budget: an unmet minTtl within the cooldown gets the current token while valid, never an expired one', async () => {
    // Refreshed at the provider 5 s ago (cooldown until T0 + 25 s); 20 s of its 3600 s left: not enough for minTtl 60.
    store({
      lastRefreshedAt: new Date(T0 - 5_000),
      issuedAt: new Date(T0 - 3_580_000),
      expiresAt: new Date(T0 + 20_000),
    });
    expect((await get({ minTtlSeconds: 60 })).token.version).toBe(1);
    clock.advance(18_999);
    expect((await get({ minTtlSeconds: 60 })).token.version).toBe(1);
    // Inside the delivery margin: it would arrive all but expired.
    clock.advance(2);
    await expect(service.get({ ...key, minTtlSeconds: 60 })).rejects.toMatchObject({
      code: 'rate_limited',
      retryAfterSeconds: 6,
    });
    clock.advance(2_000);
    await expect(service.get({ ...key, minTtlSeconds: 0 })).rejects.toMatchObject({
      code: 'rate_limited',
      retryAfterSeconds: 4,
    });
    expect(coordinator.calls).toHaveLength(0);
  });

  it('on-demand budget: a credential whose scheduled refresh is due is refreshed within the cooldown (no extra call, and no expired token)', async () => {
    // A 2 s token refreshed 1.5 s ago, due 0.5 s ago: the scheduler is late, the caller is not turned away.
    store({
      lastRefreshedAt: new Date(T0 - 1_500),
      issuedAt: new Date(T0 - 1_500),
      expiresAt: new Date(T0 + 500),
      nextRefreshAt: new Date(T0 - 500),
    });
    expect((await get()).token.version).toBe(2);
    expect(coordinator.calls).toHaveLength(1);
    // Not due yet: turned away until then, not for the whole cooldown.
    store({
      version: 3,
      lastRefreshedAt: new Date(T0),
      issuedAt: new Date(T0),
      expiresAt: new Date(T0 + 2_000),
      nextRefreshAt: new Date(T0 + 1_000),
    });
    await expect(service.get({ ...key, rejectedVersion: 3 })).rejects.toMatchObject({
      code: 'rate_limited',
      retryAfterSeconds: 1,
    });
  });

  it('on-demand budget: registration does not start a cooldown', async () => {
    await service.register({
      ...key,
      provider: 'sandbox',
      accessToken: 'at_reg',
      refreshToken: 'rt_reg',
      expiresIn: 3600,
    });
    expect((await get({ rejectedVersion: 1 })).token.version).toBe(2);
    expect(coordinator.calls).toHaveLength(1);
  });

  it('a failed refresh still serves a valid token; an expired one becomes refresh_failed', async () => {
    coordinator.fail = true;
    store({ expiresAt: new Date(T0 + 20_000) });
    expect((await get()).token.version).toBe(1);
    clock.advance(21_000);
    await expect(service.get(key)).rejects.toMatchObject({ code: 'refresh_failed' });
  });

  it('register: schedules from the clock, caches and announces with the audit record id', async () => {
    const view = await service.register({
      ...key,
      provider: 'sandbox',
      accessToken: 'at_r',
      refreshToken: 'rt_r',
      expiresIn: 1000,
    });
    expect(view).toMatchObject({
      version: 1,
      expiresAt: new Date(T0 + 1_000_000).toISOString(),
      nextRefreshAt: new Date(T0 + 800_000).toISOString(),
    });
    const [audit] = repository.audit;
    expect(audit).toMatchObject({ type: 'registered', subject: 'audit.token.registered.acme.github' });
    expect(parts.publisher.events).toEqual([
      expect.objectContaining({ kind: 'registered', eventId: audit.event_id, accessToken: 'at_r' }),
    ]);
    // Answered from memory, synchronously: the reply the commit cached.
    expect(service.get(key)).toBe(parts.cache.get(credentialId(key))!.reply);
  });

  it('register without an access token: due now, nothing announced, the old grant evicted', async () => {
    store();
    await get();
    const view = await service.register({ ...key, provider: 'sandbox', refreshToken: 'rt_only' });
    expect(view).toMatchObject({
      version: 2,
      hasAccessToken: false,
      expiresAt: null,
      nextRefreshAt: new Date(T0).toISOString(),
    });
    expect(parts.cache.get(credentialId(key))).toBeUndefined();
    expect(parts.publisher.events).toEqual([]);
  });

  it('revoke: evicted, announced, then both tokens revoked at the provider', async () => {
    store();
    await get();
    expect(await service.revoke(key)).toEqual({ providerRevoked: true });
    expect(parts.cache.get(credentialId(key))).toBeUndefined();
    expect(parts.publisher.events).toEqual([expect.objectContaining({ kind: 'revoked' })]);
    expect(endpoint.revoked.map((r) => [r.token, r.hint])).toEqual([
      ['rt_v1', 'refresh_token'],
      ['at_v1', 'access_token'],
    ]);
    await expect(service.get(key)).rejects.toMatchObject({ code: 'revoked' });
  });
});
