import type { LeasedCredential, Credential } from '../domain/credential.js';
import { auditRecord } from '../persistence/audit-record.js';
import type { FailureWrite } from '../persistence/credential.repository.js';
import type { ProviderConfig, TokenFailure } from '../providers/provider.types.js';
import { retryDelayMs } from './refresh-policy.js';
import type { RefreshDeps, RefreshOutcome } from './refresh.types.js';

/**
 * After a request was abandoned (timed out; the provider may have rotated the refresh token
 * without our seeing the answer), the retry comes within this, whatever the attempt count:
 * it must land inside the provider's reuse grace (Okta's default is 30 s, Auth0's reuse
 * interval is set per tenant) to present the old token without revoking the family.
 */
export const ABANDONED_RETRY_MAX_MS = 5_000;

type Where = { tenant: string; connection: string; provider: string };

/**
 * Records a refresh that did not get a token: the failure's status, error and next attempt,
 * written under the lease with its audit record, then announced. Also the refusal of a
 * credential whose provider does not allow its tenant.
 */
export class RefreshFailureRecorder {
  constructor(private readonly deps: RefreshDeps) {}

  async fail(
    credential: Credential,
    lease: LeasedCredential['lease'],
    attempt: number,
    failure: TokenFailure,
    provider?: ProviderConfig,
  ): Promise<RefreshOutcome> {
    const { config, repository, metrics, notifier } = this.deps;
    const write = this.failureWrite(credential, attempt, failure);
    const type = write.status === 'reauth_required' ? 'reauth_required' : 'failed';
    const audit = auditRecord(type, credential, config.replicaId, {
      outcome: failure.kind,
      code: failure.code,
      message: failure.message,
    });
    const committed = await repository.commitFailure(credential, lease, write, [audit]);
    metrics.countRefresh(provider?.id ?? credential.provider, failure.kind);
    if (!committed) return { kind: 'superseded' };
    notifier.committed(committed);
    return {
      kind: 'failed',
      credential: committed.credential,
      code: write.lastError.code,
      message: write.lastError.message,
    };
  }

  /**
   * A credential whose provider no longer allows its tenant (the providers file changed):
   * nothing is requested. It stays `failing` with `forbidden`, and is looked at again after
   * MISCONFIGURED_RETRY_MS, so that it resumes by itself once the file allows it again. The
   * refusal is recorded (audit, `token.failed`) when it starts, not at every look.
   */
  async refuse(credential: Credential, lease: LeasedCredential['lease'], message: string): Promise<RefreshOutcome> {
    const { config, repository, metrics, notifier, clock, logger } = this.deps;
    const first = credential.lastError?.code !== 'forbidden';
    const write: FailureWrite = {
      status: 'failing',
      failures: credential.failures,
      lastError: { code: 'forbidden', message },
      nextRefreshAt: new Date(clock.now() + config.refresh.misconfiguredRetryMs * (0.5 + clock.random() / 2)),
    };
    const audit = first
      ? [auditRecord('failed', credential, config.replicaId, { outcome: 'forbidden', code: 'forbidden', message })]
      : [];
    const committed = await repository.commitFailure(credential, lease, write, audit);
    metrics.countRefresh(credential.provider, 'forbidden');
    if (!committed) return { kind: 'superseded' };
    if (first) {
      logger.warn({
        msg: 'credential not refreshed: its provider does not allow its tenant',
        tenant: credential.tenant,
        connection: credential.connection,
        provider: credential.provider,
      });
      notifier.committed(committed);
    }
    return { kind: 'failed', credential: committed.credential, code: 'forbidden', message };
  }

  /** The row's new status, error and next attempt for this kind of failure (logged here). */
  private failureWrite(credential: Credential, attempt: number, failure: TokenFailure): FailureWrite {
    const now = this.deps.clock.now();
    const where = { tenant: credential.tenant, connection: credential.connection, provider: credential.provider };
    if (failure.kind === 'invalid_grant') return this.reauthWrite(attempt, failure, where);
    if (failure.kind === 'misconfigured') return this.misconfiguredWrite(now, attempt, failure, where);
    return this.retryWrite(now, attempt, failure, where);
  }

  private reauthWrite(attempt: number, failure: TokenFailure, where: Where): FailureWrite {
    this.deps.logger.warn({ msg: 'credential needs re-authorization', ...where, code: failure.code });
    return {
      status: 'reauth_required',
      failures: attempt,
      lastError: {
        code: 'reauth_required',
        message: `the provider refused the refresh token (${failure.code}); re-register the credential`,
      },
      nextRefreshAt: null,
    };
  }

  private misconfiguredWrite(now: number, attempt: number, failure: TokenFailure, where: Where): FailureWrite {
    const { config, clock, logger } = this.deps;
    const delay = config.refresh.misconfiguredRetryMs * (0.5 + clock.random() / 2);
    logger.error({
      msg: 'PROVIDER MISCONFIGURED: token requests are rejected; check the providers file',
      ...where,
      code: failure.code,
      failure: failure.message,
    });
    return {
      status: 'failing',
      failures: attempt,
      lastError: {
        code: failure.code === 'unknown_provider' ? 'unknown_provider' : 'refresh_failed',
        message: `provider configuration rejected: ${failure.message}`,
      },
      nextRefreshAt: new Date(now + delay),
    };
  }

  private retryWrite(now: number, attempt: number, failure: TokenFailure, where: Where): FailureWrite {
    const { config, clock, logger } = this.deps;
    let delay = retryDelayMs({
      attempt,
      baseMs: config.refresh.backoffBaseMs,
      capMs: config.refresh.backoffMaxMs,
      random: clock.random(),
      retryAfterMs: failure.retryAfterMs,
    });
    // An abandoned request may have rotated the refresh token at the provider: retry while
    // its reuse grace lasts. A provider that keeps timing out is still bounded: each try
    // holds one of its maxConcurrency slots for the whole REFRESH_TIMEOUT_MS.
    if (failure.code === 'timeout') delay = Math.min(delay, ABANDONED_RETRY_MAX_MS * (0.5 + clock.random() / 2));
    logger.warn({ msg: 'refresh failed; will retry', ...where, code: failure.code, attempt, retryInMs: delay });
    return {
      status: 'failing',
      failures: attempt,
      lastError: {
        code: failure.code === 'network' || failure.code === 'timeout' ? 'unavailable' : 'refresh_failed',
        message: failure.message,
      },
      nextRefreshAt: new Date(now + delay),
    };
  }
}
