import type { CredentialKey } from '@tokenkeeper/contracts';
import type { LeasedCredential } from '../domain/credential.js';
import type { OnDemandResult } from './refresh-coordinator.service.js';
import type { RefreshOutcome } from './refresh.service.js';

/**
 * What the on-demand coordinator needs of RefreshService: one refresh under a lease it
 * took, and whether shutdown began. Implemented by RefreshService and the coordinator's
 * unit-test fake.
 */
export interface LeasedRefresher {
  readonly isDraining: boolean;
  refreshLeased(leased: LeasedCredential & { leaseUntilMs?: number }): Promise<RefreshOutcome>;
}

/** What the token API needs of RefreshCoordinator; implemented by it and the token service's unit-test fake. */
export interface OnDemandRefresher {
  refresh(key: CredentialKey, staleVersion?: number): Promise<OnDemandResult>;
}
