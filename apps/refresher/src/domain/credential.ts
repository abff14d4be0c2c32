import type { Secret } from '@tokenkeeper/common';
import type { CredentialKey, CredentialStatus, ErrorBody } from '@tokenkeeper/contracts';

/** A credential as the refresher's logic sees it: plain data, secrets wrapped. */
export interface Credential extends CredentialKey {
  provider: string;
  status: CredentialStatus;
  version: number;
  tokenType: string;
  scope?: string;
  accessToken?: Secret;
  refreshToken?: Secret;
  issuedAt: Date | null;
  expiresAt: Date | null;
  nextRefreshAt: Date | null;
  lastRefreshedAt: Date | null;
  failures: number;
  lastError: ErrorBody | null;
  /** When the current run of failures began; null unless `failing`. */
  failingSince?: Date | null;
  /** The refresh token's absolute expiry, when known. */
  refreshTokenExpiresAt?: Date | null;
  /** The refresh-token expiry `token.expiring` was already published for. */
  expiryWarnedFor?: Date | null;
  createdAt: Date;
  updatedAt: Date;
  /** The caller's own labels (register, connect). */
  metadata?: Record<string, string>;
  /** Fills the provider's URL placeholders for this credential. */
  connectionConfig?: Record<string, string>;
  /** Fields kept from token responses by the provider's `tokenFields`, served with the token. */
  extras?: Record<string, string>;
}

/** Proof that this replica may refresh a credential: writes land only while it holds. */
export interface Lease {
  leaseId: string;
  /** The version read when the lease was taken; the write is fenced on it too. */
  version: number;
}

export interface LeasedCredential {
  credential: Credential;
  lease: Lease;
}
