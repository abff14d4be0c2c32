import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  type CredentialKey,
  credentialId,
  isValidName,
  NAME_RULE_MESSAGE,
  type TokenEvent,
  type TokenView,
} from '@tokenkeeper/contracts';
import { type CacheEntry, FRESH, TokenCache } from './token-cache.store.js';
import {
  emptyStats,
  resolveOptions,
  type ResolvedTokenClientOptions,
  type TokenClientOptions,
  type TokenClientStats,
  type TokenRequestOptions,
} from './token-client.options.js';
import {
  type TokenFetchInit,
  type TokenFetchResponse,
  type TokenFetchTarget,
  tokenFetch,
} from './token-fetch.helper.js';
import { TokenClientError } from './token-client.error.js';
import { TokenGetRequester } from './token-get.requester.js';
import { TokenMessageGuard } from './token-message.guard.js';

/** One `token.get` in flight, shared by every caller waiting for the same key. */
interface Flight {
  minTtlMs: number;
  rejectedVersion: number | undefined;
  promise: Promise<TokenView>;
}

/**
 * Access tokens for a consumer service: a local cache fed by the refresher's
 * pushed events, with `token.get` as the fallback. Works with or without NestJS.
 *
 * Trust after a reconnect: while disconnected, events are lost without trace, so
 * every entry remembers the connection epoch under which it was last known
 * current. A reconnect bumps the client's epoch; an entry from an older epoch is
 * confirmed once with `token.get` on its next use. On the hot path that costs one
 * integer comparison, instead of a sweep over the whole cache at reconnect time.
 *
 * Scope: the client subscribes only to the tenants/connections/scopes it is configured
 * for, and refuses (`bad_request`, nothing sent) a credential outside them: it could
 * not hear that credential's revocations, so it could not cache it safely.
 */
export class TokenClient {
  private readonly opts: ResolvedTokenClientOptions;
  private readonly counters: TokenClientStats = emptyStats();
  private readonly cache: TokenCache;
  // Copied out of opts/cache so that the hot path reads fields of `this` only.
  private readonly entries: Map<string, CacheEntry>;
  private readonly byTenant: Map<string, Map<string, CacheEntry>>;
  private readonly clock: () => number;
  private readonly defaultMinTtlMs: number;
  private readonly flights = new Map<string, Flight>();
  private readonly guard: TokenMessageGuard;
  private readonly rejections = new Map<string, Flight>();
  /** Per credential, a rejected version the refresher said `rate_limited` about, until when. */
  private readonly rateLimited = new Map<string, { version: number; untilMs: number; error: TokenClientError }>();
  private nc: NatsConnection | undefined;
  private requester: TokenGetRequester | undefined;
  private ownsConnection = false;
  private subscriptions: Subscription[] = [];
  private statusIterator: { stop?: () => void } | undefined;
  private starting: Promise<void> | undefined;
  private closed = false;
  private epoch = 0;

  constructor(options: TokenClientOptions = {}) {
    this.opts = resolveOptions(options);
    this.cache = new TokenCache(this.opts.maxEntries, this.counters, this.opts.maxTombstones);
    this.entries = this.cache.map;
    this.byTenant = this.cache.byTenant;
    this.clock = this.opts.clock;
    this.defaultMinTtlMs = this.opts.defaultMinTtlMs;
    this.guard = new TokenMessageGuard(this.opts.verifier, this.counters, this.opts.logger, this.opts.clock);
    if (this.opts.nc !== undefined) this.useConnection(this.opts.nc);
  }

  /** Connects if needed, subscribes to pushed events and watches the connection. Idempotent. */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  /** Unsubscribes and forgets every token. Closes the NATS connection only if the client opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subscriptions) sub.unsubscribe();
    this.subscriptions = [];
    this.statusIterator?.stop?.();
    this.cache.clear();
    this.flights.clear();
    this.rejections.clear();
    if (this.ownsConnection && this.nc !== undefined && !this.nc.isClosed()) await this.nc.close();
  }

  /** A snapshot of the counters, for a metrics exporter. */
  get stats(): TokenClientStats {
    return { ...this.counters, rejectedByReason: { ...this.counters.rejectedByReason } };
  }

  /** Bumped on every NATS reconnect; entries cached under an older value are confirmed before use. */
  get connectionEpoch(): number {
    return this.epoch;
  }

  /** Cached credentials, tombstones of revoked ones included. */
  get size(): number {
    return this.cache.size;
  }

  /** Marks kept for credentials not cached (revoked before use, evicted, answered revoked/not_found); bounded by `maxTombstones`. */
  get tombstones(): number {
    return this.cache.tombstones;
  }

  getAccessToken(key: CredentialKey, options?: TokenRequestOptions): Promise<string> {
    const minTtlMs = options?.minTtlSeconds === undefined ? this.defaultMinTtlMs : options.minTtlSeconds * 1000;
    const entry = this.hitKey(key, minTtlMs);
    if (entry !== undefined) return (entry.tokenPromise ??= Promise.resolve(entry.accessToken));
    return this.resolve(key, credentialId(key), minTtlMs).then(accessTokenOf);
  }

  /** Like `getAccessToken`, with the token's metadata and version. The object is frozen and shared. */
  getToken(key: CredentialKey, options?: TokenRequestOptions): Promise<TokenView> {
    const minTtlMs = options?.minTtlSeconds === undefined ? this.defaultMinTtlMs : options.minTtlSeconds * 1000;
    const entry = this.hitKey(key, minTtlMs);
    if (entry !== undefined) return (entry.viewPromise ??= Promise.resolve(entry.view as TokenView));
    return this.resolve(key, credentialId(key), minTtlMs);
  }

  /**
   * Synchronous cache lookup for code that cannot afford a promise per call: the
   * token when `getAccessToken` would answer it from memory, else undefined (then
   * call `getAccessToken`). A hit counts as a hit; a miss is not counted here.
   */
  peekAccessToken(key: CredentialKey, options?: TokenRequestOptions): string | undefined {
    const minTtlMs = options?.minTtlSeconds === undefined ? this.defaultMinTtlMs : options.minTtlSeconds * 1000;
    return this.hitKey(key, minTtlMs)?.accessToken;
  }

  /**
   * Reports that an API rejected `rejectedVersion` (HTTP 401) and returns a
   * replacement. A newer token already cached is returned without asking; else one
   * `token.get` with `rejectedVersion` per key and version, however many callers
   * hit the same 401 at once (the refresher dedupes across clients too).
   */
  async rejectToken(key: CredentialKey, rejectedVersion: number, options?: TokenRequestOptions): Promise<TokenView> {
    const minTtlMs = options?.minTtlSeconds === undefined ? this.defaultMinTtlMs : options.minTtlSeconds * 1000;
    const id = credentialId(key);
    const cached = this.entries.get(id);
    if (cached !== undefined && cached.version > rejectedVersion && this.hit(id, minTtlMs) !== undefined) {
      return cached.view as TokenView;
    }
    this.checkUsable(key);
    // Over the credential's refresh budget: the refresher's answer holds until its retryAfterSeconds.
    const limited = this.rateLimited.get(id);
    if (limited !== undefined && limited.version === rejectedVersion && this.clock() < limited.untilMs)
      throw limited.error;
    this.counters.misses++;
    const flight = this.rejections.get(id);
    if (flight !== undefined && flight.rejectedVersion === rejectedVersion) return flight.promise;
    const launched = this.launch(this.rejections, key, id, minTtlMs, rejectedVersion).promise;
    launched.then(
      () => this.rateLimited.delete(id),
      (error: unknown) => {
        if (
          error instanceof TokenClientError &&
          error.code === 'rate_limited' &&
          error.retryAfterSeconds !== undefined
        ) {
          this.rateLimited.set(id, {
            version: rejectedVersion,
            untilMs: this.clock() + error.retryAfterSeconds * 1000,
            error,
          });
        }
      },
    );
    return launched;
  }

  /**
   * undici-based fetch with `Authorization: <tokenType> <accessToken>` and one
   * retry after a 401 (see token-fetch.helper.ts for the exact rules).
   */
  fetch(url: string | URL, init: TokenFetchInit | undefined, target: TokenFetchTarget): Promise<TokenFetchResponse> {
    return tokenFetch(this, url, init ?? {}, target, this.opts.dispatcher);
  }

  /**
   * The hot path: two Map lookups with the caller's own strings (their hashes are
   * cached in them, where a `tenant/connection` id would be built and hashed anew on
   * every call), three comparisons and a counter. Small enough for V8 to inline into
   * each caller; nothing here may allocate or do I/O.
   */
  private hitKey(key: CredentialKey, minTtlMs: number): CacheEntry | undefined {
    const byConnection = this.byTenant.get(key.tenant);
    const entry = byConnection === undefined ? undefined : byConnection.get(key.connection);
    if (!this.servable(entry, minTtlMs)) return undefined;
    this.counters.hits++;
    if (this.cache.bounded) this.cache.touchKey(key.tenant, key.connection, entry);
    return entry;
  }

  /** `hitKey` by id, for the paths that have built the id anyway. */
  private hit(id: string, minTtlMs: number): CacheEntry | undefined {
    const entry = this.entries.get(id);
    if (!this.servable(entry, minTtlMs)) return undefined;
    this.counters.hits++;
    if (this.cache.bounded) this.cache.touch(id, entry);
    return entry;
  }

  /** Fresh, trusted since the last reconnect, and valid for `minTtlMs` more. */
  private servable(entry: CacheEntry | undefined, minTtlMs: number): entry is CacheEntry {
    return (
      entry !== undefined &&
      entry.state === FRESH &&
      entry.epoch === this.epoch &&
      entry.expiresAtMs - this.clock() >= minTtlMs
    );
  }

  private async resolve(key: CredentialKey, id: string, minTtlMs: number): Promise<TokenView> {
    this.checkUsable(key);
    if (!Number.isFinite(minTtlMs) || minTtlMs < 0) {
      throw new TokenClientError('bad_request', 'minTtlSeconds must be a number >= 0', key);
    }
    this.counters.misses++;
    const flight = this.flights.get(id);
    if (flight === undefined) return this.launch(this.flights, key, id, minTtlMs, undefined).promise;
    if (flight.minTtlMs >= minTtlMs) return flight.promise;
    // The flight in the air asks for less validity than this caller needs: its answer is
    // often good enough anyway (the refresher rarely hands out a token about to expire).
    const view = await flight.promise.catch(() => null);
    if (view !== null && view.expiresAt === null) return view;
    if (view !== null && Date.parse(view.expiresAt as string) - this.clock() >= minTtlMs) return view;
    return (this.flights.get(id) ?? this.launch(this.flights, key, id, minTtlMs, undefined)).promise;
  }

  private launch(
    flights: Map<string, Flight>,
    key: CredentialKey,
    id: string,
    minTtlMs: number,
    rejectedVersion: number | undefined,
  ): Flight {
    const entry = this.cache.map.get(id);
    if (entry !== undefined && entry.state === FRESH && entry.epoch !== this.epoch && rejectedVersion === undefined) {
      this.counters.confirmationsAfterReconnect++;
    }
    // The epoch at send time, not at answer time: if the connection drops while the
    // request is out, the answer is stamped old and gets confirmed once more.
    const epoch = this.epoch;
    // Likewise the change count: an event applied after this moment is newer than the answer.
    const sentAt = this.cache.changes;
    const requester = this.requester as TokenGetRequester;
    const promise = requester.get(key, minTtlMs, rejectedVersion).then(
      (token) => {
        if (this.closed) throw new TokenClientError('unavailable', 'TokenClient is closed', key);
        const outcome = this.cache.applyAnswer(id, token, epoch, sentAt);
        if (outcome === 'revoked') {
          throw new TokenClientError('revoked', `token for ${id} was revoked while it was being fetched`, key);
        }
        return outcome;
      },
      (err: unknown) => {
        // Unsigned, so it carries no version to trust: it only stops pushed tokens for a
        // credential this client does not hold until a verified answer comes (TokenCache.askFirst).
        if (err instanceof TokenClientError && (err.code === 'revoked' || err.code === 'not_found'))
          this.cache.askFirst(id);
        throw err;
      },
    );
    const flight: Flight = { minTtlMs, rejectedVersion, promise };
    flights.set(id, flight);
    // then(done, done) rather than finally(): finally() would re-reject into a promise nobody awaits.
    const done = () => {
      if (flights.get(id) === flight) flights.delete(id);
    };
    promise.then(done, done);
    return flight;
  }

  /** Miss path only: a served key is the only kind the cache can hold, so hits need no check. */
  private checkUsable(key: CredentialKey): void {
    if (this.closed) throw new TokenClientError('unavailable', 'TokenClient is closed', key);
    if (this.requester === undefined) throw new TokenClientError('unavailable', 'TokenClient is not started', key);
    if (!isValidName(key.tenant) || !isValidName(key.connection)) {
      throw new TokenClientError('bad_request', NAME_RULE_MESSAGE);
    }
    if (!this.serves(key)) {
      throw new TokenClientError(
        'bad_request',
        `${key.tenant}/${key.connection} is not served by this client: add it to \`tenants\`, \`connections\` or \`scopes\``,
        key,
      );
    }
  }

  /** Whether this client subscribes to the credential's events. A few hash lookups, no pattern matching. */
  serves(key: CredentialKey): boolean {
    return (
      this.opts.tenants.has(key.tenant) ||
      this.opts.connectionIds.has(credentialId(key)) ||
      (this.opts.scope !== null && this.opts.scope.covers(key))
    );
  }

  private async doStart(): Promise<void> {
    if (this.closed) throw new TokenClientError('unavailable', 'TokenClient is closed');
    if (this.nc === undefined) {
      try {
        const nc = await connect({ ...this.opts.connectOptions, servers: this.opts.servers });
        this.ownsConnection = true;
        this.useConnection(nc);
      } catch (err) {
        this.starting = undefined;
        const reason = err instanceof Error ? err.message : 'unknown error';
        throw new TokenClientError('unavailable', `cannot connect to NATS: ${reason}`, undefined, { cause: err });
      }
    }
    const nc = this.nc as NatsConnection;
    if (!this.guard.verifies) {
      this.opts.logger.warn(
        'TokenClient: no trustedSigners configured: token.get replies and pushed events are NOT verified (only subject/payload agreement is checked)',
      );
    }
    if (this.closed) {
      // close() ran while connecting; it could not close what did not exist yet.
      if (this.ownsConnection) await nc.close();
      throw new TokenClientError('unavailable', 'TokenClient is closed');
    }
    for (const subject of this.opts.subjects) {
      this.subscriptions.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err === null) this.onEvent(msg);
          },
        }),
      );
    }
    void this.watchStatus(nc);
    // Once the server has the subscriptions, an event published after start() cannot be missed.
    await nc.flush();
  }

  private useConnection(nc: NatsConnection): void {
    this.nc = nc;
    this.requester = new TokenGetRequester(nc, this.opts.requestTimeoutMs, this.counters, this.guard);
  }

  private onEvent(msg: Msg): void {
    const event = this.guard.acceptEvent(msg);
    if (event === null) return;
    let applied: boolean | null;
    if (event.kind === 'recovered' || event.kind === 'expiring') {
      this.notify(event);
      return;
    }
    if (event.kind === 'failed') {
      const id = credentialId(event);
      applied = this.cache.applyFailed(id, event.version, event.status, this.inFlight(id), event.code);
    } else if (event.kind === 'revoked') {
      const id = credentialId(event);
      applied = this.cache.applyRevoked(id, event.version, this.inFlight(id));
    } else {
      applied = this.cache.applyPushedToken(credentialId(event.token.view), event.token, this.epoch);
    }
    if (applied === true) this.counters.pushedUpdates++;
    else if (applied === false) this.counters.staleEventsIgnored++;
  }

  /**
   * Hands a notice to the caller's callback. They change no cached token (the version they
   * carry is the current one, already held); a throwing callback must not break the cache.
   */
  private notify(event: Extract<TokenEvent, { kind: 'recovered' | 'expiring' }>): void {
    try {
      if (event.kind === 'recovered') {
        const { tenant, connection, version, failedSince, attempts } = event;
        this.opts.onRecovered?.({ tenant, connection, version, failedSince, attempts });
      } else {
        const { tenant, connection, version, refreshTokenExpiresAt } = event;
        this.opts.onExpiring?.({ tenant, connection, version, refreshTokenExpiresAt });
      }
    } catch (error) {
      this.opts.logger.warn(`TokenClient: an ${event.kind} callback threw: ${(error as Error).message}`);
    }
  }

  /** A token.get is out for this credential: its answer may predate a revocation arriving now. */
  private inFlight(id: string): boolean {
    return this.flights.has(id) || this.rejections.has(id);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    const iterator = nc.status();
    this.statusIterator = iterator as { stop?: () => void };
    try {
      for await (const status of iterator) {
        // Only a reconnect makes entries suspect: while disconnected, token.get cannot be
        // reached either, and a still-valid cached token is the best answer there is.
        if (status.type === 'reconnect') this.epoch++;
      }
    } catch {
      // The iterator ends with the connection; nothing is left to watch.
    }
  }
}

function accessTokenOf(view: TokenView): string {
  return view.accessToken;
}
