import {
  credentialId,
  DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
  encodeJson,
  type EventSigner,
  tokenGetSubject,
  type TokenView,
} from '@tokenkeeper/contracts';
import type { ReplyWithHeaders } from '@tokenkeeper/nats';
import { LRUCache } from 'lru-cache';
import { minTtlCapMs } from '../domain/token-validity.js';
import { signedPayload, type SignedPayload } from './signed-payload.js';

/**
 * A token ready to be served: the reply is encoded and signed once per version (on its
 * first read), not once per request, and answered as this very object.
 */
export interface CachedToken {
  version: number;
  /** Infinity when the token has no known expiry. */
  expiresAtMs: number;
  /**
   * Half the token's lifetime: a caller's minTtlSeconds is capped at this, or a provider
   * issuing tokens shorter than minTtl would be asked for a new one on every request.
   */
  minTtlCapMs: number;
  /** The encoded `{ok, token}` reply with its signature headers, signed no longer ago than the re-sign age. */
  reply: ReplyWithHeaders;
  /** `reply` on the hot path, which has read the clock already. */
  replyAt(nowMs: number): ReplyWithHeaders;
}

/**
 * A cached token whose reply is encoded once and signed when first read (see
 * ReplyCache.toCached), then again only when its signature has reached the re-sign age:
 * readers refuse a reply signed longer ago than their max age, and a token can stay
 * cached (and fresh) far longer than that. The check is one subtraction and one
 * comparison, so the hot path signs nothing until the signature is due.
 */
class LazyReply implements CachedToken {
  private signed?: SignedPayload;
  /** Set once the reply was read: this credential is asked for here, later versions are signed eagerly. */
  asked = false;

  constructor(
    readonly version: number,
    readonly expiresAtMs: number,
    readonly minTtlCapMs: number,
    private readonly cache: ReplyCache,
    private readonly token: TokenView,
  ) {}

  get reply(): ReplyWithHeaders {
    return this.replyAt(this.cache.now());
  }

  replyAt(nowMs: number): ReplyWithHeaders {
    const signed = this.signed;
    if (signed !== undefined && nowMs - signed.signedAtMs < this.cache.resignAfterMs) return signed;
    this.asked = true;
    return (this.signed = this.cache.sign(this.token, signed?.data, nowMs));
  }
}

export interface ReplyCacheOptions {
  /** Epoch ms; default Date.now. */
  clock?: () => number;
  /** SIGNATURE_MAX_AGE_SECONDS: a cached reply is re-signed once its signature is a third of this old. */
  maxAgeSeconds?: number;
}

/** Resolved with the new version, or -1 when the refresh being waited for failed. */
type VersionWaiter = { above: number; resolve: (version: number) => void };

/**
 * The refresher's memory of `token.get` replies (not the client library's TokenCache: this
 * one holds pre-encoded replies), for the tokens that `token.get` asked for, so that a fresh token is
 * answered without a database round trip. It is bounded (LRU) because a replica may own
 * millions of credentials but only serves a working set, and it is kept coherent across
 * replicas by versions: every replica applies every `token.*` event, and an entry is
 * only ever replaced by a strictly newer version.
 *
 * An eviction (revoke, or a grant without a token) leaves a mark: the highest version known
 * dead for that credential. Nothing at or below it is cached afterwards, or a `token.get`
 * that read v5 just before a revoke (v6) would re-cache v5 after it and serve it until it
 * expires, forever for a token without expiry. The marks are bounded
 * like the entries; a forgotten mark costs nothing worse than today's database read,
 * since the slow path reads the row, and a revoked row is never served.
 */
export class ReplyCache {
  private readonly entries: LRUCache<string, CachedToken>;
  /** id → the highest version evicted: kept after the entry is gone, and across clear(). */
  private readonly deadUpTo: LRUCache<string, number>;
  private readonly waiters = new Map<string, VersionWaiter[]>();
  /** Epoch ms, the same clock the hot path reads. */
  readonly now: () => number;
  /**
   * A third of the max age: a reply signed this long ago is signed again before it is
   * answered, so that what a reader receives is always well inside the window it accepts
   * (the rest is for clock skew, a slow bus and a reader with a shorter max age).
   */
  readonly resignAfterMs: number;

  constructor(
    maxEntries: number,
    private readonly signer: EventSigner,
    options: ReplyCacheOptions = {},
  ) {
    this.entries = new LRUCache({ max: maxEntries });
    this.deadUpTo = new LRUCache({ max: maxEntries });
    this.now = options.clock ?? Date.now;
    this.resignAfterMs = Math.floor(((options.maxAgeSeconds ?? DEFAULT_SIGNATURE_MAX_AGE_SECONDS) * 1000) / 3);
  }

  /**
   * The signed reply for a token that is not (or cannot be) cached: a slow path that found
   * a newer version cached already, or a credential no longer refreshed. One signature each.
   */
  replyFor(token: TokenView): ReplyWithHeaders {
    return this.sign(token, undefined, this.now());
  }

  /**
   * Signs a token reply over the request's subject (`token.get.<tenant>.<connection>`): the
   * reply is only valid as the answer for that credential. `data`: the bytes of an earlier
   * signing of the same token, re-used so that re-signing encodes nothing.
   */
  sign(token: TokenView, data: Uint8Array | undefined, nowMs: number): SignedPayload {
    return signedPayload(
      this.signer,
      tokenGetSubject(token.tenant, token.connection),
      data ?? encodeJson({ ok: true, token }),
      nowMs,
    );
  }

  get(id: string): CachedToken | undefined {
    return this.entries.get(id);
  }

  /**
   * Stores a token that was just read or written by this replica and returns its entry, or
   * undefined when a newer version is already cached or this one was evicted (the caller
   * then encodes its own reply).
   */
  put(token: TokenView, issuedAtMs: number): CachedToken | undefined {
    const id = credentialId(token);
    const current = this.entries.peek(id);
    let stored: CachedToken | undefined;
    if ((!current || current.version <= token.version) && !this.isDead(id, token.version)) {
      stored = this.toCached(token, issuedAtMs, parseExpiry(token), current);
      this.entries.set(id, stored);
    }
    this.notify(id, token.version);
    return stored;
  }

  /**
   * Applies a token announced by any replica, under `id`: the credential its event's subject
   * names (the event was dropped before this if its body names another, or if its signature
   * is not trusted). Only entries already cached are replaced; the reply is this replica's
   * own encoding of the token, signed with its own key.
   */
  observe(id: string, token: TokenView, issuedAtMs: number, expiresAtMs: number): void {
    const current = this.entries.peek(id);
    if (current && current.version < token.version && !this.isDead(id, token.version))
      this.entries.set(id, this.toCached(token, issuedAtMs, expiresAtMs, current));
    this.notify(id, token.version);
  }

  /** A version that must not be served any more (revoked, or its refresh token is dead). */
  evict(id: string, version: number): void {
    const current = this.entries.peek(id);
    if (current && current.version <= version) this.entries.delete(id);
    if (!this.isDead(id, version)) this.deadUpTo.set(id, version);
    this.notify(id, version);
  }

  /**
   * Resolves with the first version above `above` that this replica learns of (from its
   * own commit or another replica's event), or null after `timeoutMs`.
   */
  waitForVersionAbove(id: string, above: number, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      const waiter: VersionWaiter = {
        above,
        resolve: (version) => {
          clearTimeout(timer);
          resolve(version);
        },
      };
      const timer = setTimeout(() => {
        this.removeWaiter(id, waiter);
        resolve(null);
      }, timeoutMs);
      const list = this.waiters.get(id);
      if (list) list.push(waiter);
      else this.waiters.set(id, [waiter]);
    });
  }

  /** Wakes everyone waiting on `id` without a new version (its refresh failed). */
  interrupt(id: string): void {
    const list = this.waiters.get(id);
    if (!list) return;
    this.waiters.delete(id);
    for (const w of list) w.resolve(-1);
  }

  clear(): void {
    this.entries.clear();
  }

  private isDead(id: string, version: number): boolean {
    const dead = this.deadUpTo.peek(id);
    return dead !== undefined && version <= dead;
  }

  private notify(id: string, version: number): void {
    const list = this.waiters.get(id);
    if (!list) return;
    const remaining = list.filter((w) => {
      if (version <= w.above) return true;
      w.resolve(version);
      return false;
    });
    if (remaining.length) this.waiters.set(id, remaining);
    else this.waiters.delete(id);
  }

  /**
   * A version of a token `token.get` has asked for here (its entry's reply was read, now or
   * for an earlier version) is signed at once, ready for the next request. Any other is
   * signed on first read: most versions a replica refreshes are never asked for before
   * the next one replaces them (a signature per refresh for nobody). Either way a
   * version is signed once, never per request.
   */
  private toCached(
    token: TokenView,
    issuedAtMs: number,
    expiresAtMs: number,
    previous: CachedToken | undefined,
  ): CachedToken {
    const entry = new LazyReply(token.version, expiresAtMs, minTtlCapMs(expiresAtMs, issuedAtMs), this, token);
    if (previous instanceof LazyReply && previous.asked) void entry.reply;
    return entry;
  }

  private removeWaiter(id: string, waiter: VersionWaiter): void {
    const list = this.waiters.get(id);
    if (!list) return;
    const remaining = list.filter((w) => w !== waiter);
    if (remaining.length) this.waiters.set(id, remaining);
    else this.waiters.delete(id);
  }
}

function parseExpiry(token: TokenView): number {
  return token.expiresAt === null ? Number.POSITIVE_INFINITY : Date.parse(token.expiresAt);
}
