import { randomUUID } from 'node:crypto';
import { Secret } from '@tokenkeeper/common';
import { credentialId, type CredentialKey, EventSigner, generateSigningSeed } from '@tokenkeeper/contracts';
import type { RpcReply } from '@tokenkeeper/nats';
import type { AppConfig } from '../../src/config/app-config.js';
import { Clock } from '../../src/domain/clock.js';
import type { CommittedChange } from '../../src/domain/committed-change.js';
import type { Credential, Lease, LeasedCredential } from '../../src/domain/credential.js';
import { ReplyCache } from '../../src/events/reply-cache.js';
import { TokenChangeNotifier } from '../../src/events/token-change.notifier.js';
import type { FailureNotice, TokenEventPublisher } from '../../src/events/token-event.publisher.js';
import type { TokenNotices } from '../../src/events/token-notices.port.js';
import type { PendingAuditRecord } from '../../src/persistence/audit-record.js';
import type { CredentialStore } from '../../src/persistence/credential-store.port.js';
import type {
  CredentialRepository,
  FailureWrite,
  Registration,
  TokenWrite,
} from '../../src/persistence/credential.repository.js';
import type {
  CodeExchangeRequest,
  ProviderConfig,
  TokenEndpoint,
  TokenRequest,
  TokenResult,
} from '../../src/providers/provider.types.js';

/**
 * In-memory adapters for unit tests of the core services: no PostgreSQL, no NATS, no HTTP.
 * They keep the contracts the real adapters keep (fenced writes, versions), nothing more.
 */

export const T0 = Date.parse('2030-01-01T00:00:00.000Z');

/**
 * Hands a fake to a service whose constructor names the adapter class (Nest injects by
 * class). The fake `implements` the port that the class implements too, so both are
 * checked against it by the compiler; the class is assignable to its port, which is what
 * makes this narrowing legal without going through `unknown`. A service that starts to use
 * a method outside the port still compiles; add the method to the port (and the fake).
 */
export function asAdapter<Port, Adapter extends Port>(fake: Port): Adapter {
  return fake as Adapter;
}

/** A clock that only moves when told to. */
export class FakeClock extends Clock {
  constructor(
    public nowMs = T0,
    public randomValue = 0,
  ) {
    super();
  }
  override now(): number {
    return this.nowMs;
  }
  override random(): number {
    return this.randomValue;
  }
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export function testConfig(): AppConfig {
  return {
    replicaId: 'replica-test',
    refresh: {
      leaseSeconds: 30,
      minMarginSeconds: 60,
      requestTimeoutMs: 5_000,
      claimIntervalMs: 1_000,
      claimBatchSize: 10,
      maxInFlight: 10,
      backoffBaseMs: 1_000,
      backoffMaxMs: 60_000,
      misconfiguredRetryMs: 600_000,
    },
  } as AppConfig;
}

export function provider(over: Partial<ProviderConfig> = {}): ProviderConfig {
  return {
    id: 'sandbox',
    preset: 'generic',
    tokenUrl: 'https://provider.test/token',
    clientId: 'client',
    authMethod: 'client_secret_basic',
    grant: 'refresh_token',
    threshold: 0.8,
    maxConcurrency: 4,
    onDemandCooldownSeconds: 30,
    extraParams: {},
    ...over,
  };
}

export function credential(clock: FakeClock, over: Partial<Credential> = {}): Credential {
  const now = new Date(clock.now());
  return {
    tenant: 'acme',
    connection: 'github',
    provider: 'sandbox',
    status: 'active',
    version: 1,
    tokenType: 'Bearer',
    accessToken: new Secret('at_v1'),
    refreshToken: new Secret('rt_v1'),
    issuedAt: now,
    expiresAt: new Date(clock.now() + 3_600_000),
    nextRefreshAt: new Date(clock.now() + 2_880_000),
    lastRefreshedAt: null,
    failures: 0,
    lastError: null,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

type Row = Credential & { leaseId: string | null; leaseUntilMs: number };

/**
 * The credentials table in a Map, with the repository's fences (lease id and version). As in
 * PostgreSQL, a lease that runs out stays named in its row: it can be claimed again
 * (lease_until < now) but it still fences writes until someone does.
 */
export class FakeRepository implements CredentialStore {
  readonly rows = new Map<string, Row>();
  readonly audit: PendingAuditRecord[] = [];
  finds = 0;
  /** Leases tryLease handed out. */
  leasesTaken = 0;
  /** Set to make tryLease find the row leased by another replica. */
  leasedElsewhere = false;

  constructor(private readonly clock: FakeClock) {}

  get asRepository(): CredentialRepository {
    return asAdapter<CredentialStore, CredentialRepository>(this);
  }

  put(credential: Credential): void {
    this.rows.set(credentialId(credential), { ...credential, leaseId: null, leaseUntilMs: 0 });
  }

  async find(key: CredentialKey): Promise<Credential | null> {
    this.finds++;
    const row = this.rows.get(credentialId(key));
    return row ? strip(row) : null;
  }

  async register(reg: Registration, audit: PendingAuditRecord[]): Promise<CommittedChange> {
    const before = this.rows.get(credentialId(reg));
    const now = new Date(this.clock.now());
    const row = {
      ...reg,
      status: 'active' as const,
      version: (before?.version ?? 0) + 1,
      lastRefreshedAt: null,
      failures: 0,
      lastError: null,
      createdAt: before?.createdAt ?? now,
      updatedAt: now,
      leaseId: null,
      leaseUntilMs: 0,
    };
    this.rows.set(credentialId(reg), row);
    return this.change('registered', row, audit);
  }

  async tryLease(
    key: CredentialKey,
    _owner: string,
    _leaseSeconds: number,
    expectedVersion?: number,
  ): Promise<(LeasedCredential & { leaseUntilMs: number }) | null> {
    const row = this.rows.get(credentialId(key));
    if (!row || this.leasedElsewhere || (row.leaseId !== null && row.leaseUntilMs >= this.clock.now())) return null;
    if (row.status !== 'active' && row.status !== 'failing') return null;
    if (expectedVersion !== undefined && row.version !== expectedVersion) return null;
    row.leaseId = randomUUID();
    row.leaseUntilMs = this.clock.now() + _leaseSeconds * 1000;
    this.leasesTaken++;
    return {
      credential: strip(row),
      lease: { leaseId: row.leaseId, version: row.version },
      leaseUntilMs: row.leaseUntilMs,
    };
  }

  /** The next this-many commits of a refresh fail as a dropped connection would. */
  commitErrors = 0;
  /** The next this-many commits of a refresh never answer. */
  commitHangs = 0;
  /** The next this-many commits of a refresh land, but their answer is lost (the connection died after COMMIT). */
  commitAnswersLost = 0;
  extensions = 0;

  async extendLease(key: CredentialKey, lease: Lease, leaseSeconds: number): Promise<number | null> {
    this.extensions++;
    const row = this.fenced(key, lease);
    if (!row) return null;
    row.leaseUntilMs = this.clock.now() + leaseSeconds * 1000;
    return row.leaseUntilMs;
  }

  /** Our lease ran out and nobody took it: still named in the row, but claimable. */
  lapseLease(key: CredentialKey): void {
    this.rows.get(credentialId(key))!.leaseUntilMs = this.clock.now() - 1;
  }

  /** Another replica claimed the lapsed lease and gave it back without a write. */
  takenAndReleasedElsewhere(key: CredentialKey): void {
    Object.assign(this.rows.get(credentialId(key))!, { leaseId: null, leaseUntilMs: 0 });
  }

  async commitRefresh(
    key: CredentialKey,
    lease: Lease,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null> {
    if (this.commitHangs > 0) {
      this.commitHangs--;
      return new Promise(() => undefined); // packets silently dropped: no answer, ever
    }
    if (this.commitErrors > 0) {
      this.commitErrors--;
      throw new Error('Connection terminated unexpectedly');
    }
    const row = this.fenced(key, lease);
    if (!row) return null;
    Object.assign(row, {
      accessToken: write.accessToken,
      refreshToken: write.refreshToken ?? row.refreshToken,
      tokenType: write.tokenType,
      scope: write.scope ?? row.scope,
      issuedAt: write.issuedAt,
      expiresAt: write.expiresAt,
      nextRefreshAt: write.nextRefreshAt,
      lastRefreshedAt: new Date(this.clock.now()),
      version: row.version + 1,
      status: 'active',
      failures: 0,
      lastError: null,
      leaseId: null,
      updatedAt: new Date(this.clock.now()),
    });
    const change = this.change('refreshed', row, audit);
    if (this.commitAnswersLost > 0) {
      this.commitAnswersLost--;
      throw new Error('Connection terminated unexpectedly');
    }
    return change;
  }

  async commitFailure(
    key: CredentialKey,
    lease: Lease,
    write: FailureWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null> {
    const row = this.fenced(key, lease);
    if (!row) return null;
    Object.assign(row, { ...write, leaseId: null, updatedAt: new Date(this.clock.now()) });
    return this.change('failed', row, audit);
  }

  async releaseLease(key: CredentialKey, lease: Lease): Promise<void> {
    const row = this.rows.get(credentialId(key));
    if (row?.leaseId === lease.leaseId) row.leaseId = null;
  }

  async revoke(
    key: CredentialKey,
    audit: PendingAuditRecord,
  ): Promise<{ before: Credential; change: CommittedChange } | null> {
    const row = this.rows.get(credentialId(key));
    if (!row) return null;
    const before = strip(row);
    Object.assign(row, {
      status: 'revoked',
      accessToken: undefined,
      refreshToken: undefined,
      nextRefreshAt: null,
      leaseId: null,
    });
    return { before, change: this.change('revoked', row, [audit]) };
  }

  /** Another replica commits a new version (its event may or may not reach us). */
  commitElsewhere(key: CredentialKey, accessToken: string): Credential {
    const row = this.rows.get(credentialId(key))!;
    Object.assign(row, { accessToken: new Secret(accessToken), version: row.version + 1, leaseId: null });
    return strip(row);
  }

  private fenced(key: CredentialKey, lease: Lease) {
    const row = this.rows.get(credentialId(key));
    return row && row.leaseId === lease.leaseId && row.version === lease.version ? row : undefined;
  }

  private change(kind: CommittedChange['kind'], row: Row, audit: PendingAuditRecord[]): CommittedChange {
    this.audit.push(...audit);
    return { kind, credential: strip(row), eventId: audit[0]?.event_id ?? '' };
  }
}

function strip(row: Credential & { leaseId?: string | null; leaseUntilMs?: number }): Credential {
  const { leaseId: _leaseId, leaseUntilMs: _leaseUntilMs, ...credential } = row;
  return { ...credential };
}

/** Token endpoint answering from a script; records what it was asked. */
export class FakeTokenEndpoint implements TokenEndpoint {
  readonly requests: TokenRequest[] = [];
  readonly revoked: { provider: string; token: string; hint: string }[] = [];
  closed = false;
  answer: (request: TokenRequest) => TokenResult | Promise<TokenResult>;

  constructor(private readonly clock: FakeClock) {
    this.answer = () => this.issue('at_new', 'rt_new', 3600);
  }

  issue(accessToken: string, refreshToken: string | undefined, expiresInSeconds: number | undefined): TokenResult {
    return {
      ok: true,
      token: {
        accessToken: new Secret(accessToken),
        refreshToken: refreshToken === undefined ? undefined : new Secret(refreshToken),
        tokenType: 'Bearer',
        expiresInSeconds,
        requestedAt: new Date(this.clock.now()),
      },
    };
  }

  async requestToken(request: TokenRequest): Promise<TokenResult> {
    this.requests.push(request);
    return this.answer(request);
  }

  readonly codeExchanges: CodeExchangeRequest[] = [];

  async exchangeCode(request: CodeExchangeRequest): Promise<TokenResult> {
    this.codeExchanges.push(request);
    return this.issue('at_connected', 'rt_connected', 3600);
  }

  async revoke(p: ProviderConfig, token: Secret, hint: 'access_token' | 'refresh_token'): Promise<void> {
    this.revoked.push({ provider: p.id, token: token.reveal(), hint });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface PublishedEvent {
  kind: 'refreshed' | 'registered' | 'failed' | 'revoked' | 'recovered' | 'expiring';
  tenant: string;
  connection: string;
  version: number;
  eventId: string;
  accessToken?: string;
  notice?: FailureNotice;
}

/** Records the core events instead of publishing them. */
export class RecordingPublisher implements TokenNotices {
  readonly events: PublishedEvent[] = [];

  get asPublisher(): TokenEventPublisher {
    return asAdapter<TokenNotices, TokenEventPublisher>(this);
  }

  issued(
    kind: 'refreshed' | 'registered',
    token: { tenant: string; connection: string; version: number; accessToken: string },
    _at: Date,
    eventId: string,
  ): void {
    this.events.push({
      kind,
      tenant: token.tenant,
      connection: token.connection,
      version: token.version,
      eventId,
      accessToken: token.accessToken,
    });
  }

  failed(c: Credential, notice: FailureNotice, eventId: string): void {
    this.events.push({
      kind: 'failed',
      tenant: c.tenant,
      connection: c.connection,
      version: c.version,
      eventId,
      notice,
    });
  }

  recovered(c: Credential, _since: Date, _attempts: number, eventId: string): void {
    this.events.push({ kind: 'recovered', tenant: c.tenant, connection: c.connection, version: c.version, eventId });
  }

  expiring(c: Credential, _at: Date, eventId: string): void {
    this.events.push({ kind: 'expiring', tenant: c.tenant, connection: c.connection, version: c.version, eventId });
  }

  revoked(c: Credential, eventId: string): void {
    this.events.push({ kind: 'revoked', tenant: c.tenant, connection: c.connection, version: c.version, eventId });
  }
}

/** The real cache and notifier over a recording publisher. */
export function cacheAndNotifier(clock: Clock = new FakeClock()): {
  cache: ReplyCache;
  publisher: RecordingPublisher;
  notifier: TokenChangeNotifier;
} {
  const cache = new ReplyCache(100, testSigner, { clock: () => clock.now() });
  const publisher = new RecordingPublisher();
  return { cache, publisher, notifier: new TokenChangeNotifier(cache, publisher.asPublisher) };
}

/** One signing key for the unit tests (the e2e harness makes its own per file). */
export const testSigner = EventSigner.fromSeed(generateSigningSeed());

export function decodeReply(reply: RpcReply): any {
  const bytes = reply instanceof Uint8Array ? reply : reply.data;
  return JSON.parse(Buffer.from(bytes).toString('utf8'));
}
