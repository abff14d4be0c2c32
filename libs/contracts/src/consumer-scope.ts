import { type CredentialKey, credentialId, isValidName, NAME_RULE } from './names.js';

/**
 * The reach of a consumer of many tenants: entries `<tenant>.<connection>` where each side
 * is a name or `*` (`*.twitter`: every tenant's twitter; `acme.*`: all of acme; `*.*`:
 * everything). The same text is its NATS permission (`token.get.<entry>`) and its
 * subscriptions, so what the server allows and what the client serves cannot drift apart.
 */

/** One parsed entry; `*` stands for any name on that side. */
export interface ScopeEntry {
  tenant: string;
  connection: string;
}

export const SCOPE_WILDCARD = '*';

/** The entry rule as people read it, for usage and option errors. */
export const SCOPE_ENTRY_RULE = `<tenant>.<connection>, each a name of ${NAME_RULE} or *`;

const side = (value: string) => value === SCOPE_WILDCARD || isValidName(value);

/** Parses `tenant.connection`; null when it is not one (a single dot, each side a name or `*`). */
export function parseScopeEntry(value: unknown): ScopeEntry | null {
  if (typeof value !== 'string') return null;
  const parts = value.split('.');
  if (parts.length !== 2 || !side(parts[0]) || !side(parts[1])) return null;
  return { tenant: parts[0], connection: parts[1] };
}

/** `tenant.connection` as written in permissions and subscriptions. */
export function scopeEntryText(entry: ScopeEntry): string {
  return `${entry.tenant}.${entry.connection}`;
}

/**
 * A scope precomputed for O(1) membership: one flag and three sets, so a check is at most
 * four hash lookups whatever the number of entries (no pattern matched per call).
 */
export class ConsumerScope {
  readonly entries: readonly ScopeEntry[];
  private readonly everything: boolean;
  /** `acme.*` entries. */
  private readonly wholeTenants = new Set<string>();
  /** `*.twitter` entries. */
  private readonly anyTenantConnections = new Set<string>();
  /** `acme.twitter` entries, by credential id. */
  private readonly single = new Set<string>();

  constructor(entries: Iterable<ScopeEntry>) {
    const kept = new Map<string, ScopeEntry>();
    for (const e of entries) kept.set(scopeEntryText(e), { tenant: e.tenant, connection: e.connection });
    let everything = false;
    for (const e of kept.values()) {
      if (e.tenant === SCOPE_WILDCARD && e.connection === SCOPE_WILDCARD) everything = true;
      else if (e.connection === SCOPE_WILDCARD) this.wholeTenants.add(e.tenant);
      else if (e.tenant === SCOPE_WILDCARD) this.anyTenantConnections.add(e.connection);
      else this.single.add(credentialId(e));
    }
    this.everything = everything;
    // Entries another entry already covers would only double the subscriptions (each event delivered twice).
    this.entries = [...kept.values()].filter((e) => !this.coveredByOther(e));
  }

  /** Parses every entry, or throws a RangeError naming the first bad one. */
  static parse(texts: Iterable<unknown>): ConsumerScope {
    const entries: ScopeEntry[] = [];
    for (const text of texts) {
      const entry = parseScopeEntry(text);
      if (entry === null) throw new RangeError(`scope entry ${JSON.stringify(text)}: give ${SCOPE_ENTRY_RULE}`);
      entries.push(entry);
    }
    return new ConsumerScope(entries);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Whether the credential lies inside the scope. */
  covers(key: CredentialKey): boolean {
    return (
      this.everything ||
      this.wholeTenants.has(key.tenant) ||
      this.anyTenantConnections.has(key.connection) ||
      (this.single.size > 0 && this.single.has(credentialId(key)))
    );
  }

  /** Whether every credential of the tenant lies inside the scope. */
  coversTenant(tenant: string): boolean {
    return this.everything || this.wholeTenants.has(tenant);
  }

  /** Whether every credential an entry names (`*` on either side included) lies inside the scope. */
  coversEntry(e: ScopeEntry): boolean {
    if (this.everything) return true;
    if (e.tenant === SCOPE_WILDCARD)
      return e.connection !== SCOPE_WILDCARD && this.anyTenantConnections.has(e.connection);
    if (e.connection === SCOPE_WILDCARD) return this.wholeTenants.has(e.tenant);
    return this.covers(e);
  }

  private coveredByOther(e: ScopeEntry): boolean {
    if (e.tenant === SCOPE_WILDCARD && e.connection === SCOPE_WILDCARD) return false;
    if (this.everything) return true;
    if (e.connection === SCOPE_WILDCARD) return false;
    if (e.tenant === SCOPE_WILDCARD) return false;
    return this.wholeTenants.has(e.tenant) || this.anyTenantConnections.has(e.connection);
  }
}
