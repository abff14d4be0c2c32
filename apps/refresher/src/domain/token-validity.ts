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

/**
 * The least validity `token.get` asks of a token before it is handed out while a refresh
 * could still replace it, whatever minTtlSeconds says (0 included). A token with a few
 * milliseconds left is expired by the time the reply has crossed the bus and the caller
 * has used it (golang.org/x/oauth2 keeps 10 s for the same reason); the half-lifetime cap
 * still applies, so a very short-lived token is not refreshed on every request. Only when
 * no refresh can happen (it failed, or backs off) is a token served down to its last
 * millisecond, because then it beats an error.
 */
export const DELIVERY_MARGIN_MS = 1_000;

/** minTtl as `token.get` applies it: at least DELIVERY_MARGIN_MS (before the cap, which validFor applies). */
export function wantedValidityMs(minTtlSeconds: number): number {
  return Math.max(minTtlSeconds * 1000, DELIVERY_MARGIN_MS);
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
