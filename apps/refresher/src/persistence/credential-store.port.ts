import type { CredentialKey } from '@tokenkeeper/contracts';
import type { CommittedChange } from '../domain/committed-change.js';
import type { Credential, Lease } from '../domain/credential.js';
import type { PendingAuditRecord } from './audit-record.js';
import type { FailureWrite, Registration, TimedLease, TokenWrite } from './credential.repository.js';

/**
 * What the core services (refresh, lease keeping, on-demand refresh, the token API) need of
 * the credentials table: lookups, the lease and every fenced write. CredentialRepository
 * implements it over PostgreSQL and the unit tests' FakeRepository in memory, so a change
 * of signature on either side is a compiler error, not a fake quietly drifting away from
 * the class it stands for. Listing, claiming due rows, stats and the re-encryption sweep
 * stay on the repository alone: only e2e tests on PostgreSQL exercise them.
 */
export interface CredentialStore {
  find(key: CredentialKey): Promise<Credential | null>;
  register(registration: Registration, audit: PendingAuditRecord[]): Promise<CommittedChange>;
  tryLease(
    key: CredentialKey,
    owner: string,
    leaseSeconds: number,
    expectedVersion?: number,
  ): Promise<TimedLease | null>;
  /** The new lease deadline by the local clock, or null when the lease is no longer ours. */
  extendLease(key: CredentialKey, lease: Lease, leaseSeconds: number): Promise<number | null>;
  commitRefresh(
    key: CredentialKey,
    lease: Lease,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null>;
  commitFailure(
    key: CredentialKey,
    lease: Lease,
    write: FailureWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null>;
  releaseLease(key: CredentialKey, lease: Lease): Promise<void>;
  revoke(
    key: CredentialKey,
    audit: PendingAuditRecord,
  ): Promise<{ before: Credential; change: CommittedChange } | null>;
}
