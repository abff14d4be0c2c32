import type { Credential } from '../domain/credential.js';
import { auditRecord, type PendingAuditRecord } from '../persistence/audit-record.js';
import type { TokenWrite } from '../persistence/credential.repository.js';
import type { IssuedToken, ProviderConfig } from '../providers/provider.types.js';
import type { LeaseKeeper } from './lease-keeper.js';
import {
  DEFAULT_EXPIRY_WARNING_DAYS,
  DEFAULT_KEEP_ALIVE_SECONDS,
  earlier,
  expiryWarningAt,
  scheduleRefresh,
} from './refresh-policy.js';
import type { RefreshDeps, RefreshOutcome, RotatedCommitResult } from './refresh.types.js';
import type { RotatedCommitRetrier } from './rotated-commit.retrier.js';

/** The refresh token's end after this refresh, and the `expiring` warning that joins the commit, if due. */
interface GrantLife {
  refreshTokenExpiresAt?: Date | null;
  warnAt: Date | null;
  warning?: { expiresAt: Date; eventId: string };
}

interface Recovery {
  failedSince: Date;
  attempts: number;
  eventId: string;
}

/**
 * The commit step of a successful refresh: the new schedule, the audit records that join
 * the write (refreshed, recovered, expiring), the write itself (through the retrier, which
 * never drops a rotated refresh token), then what the committed change announces.
 */
export class IssuedTokenCommitter {
  constructor(
    private readonly deps: RefreshDeps,
    private readonly commits: RotatedCommitRetrier,
  ) {}

  async commit(
    credential: Credential,
    provider: ProviderConfig,
    keeper: LeaseKeeper,
    token: IssuedToken,
  ): Promise<RefreshOutcome> {
    this.warnIfNotRotated(provider, token);
    const schedule = this.scheduleOf(provider, token);
    const rotated = token.refreshToken !== undefined && !token.refreshToken.equals(credential.refreshToken);
    const audit = [
      auditRecord('refreshed', credential, this.deps.config.replicaId, { outcome: rotated ? 'rotated' : 'refreshed' }),
    ];
    const recovery = credential.status === 'failing' ? this.recoveryOf(credential, audit) : undefined;
    const lifeOfGrant = this.grantExpiry(credential, provider, token, audit);
    const write = tokenWrite(credential, provider, token, schedule, lifeOfGrant);
    const result = await this.commits.commitRotated(credential, keeper, write, audit);
    return this.announce(credential, provider, result, recovery, lifeOfGrant);
  }

  private warnIfNotRotated(provider: ProviderConfig, token: IssuedToken): void {
    if (
      provider.grant === 'refresh_token' &&
      !token.refreshToken &&
      provider.rotation !== undefined &&
      provider.rotation !== 'none'
    ) {
      this.deps.logger.warn({
        msg: 'a rotating provider answered without a new refresh token; the old one is kept',
        provider: provider.id,
      });
    }
  }

  private scheduleOf(provider: ProviderConfig, token: IssuedToken): ReturnType<typeof scheduleRefresh> {
    const { config, clock } = this.deps;
    return scheduleRefresh({
      issuedAt: token.requestedAt,
      lifetimeSeconds: token.expiresInSeconds ?? provider.defaultTtlSeconds,
      refreshInSeconds: token.refreshInSeconds,
      threshold: provider.threshold,
      minMarginSeconds: config.refresh.minMarginSeconds,
      random: clock.random(),
      keepAliveSeconds: provider.keepAliveSeconds ?? DEFAULT_KEEP_ALIVE_SECONDS,
    });
  }

  /** What the commit ended with: counted, and announced when we have the committed change. */
  private async announce(
    credential: Credential,
    provider: ProviderConfig,
    result: RotatedCommitResult,
    recovery: Recovery | undefined,
    lifeOfGrant: GrantLife,
  ): Promise<RefreshOutcome> {
    const { metrics, repository, logger, notifier, clock } = this.deps;
    if (result.kind === 'landed') {
      // Our write landed but its answer was lost (the connection died): the row holds it.
      metrics.countRefresh(provider.id, 'success');
      const stored = await repository.find(credential);
      return stored ? { kind: 'refreshed', credential: stored } : { kind: 'superseded' };
    }
    if (result.kind === 'discarded') {
      metrics.countRefresh(provider.id, 'superseded');
      logger.warn({
        msg: 'refresh result discarded: lease lost or version moved',
        tenant: credential.tenant,
        connection: credential.connection,
      });
      return { kind: 'superseded' };
    }
    const { change } = result;
    metrics.countRefresh(provider.id, 'success');
    const dueAt = credential.nextRefreshAt;
    if (dueAt) metrics.observeLateness((clock.now() - dueAt.getTime()) / 1000);
    notifier.committed(change);
    if (recovery) notifier.recovered(change.credential, recovery.failedSince, recovery.attempts, recovery.eventId);
    if (lifeOfGrant.warning) {
      notifier.expiring(change.credential, lifeOfGrant.warning.expiresAt, lifeOfGrant.warning.eventId);
    }
    return { kind: 'refreshed', credential: change.credential };
  }

  /**
   * The first success after a run of failures: its `recovered` record joins the refresh's
   * commit, so exactly the commit that ends the run (fenced on the version read while
   * `failing`) announces it. Rows that began failing before `failing_since` was kept fall
   * back to their last change.
   */
  private recoveryOf(credential: Credential, audit: PendingAuditRecord[]): Recovery {
    const attempts = credential.failures;
    const record = auditRecord('recovered', credential, this.deps.config.replicaId, {
      outcome: 'recovered',
      message: `refreshed again after ${attempts} failed attempts`,
    });
    audit.push(record);
    return { failedSince: credential.failingSince ?? credential.updatedAt, attempts, eventId: record.event_id };
  }

  /**
   * The refresh token's absolute expiry after this refresh: a new one from the response, else
   * as stored. When its
   * warning time has come and it was not warned of yet, the `expiring` record joins the
   * commit; when it is still ahead, the next refresh is brought forward to it, so the
   * scheduler needs no second timer (one extra refresh per grant, at most).
   */
  private grantExpiry(
    credential: Credential,
    provider: ProviderConfig,
    token: IssuedToken,
    audit: PendingAuditRecord[],
  ): GrantLife {
    // A rotated refresh token without an expiry of its own belongs to the same grant, whose end stays.
    const fromResponse =
      token.refreshTokenExpiresInSeconds !== undefined
        ? new Date(token.requestedAt.getTime() + token.refreshTokenExpiresInSeconds * 1000)
        : undefined;
    const expiresAt = fromResponse === undefined ? (credential.refreshTokenExpiresAt ?? null) : fromResponse;
    const warnAt = expiryWarningAt(
      expiresAt,
      credential.expiryWarnedFor,
      provider.expiryWarningDays ?? DEFAULT_EXPIRY_WARNING_DAYS,
    );
    if (expiresAt === null || warnAt === null || warnAt.getTime() > this.deps.clock.now()) {
      return { refreshTokenExpiresAt: fromResponse, warnAt };
    }
    const record = auditRecord('expiring', credential, this.deps.config.replicaId, {
      outcome: 'expiring',
      message: `refresh token expires at ${expiresAt.toISOString()}`,
    });
    audit.push(record);
    return { refreshTokenExpiresAt: fromResponse, warnAt: null, warning: { expiresAt, eventId: record.event_id } };
  }
}

/** The row as this refresh leaves it. */
function tokenWrite(
  credential: Credential,
  provider: ProviderConfig,
  token: IssuedToken,
  schedule: ReturnType<typeof scheduleRefresh>,
  lifeOfGrant: GrantLife,
): TokenWrite {
  // No new refresh token (or an empty one) means: keep the old one.
  const refreshToken = token.refreshToken ?? credential.refreshToken;
  return {
    accessToken: token.accessToken,
    refreshToken,
    tokenType: token.tokenType,
    scope: token.scope,
    extras: token.extras,
    issuedAt: token.requestedAt,
    expiresAt: schedule.expiresAt,
    nextRefreshAt:
      provider.grant === 'refresh_token' && !refreshToken ? null : earlier(schedule.nextRefreshAt, lifeOfGrant.warnAt),
    refreshTokenExpiresAt: lifeOfGrant.refreshTokenExpiresAt,
    expiryWarnedFor: lifeOfGrant.warning?.expiresAt,
  };
}
