import type { Credential } from './credential.js';

/**
 * The one "valid for minTtl" rule, shared by the token.get hot path (cached replies) and
 * the slow path (stored credentials): a token serves a caller if it stays valid for the
 * caller's minTtl, capped at half the token's lifetime, or a provider issuing tokens shorter
 * than minTtl would be asked for a new one on every request.
 */
export function validFor(expiresAtMs: number, minTtlCapMs: number, minTtlMs: number, nowMs: number): boolean {
  return expiresAtMs - nowMs >= Math.min(minTtlMs, minTtlCapMs);
}

/** Half the token's lifetime; Infinity for a token with no known expiry. */
export function minTtlCapMs(expiresAtMs: number, issuedAtMs: number): number {
  return Number.isFinite(expiresAtMs) ? Math.max(0, (expiresAtMs - issuedAtMs) / 2) : Number.POSITIVE_INFINITY;
}

/** When the stored token was issued; rows written before issued_at existed count from their last update. */
export function issuedAtMs(credential: Credential): number {
  return (credential.issuedAt ?? credential.updatedAt).getTime();
}

/** Credentials the refresher still works on (and whose tokens may be cached). */
export function isLive(credential: Pick<Credential, 'status'>): boolean {
  return credential.status === 'active' || credential.status === 'failing';
}
