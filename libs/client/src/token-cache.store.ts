import type { TokenView, ValidatedToken } from '@tokenkeeper/contracts';
import { LRUCache } from 'lru-cache';
import type { TokenClientStats } from './token-client.options.js';

/** Served from memory while valid and trusted. */
export const FRESH = 0;
/** The refresher said the grant is dead: every use asks `token.get`, the only authority. */
export const REAUTH = 1;
/** Tombstone: the token is dropped, only its version is remembered so nothing older comes back. */
export const REVOKED = 2;
export type EntryState = typeof FRESH | typeof REAUTH | typeof REVOKED;

/**
 * One credential. Every field is written in the constructor, in one order, so all
 * entries share one hidden class and the hot path's property loads stay monomorphic.
 */
export class CacheEntry {
  /** Kept beside `view` so the hot path does one load less; '' when not FRESH. */
  accessToken: string;
  view: TokenView | null;
  /** Epoch ms; `Infinity` when the provider gave no lifetime. */
  expiresAtMs: number;
  version: number;
  state: EntryState;
  /** Connection epoch under which this entry was last known current (see TokenClient). */
  epoch: number;
  /** Position in LRU order; only maintained when the cache is bounded. */
  seq: number;
  /** TokenCache.changes when this entry last changed: tells an answer whether an event moved it since the request left. */
  changedAt: number;
  /**
   * Settled promises of this token, made on first hit and reused by every later one,
   * so that a hit allocates nothing even though the API returns promises.
   */
  tokenPromise: Promise<string> | null;
  viewPromise: Promise<TokenView> | null;

  constructor(token: ValidatedToken | null, version: number, state: EntryState, epoch: number, seq: number) {
    this.accessToken = token === null ? '' : token.view.accessToken;
    this.view = token === null ? null : token.view;
    this.expiresAtMs = token === null ? 0 : token.expiresAtMs;
    this.version = version;
    this.state = state;
    this.epoch = epoch;
    this.seq = seq;
    this.changedAt = 0;
    this.tokenPromise = null;
    this.viewPromise = null;
  }

  setToken(token: ValidatedToken, epoch: number): void {
    this.accessToken = token.view.accessToken;
    this.view = token.view;
    this.expiresAtMs = token.expiresAtMs;
    this.version = token.view.version;
    this.state = FRESH;
    this.epoch = epoch;
    this.tokenPromise = null;
    this.viewPromise = null;
  }

  /** Drops the secret as well as the flag: a token that must not be served should not linger in memory. */
  setDead(state: typeof REAUTH | typeof REVOKED, version: number): void {
    this.accessToken = '';
    this.view = null;
    this.expiresAtMs = 0;
    this.version = version;
    this.state = state;
    this.tokenPromise = null;
    this.viewPromise = null;
  }
}

/**
 * What the cache still knows of a credential it does not hold (never held, or evicted):
 * `revoked`: a verified revoke at `version`, nothing at or below it is taken; `seen`: the
 * version an evicted entry had, nothing pushed at or below it is taken; `ask`: token.get
 * answered `revoked` or `not_found` (unsigned error replies, so no version to trust):
 * no pushed token is taken until a verified token.get answer is.
 */
export interface Mark {
  version: number;
  kind: 'revoked' | 'seen' | 'ask';
}

/** Default bound of the marks kept for credentials the cache does not hold. */
export const DEFAULT_MAX_TOMBSTONES = 10_000;

/** What `applyAnswer` tells the caller of `token.get` to do with the refresher's answer. */
export type AnswerOutcome = TokenView | 'revoked';

/**
 * The version rules of the wire contract in one place, free of I/O so they can be read and
 * tested alone. Events may come twice or out of order; the cache keeps the highest
 * version, and a tombstone or a reauth mark is only lifted by a strictly newer token.
 *
 * A `token.get` answer is the refresher's word on the state when the request was sent,
 * so it replaces the entry even at a lower version (a database restored from a backup
 * rolls versions back: without this, a client would keep its higher-version token for
 * good and ignore every event up to that version), unless the entry changed after the
 * request left: then the change is newer than what the answer knows, and the highest
 * version wins as for events. `changes` counts every change; an entry keeps the count of
 * its last one (`changedAt`), the request the count at send time.
 *
 * LRU without paying for it on every hit: a Map iterates in insertion order, so
 * "move to the back" is delete + set. That is only done when an entry has drifted
 * into the older half of the order (by `seq`); an entry in the newer half cannot be
 * next to go, so touching it would buy nothing. Unbounded caches skip all of it.
 *
 * Credentials it does not hold leave marks (an LRU bounded by `maxTombstones`, default
 * 10,000; lru-cache): a verified revoke of a credential never used here, the version of an
 * entry the `maxEntries` bound dropped, and a `revoked`/`not_found` answer. So a replayed
 * older event (a `token.registered` of a token revoked before this client started, say)
 * does not plant a token, however the credential left or never entered the cache. A mark
 * pushed out of the bound costs what it did before marks existed: the replay is still
 * refused once its signature is older than the max age.
 */
export class TokenCache {
  readonly map = new Map<string, CacheEntry>();
  /**
   * The same entries by tenant, then connection: what the hot path looks up, because
   * the caller's key strings are reused and hash once, while the `tenant/connection`
   * id would be a new string to build and hash on every call (measured: 3× slower).
   */
  readonly byTenant = new Map<string, Map<string, CacheEntry>>();
  readonly bounded: boolean;
  private readonly touchDistance: number;
  private seq = 0;
  /** Bumped on every change of any entry (never on a hit): the "last changed at" clock. */
  changes = 0;
  private readonly marks: LRUCache<string, Mark>;

  constructor(
    private readonly maxEntries: number,
    private readonly stats: TokenClientStats,
    maxTombstones = DEFAULT_MAX_TOMBSTONES,
  ) {
    this.bounded = Number.isFinite(maxEntries);
    this.touchDistance = this.bounded ? Math.max(1, Math.floor(maxEntries / 2)) : Infinity;
    this.marks = new LRUCache({ max: maxTombstones });
  }

  get size(): number {
    return this.map.size;
  }

  /** Marks held for credentials not in the cache (bounded by maxTombstones). */
  get tombstones(): number {
    return this.marks.size;
  }

  mark(id: string): Mark | undefined {
    return this.marks.peek(id);
  }

  /**
   * token.get answered `revoked` or `not_found` for a credential the cache does not hold:
   * no pushed token for it is taken until a verified answer is. A revoke already marked
   * says more (it has a version) and stays.
   */
  askFirst(id: string): void {
    if (this.map.has(id) || this.marks.peek(id)?.kind === 'revoked') return;
    this.marks.set(id, { version: Number.MAX_SAFE_INTEGER, kind: 'ask' });
  }

  /** Hot path companion: called on a hit of a bounded cache only. */
  touch(id: string, entry: CacheEntry): void {
    if (this.seq - entry.seq < this.touchDistance) return;
    this.map.delete(id);
    entry.seq = ++this.seq;
    this.map.set(id, entry);
  }

  /** `touch` for a hit found by key: the id is only built when the entry must move. */
  touchKey(tenant: string, connection: string, entry: CacheEntry): void {
    if (this.seq - entry.seq < this.touchDistance) return;
    this.touch(`${tenant}/${connection}`, entry);
  }

  /** refreshed / registered: applied only when strictly newer, so duplicates are stale too. */
  applyPushedToken(id: string, token: ValidatedToken, epoch: number): boolean {
    const entry = this.map.get(id);
    if (entry === undefined) {
      const mark = this.marks.peek(id);
      if (mark !== undefined && token.view.version <= mark.version) return false;
      this.marks.delete(id);
      this.insert(id, new CacheEntry(token, token.view.version, FRESH, epoch, 0));
      return true;
    }
    if (token.view.version <= entry.version) return false;
    entry.setToken(token, epoch);
    entry.changedAt = ++this.changes;
    return true;
  }

  /**
   * A failure concerns the version current when it happened, so it applies at an
   * equal version too; an older one was overtaken by a newer token. Returns null
   * when the event says nothing the cache acts on (a retryable failure: the
   * refresher keeps serving the still-valid token, and so does the cache). `forbidden`
   * (the provider was withdrawn from the tenant) is treated as reauth_required: the
   * refresher no longer serves the token, so the cache stops too and each use asks again.
   */
  applyFailed(id: string, version: number, status: string, rememberUnknown: boolean, code?: string): boolean | null {
    if (status === 'revoked') return this.applyRevoked(id, version, rememberUnknown);
    if (status !== 'reauth_required' && code !== 'forbidden') return null;
    return this.markDead(id, REAUTH, version, rememberUnknown);
  }

  /**
   * Revocation applies at an equal version (it revokes the current token). For a
   * credential the cache does not hold, a tombstone is kept only when `rememberUnknown`
   * (the client has a token.get for it in flight, whose answer may be the revoked
   * token); otherwise it returns null and nothing is stored, so events about
   * credentials this client never used cannot fill its memory.
   */
  applyRevoked(id: string, version: number, rememberUnknown: boolean): boolean | null {
    return this.markDead(id, REVOKED, version, rememberUnknown);
  }

  /**
   * A `token.get` answer to a request sent when `changes` was `sentAt`. An equal version
   * confirms the entry under the current epoch. An older one replaces the entry if nothing
   * changed it since the request left (the refresher's state went back: a restore);
   * otherwise a newer token was pushed while the request was in flight, and it wins.
   * Tombstones stay: a revoked token is not served on a lower version's word (fail closed),
   * also when the tombstone is a mark of a credential the cache does not hold.
   */
  applyAnswer(id: string, token: ValidatedToken, epoch: number, sentAt: number): AnswerOutcome {
    const entry = this.map.get(id);
    const version = token.view.version;
    if (entry === undefined) {
      const mark = this.marks.peek(id);
      if (mark !== undefined && mark.kind === 'revoked' && version <= mark.version) return 'revoked';
      this.marks.delete(id);
      this.insert(id, new CacheEntry(token, version, FRESH, epoch, 0));
      return token.view;
    }
    if (version > entry.version) {
      entry.setToken(token, epoch);
      entry.changedAt = ++this.changes;
      return token.view;
    }
    if (entry.state === REVOKED) return 'revoked';
    // Marked reauth_required: serve this one answer, keep the mark so the next use asks again.
    if (entry.state === REAUTH || entry.view === null) return token.view;
    if (version < entry.version && entry.changedAt <= sentAt) {
      entry.setToken(token, epoch);
      entry.changedAt = ++this.changes;
      return token.view;
    }
    if (version === entry.version) {
      entry.epoch = epoch;
      entry.expiresAtMs = token.expiresAtMs;
    }
    return entry.view;
  }

  clear(): void {
    this.map.clear();
    this.byTenant.clear();
    this.marks.clear();
  }

  private markDead(
    id: string,
    state: typeof REAUTH | typeof REVOKED,
    version: number,
    rememberUnknown: boolean,
  ): boolean | null {
    const entry = this.map.get(id);
    if (entry === undefined) {
      if (!rememberUnknown) return state === REVOKED ? this.markRevoked(id, version) : null;
      // Remembered though nothing was cached yet, so the answer in flight cannot bring it back;
      // a later revoke already marked is not forgotten on the way.
      const known = this.marks.peek(id);
      const revokedLater = known !== undefined && known.kind === 'revoked' && known.version >= version;
      this.marks.delete(id);
      this.insert(
        id,
        new CacheEntry(null, revokedLater ? known.version : version, revokedLater ? REVOKED : state, 0, 0),
      );
      return true;
    }
    if (version < entry.version) return false;
    // The same verdict twice is a duplicate; REVOKED after REAUTH at one version is news.
    if (version === entry.version && (entry.state === state || entry.state === REVOKED)) return false;
    entry.setDead(state, version);
    entry.changedAt = ++this.changes;
    return true;
  }

  /** A revoke of a credential not held: a mark, not an entry, so such events cannot fill the cache. */
  private markRevoked(id: string, version: number): boolean {
    const mark = this.marks.peek(id);
    // Older than what is known is stale; the same revoke twice is a duplicate. An `ask` mark has no real version.
    if (
      mark !== undefined &&
      mark.kind !== 'ask' &&
      (mark.version > version || (mark.kind === 'revoked' && mark.version === version))
    )
      return false;
    this.marks.set(id, { version, kind: 'revoked' });
    return true;
  }

  private insert(id: string, entry: CacheEntry): void {
    entry.seq = ++this.seq;
    entry.changedAt = ++this.changes;
    this.map.set(id, entry);
    // Ids are `tenant/connection` and neither name can contain '/'.
    const slash = id.indexOf('/');
    const tenant = id.slice(0, slash);
    let byConnection = this.byTenant.get(tenant);
    if (byConnection === undefined) this.byTenant.set(tenant, (byConnection = new Map<string, CacheEntry>()));
    byConnection.set(id.slice(slash + 1), entry);
    if (this.map.size <= this.maxEntries) return;
    // The oldest in Map order is the least recently used, give or take the half-order slack above.
    const oldest = this.map.keys().next().value as string;
    const dropped = this.map.get(oldest) as CacheEntry;
    this.map.delete(oldest);
    // Its version stays known, so a replay of something older cannot bring it back.
    this.marks.set(oldest, { version: dropped.version, kind: dropped.state === REVOKED ? 'revoked' : 'seen' });
    const oldestSlash = oldest.indexOf('/');
    const oldestTenant = oldest.slice(0, oldestSlash);
    const siblings = this.byTenant.get(oldestTenant);
    if (siblings !== undefined) {
      siblings.delete(oldest.slice(oldestSlash + 1));
      if (siblings.size === 0) this.byTenant.delete(oldestTenant);
    }
    this.stats.evictions++;
  }
}
