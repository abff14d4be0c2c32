import { randomBytes } from 'node:crypto';

interface Family {
  readonly subject: string;
  readonly scope?: string;
  /** Revoking a family is one flag: every token checks its family, so nothing has to be enumerated. */
  revoked: boolean;
}

interface RefreshRecord {
  readonly family: Family;
  /** When a rotation replaced this token; presenting it later is reuse (unless within the grace). */
  retiredAt?: number;
  presentations: number;
}

interface AccessRecord {
  readonly subject: string;
  readonly family?: Family;
  readonly scope?: string;
  readonly expiresAt: number;
  revoked: boolean;
}

export interface RefreshPolicy {
  rotate: boolean;
  graceMs: number;
  ttlSeconds: number;
  scope?: string;
}

export type RefreshOutcome =
  | { ok: true; accessToken: string; refreshToken?: string; scope?: string }
  | { ok: false; reason: 'unknown' | 'family_revoked' | 'reuse'; familyRevokedNow: boolean };

export type AccessCheck =
  { ok: true; subject: string; scope?: string } | { ok: false; reason: 'unknown' | 'expired' | 'revoked' };

function randomToken(prefix: 'at_' | 'rt_'): string {
  return prefix + randomBytes(24).toString('base64url');
}

/**
 * Token families with Auth0/Okta rotation semantics, kept apart from HTTP so the
 * rules can be read in one place. Everything is synchronous: Node runs one
 * request handler at a time, so two concurrent presentations of one refresh
 * token are always ordered and the second one is seen as reuse.
 */
export class SandboxTokenStore {
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, AccessRecord>();
  private readonly reused = new Set<string>();
  private subjects = 0;

  constructor(private readonly now: () => number = Date.now) {}

  startFamily(scope?: string): string {
    const family: Family = {
      subject: `user-${++this.subjects}`,
      scope,
      revoked: false,
    };
    return this.addRefreshToken(family);
  }

  /** The access token of a family, as if issued together with `refreshToken`. */
  issueAccessFor(refreshToken: string, ttlSeconds: number): string {
    const record = this.refreshTokens.get(refreshToken);
    if (!record) throw new Error('unknown refresh token');
    return this.addAccessToken(record.family.subject, ttlSeconds, record.family.scope, record.family);
  }

  clientCredentials(subject: string, ttlSeconds: number, scope?: string): string {
    return this.addAccessToken(subject, ttlSeconds, scope);
  }

  refresh(token: string, policy: RefreshPolicy): RefreshOutcome {
    const record = this.refreshTokens.get(token);
    if (!record) return { ok: false, reason: 'unknown', familyRevokedNow: false };
    record.presentations++;
    const { family } = record;
    const now = this.now();

    if (record.retiredAt !== undefined) {
      // A grace of 0 must mean "none": two requests handled within one millisecond are still reuse.
      const withinGrace = policy.graceMs > 0 && now - record.retiredAt <= policy.graceMs;
      if (!withinGrace) {
        this.reused.add(token);
        const familyRevokedNow = !family.revoked;
        family.revoked = true;
        return { ok: false, reason: 'reuse', familyRevokedNow };
      }
    }
    if (family.revoked) return { ok: false, reason: 'family_revoked', familyRevokedNow: false };

    const scope = policy.scope ?? family.scope;
    const accessToken = this.addAccessToken(family.subject, policy.ttlSeconds, scope, family);
    if (!policy.rotate) return { ok: true, accessToken, scope };
    // Within the grace the old token keeps its first retirement time, so the grace cannot be stretched by retrying.
    record.retiredAt ??= now;
    return { ok: true, accessToken, refreshToken: this.addRefreshToken(family), scope };
  }

  checkAccess(token: string): AccessCheck {
    const record = this.accessTokens.get(token);
    if (!record) return { ok: false, reason: 'unknown' };
    if (record.revoked || record.family?.revoked) return { ok: false, reason: 'revoked' };
    if (record.expiresAt <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, subject: record.subject, scope: record.scope };
  }

  revokeAccessToken(token: string): boolean {
    const record = this.accessTokens.get(token);
    if (record) record.revoked = true;
    return record !== undefined;
  }

  /** RFC 7009: a refresh token takes its whole grant (family) with it. */
  revoke(token: string): { familyRevokedNow: boolean } {
    if (this.revokeAccessToken(token)) return { familyRevokedNow: false };
    const record = this.refreshTokens.get(token);
    if (!record || record.family.revoked) return { familyRevokedNow: false };
    record.family.revoked = true;
    return { familyRevokedNow: true };
  }

  presentations(refreshToken: string): number {
    return this.refreshTokens.get(refreshToken)?.presentations ?? 0;
  }

  everPresentedTwice(): string[] {
    return [...this.reused];
  }

  /** Part of resetting stats: a benchmark's warm-up should not count against the measured run. */
  resetPresentations(): void {
    this.reused.clear();
    for (const record of this.refreshTokens.values()) record.presentations = 0;
  }

  /** Forgets expired access tokens so long benchmarks do not grow memory without bound. */
  sweepExpired(): void {
    const now = this.now();
    for (const [token, record] of this.accessTokens) {
      if (record.expiresAt > now) continue;
      this.accessTokens.delete(token);
    }
  }

  private addRefreshToken(family: Family): string {
    const token = randomToken('rt_');
    this.refreshTokens.set(token, { family, presentations: 0 });
    return token;
  }

  private addAccessToken(subject: string, ttlSeconds: number, scope?: string, family?: Family): string {
    const token = randomToken('at_');
    this.accessTokens.set(token, { subject, family, scope, expiresAt: this.now() + ttlSeconds * 1000, revoked: false });
    return token;
  }
}
