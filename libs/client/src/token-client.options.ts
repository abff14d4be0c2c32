import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import {
  ConsumerScope,
  type CredentialKey,
  credentialId,
  DEFAULT_MIN_TTL_SECONDS,
  DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
  isValidName,
  NAME_RULE,
  SignatureVerifier,
  SigningKeyError,
  TOKEN_EVENT_KINDS,
  tokenEventFilter,
} from '@tokenkeeper/contracts';
import type { Dispatcher } from 'undici';
import { DEFAULT_MAX_TOMBSTONES } from './token-cache.store.js';
import { TokenClientError } from './token-client.error.js';

/**
 * Deprecated shape of the old `subscribe` option, kept so existing callers compile:
 * wildcards are no longer accepted (a client subscribes to named tenants only).
 * `{tenant}` means `tenants: [tenant]`, `{tenant, connection}` means `connections: [{…}]`.
 */
export interface TokenEventSubscription {
  tenant?: string;
  connection?: string;
}

/** Where the client says what an operator should know (once, never per call). */
export interface TokenClientLogger {
  warn(message: string): void;
}

/** Default bound of the cache (credentials, tombstones included). */
export const DEFAULT_MAX_ENTRIES = 10_000;

export interface TokenClientOptions {
  /** A connection the application owns. The client never closes it; its own inbox prefix applies. */
  nc?: NatsConnection;
  /**
   * Used only when `nc` is not given: the client then connects (nats.js defaults to
   * 127.0.0.1:4222, the project's local default) and closes what it opened.
   */
  servers?: string | string[];
  /** Extra nats.js options (auth, TLS, name, reconnect policy) for a connection the client opens. */
  connectOptions?: Omit<NodeConnectionOptions, 'servers'>;
  /**
   * Inbox prefix of a connection the client opens (`_INBOX_<name>`, so the
   * consumer needs no `_INBOX.>` permission). Default: nats.js's `_INBOX`. Refused
   * together with `nc`: set it on that connection instead.
   */
  inboxPrefix?: string;
  /**
   * Tenants whose credentials this client serves: it subscribes to
   * `token.<type>.<tenant>.>` for each event type. At least one of
   * `tenants` / `connections` / `scopes` is required.
   */
  tenants?: string[];
  /** Single credentials served (subscriptions `token.<kind>.<tenant>.<connection>`), beside `tenants`. */
  connections?: CredentialKey[];
  /**
   * A scope of many tenants, as `tokenctl authz --consumer-scope` grants it: entries
   * `<tenant>.<connection>`, each side a name or `*` (`*.twitter`: every tenant's twitter;
   * `acme.*`; `*.*`: everything). Subscribes `token.<kind>.<entry>` per event type. Beside
   * or instead of `tenants` / `connections`.
   */
  scopes?: string[];
  /** @deprecated use `tenants` / `connections`; wildcards are refused. */
  subscribe?: TokenEventSubscription[];
  /**
   * `U…` public keys (NATS user nkeys) of the refreshers' `EVENT_SIGNING_KEY`. With
   * them, token.get replies and pushed events are verified and dropped unless signed
   * by one of these keys. Without them only subject/payload agreement is checked, and
   * the client warns once at start.
   */
  trustedSigners?: string[];
  /**
   * With `trustedSigners`: a reply or event signed longer ago than this is dropped
   * (`too_old`), like one signed more than 60 s in the future (`too_new`). Default 900, the
   * refresher's SIGNATURE_MAX_AGE_SECONDS default; the refresher re-signs cached replies at
   * a third of its own setting, so keep this at least that large.
   */
  signatureMaxAgeSeconds?: number;
  /**
   * LRU bound on what the client remembers of credentials it does not hold: revokes of
   * credentials it never used, versions of entries `maxEntries` dropped, `revoked` /
   * `not_found` answers. Default 10,000 (a few dozen bytes each).
   */
  maxTombstones?: number;
  /** Timeout of each `token.get` request. Default 5000. */
  requestTimeoutMs?: number;
  /** LRU bound on cached credentials (tombstones included). Default 10,000. `Infinity` lifts it. */
  maxEntries?: number;
  /** A cached token is served only if it stays valid this long. Default 30 (the contract's default). */
  defaultMinTtlSeconds?: number;
  /** Epoch milliseconds. Injected by tests; default `Date.now`. */
  clock?: () => number;
  /** undici dispatcher (Agent, Pool, ProxyAgent) for `client.fetch`. Default: undici's global one. */
  dispatcher?: Dispatcher;
  /** Receives the client's few warnings (unverified mode, first drop per reason). Default `console`. */
  logger?: TokenClientLogger;
  /**
   * Called with each accepted `token.recovered` event (a failing credential refreshes again),
   * after the same checks as every pushed event (signature, subject, version).
   */
  onRecovered?: (event: RecoveredNotice) => void;
  /** Called with each accepted `token.expiring` event: the grant ends soon, a new connect is needed. */
  onExpiring?: (event: ExpiringNotice) => void;
}

/** What `onRecovered` receives. */
export interface RecoveredNotice {
  tenant: string;
  connection: string;
  version: number;
  failedSince: string;
  attempts: number;
}

/** What `onExpiring` receives. */
export interface ExpiringNotice {
  tenant: string;
  connection: string;
  version: number;
  refreshTokenExpiresAt: string;
}

export interface TokenRequestOptions {
  /** The token must stay valid at least this long. Default: the client's `defaultMinTtlSeconds`. */
  minTtlSeconds?: number;
}

/**
 * Why a reply or an event was dropped: a verifier verdict, or the tenant/connection
 * of the payload disagreeing with the event's subject or with what was asked.
 */
export type RejectionReason =
  | 'unsigned'
  | 'untrusted'
  | 'bad_signature'
  | 'unsupported_scheme'
  | 'too_old'
  | 'too_new'
  | 'subject_mismatch'
  | 'request_mismatch';

/** Counters a service can export as metrics. A snapshot: reading it twice gives two objects. */
export interface TokenClientStats {
  /** Answered from the local cache, no I/O. */
  hits: number;
  /** Calls that needed `token.get` (or joined one already in flight). */
  misses: number;
  /** Pushed events that changed the cache. */
  pushedUpdates: number;
  /** Pushed events older than, or equal to, what the cache already holds. */
  staleEventsIgnored: number;
  /** `token.get` requests sent, whatever the reason. */
  fallbacks: number;
  /** `token.get` requests sent to confirm an entry cached before a NATS reconnect. */
  confirmationsAfterReconnect: number;
  /** Entries dropped by the `maxEntries` bound. */
  evictions: number;
  /** Pushed events that failed validation and were ignored. */
  malformedEvents: number;
  /** Pushed events dropped by verification or subject/payload disagreement. */
  rejectedEvents: number;
  /** token.get replies dropped the same way (each failed its call with `internal`). */
  rejectedReplies: number;
  /** Both of the above by reason (events and replies together). */
  rejectedByReason: Record<string, number>;
}

export function emptyStats(): TokenClientStats {
  return {
    hits: 0,
    misses: 0,
    pushedUpdates: 0,
    staleEventsIgnored: 0,
    fallbacks: 0,
    confirmationsAfterReconnect: 0,
    evictions: 0,
    malformedEvents: 0,
    rejectedEvents: 0,
    rejectedReplies: 0,
    rejectedByReason: {},
  };
}

export interface ResolvedTokenClientOptions {
  nc?: NatsConnection;
  servers?: string | string[];
  connectOptions: Omit<NodeConnectionOptions, 'servers'>;
  subjects: string[];
  /** Served tenants, and served single credentials by id. */
  tenants: ReadonlySet<string>;
  connectionIds: ReadonlySet<string>;
  /** The `scopes` option precomputed for O(1) checks; null without it. */
  scope: ConsumerScope | null;
  verifier: SignatureVerifier | null;
  requestTimeoutMs: number;
  maxEntries: number;
  maxTombstones: number;
  defaultMinTtlMs: number;
  clock: () => number;
  dispatcher?: Dispatcher;
  logger: TokenClientLogger;
  onRecovered?: (event: RecoveredNotice) => void;
  onExpiring?: (event: ExpiringNotice) => void;
}

function positiveInt(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new TokenClientError('bad_request', `${what} must be a positive integer`);
  }
  return value;
}

function name(value: unknown, what: string): string {
  if (!isValidName(value)) throw new TokenClientError('bad_request', `${what} must match ${NAME_RULE}`);
  return value;
}

/** Dots separate subject tokens; wildcards and whitespace would make the inbox a pattern. */
const INBOX_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function consumerScope(entries: string[] | undefined): ConsumerScope | null {
  if (entries === undefined || entries.length === 0) return null;
  try {
    return ConsumerScope.parse(entries);
  } catch (err) {
    throw new TokenClientError('bad_request', `scopes: ${(err as Error).message}`);
  }
}

interface Served {
  tenants: Set<string>;
  connections: Map<string, CredentialKey>;
  scope: ConsumerScope | null;
}

function served(options: TokenClientOptions): Served {
  const tenants = new Set<string>();
  const connections = new Map<string, CredentialKey>();
  for (const tenant of options.tenants ?? []) tenants.add(name(tenant, 'tenants[]'));
  for (const key of options.connections ?? []) {
    const valid = {
      tenant: name(key?.tenant, 'connections[].tenant'),
      connection: name(key?.connection, 'connections[].connection'),
    };
    connections.set(credentialId(valid), valid);
  }
  for (const legacy of options.subscribe ?? []) {
    const tenant = name(legacy.tenant, 'subscribe[].tenant (wildcards are no longer accepted)');
    if (legacy.connection === undefined) tenants.add(tenant);
    else
      connections.set(`${tenant}/${legacy.connection}`, {
        tenant,
        connection: name(legacy.connection, 'subscribe[].connection'),
      });
  }
  const scope = consumerScope(options.scopes);
  if (tenants.size === 0 && connections.size === 0 && scope === null) {
    throw new TokenClientError(
      'bad_request',
      'TokenClient needs `tenants`, `connections` or `scopes`: it subscribes only to the credentials it serves',
    );
  }
  // What a broader subscription already covers would only be delivered twice.
  if (scope !== null) for (const tenant of tenants) if (scope.coversTenant(tenant)) tenants.delete(tenant);
  for (const [id, key] of connections)
    if (tenants.has(key.tenant) || scope?.covers(key) === true) connections.delete(id);
  return { tenants, connections, scope };
}

/** The event types named one by one (never `token.*.…`), per tenant, per credential and per scope entry. */
function eventSubjects({ tenants, connections, scope }: Served): string[] {
  const subjects: string[] = [];
  for (const entry of scope?.entries ?? []) {
    // A scope entry naming a served tenant is covered by the tenant's `>` already.
    if (entry.connection !== '*' && tenants.has(entry.tenant)) continue;
    for (const kind of TOKEN_EVENT_KINDS) subjects.push(tokenEventFilter(kind, entry.tenant, entry.connection));
  }
  for (const tenant of tenants)
    for (const kind of TOKEN_EVENT_KINDS) subjects.push(tokenEventFilter(kind, tenant, '>'));
  for (const key of connections.values()) {
    for (const kind of TOKEN_EVENT_KINDS) subjects.push(tokenEventFilter(kind, key.tenant, key.connection));
  }
  return subjects;
}

function verifierOf(trusted: string[] | undefined, maxAgeSeconds: number): SignatureVerifier | null {
  if (trusted === undefined || trusted.length === 0) return null;
  try {
    return new SignatureVerifier(trusted, { maxAgeSeconds });
  } catch (err) {
    // SigningKeyError messages name the position, never the key.
    if (err instanceof SigningKeyError) throw new TokenClientError('bad_request', `trustedSigners: ${err.message}`);
    throw err;
  }
}

export function resolveOptions(options: TokenClientOptions): ResolvedTokenClientOptions {
  const minTtl = options.defaultMinTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS;
  if (!Number.isFinite(minTtl) || minTtl < 0) {
    throw new TokenClientError('bad_request', 'defaultMinTtlSeconds must be a number >= 0');
  }
  const connectOptions = { ...(options.connectOptions ?? {}) };
  if (options.inboxPrefix !== undefined) {
    if (options.nc !== undefined) {
      throw new TokenClientError(
        'bad_request',
        'inboxPrefix applies to a connection the client opens; with `nc`, set it on that connection',
      );
    }
    if (!INBOX_PREFIX.test(options.inboxPrefix)) {
      throw new TokenClientError(
        'bad_request',
        'inboxPrefix must be dot-separated subject tokens without wildcards, e.g. _INBOX_billing',
      );
    }
    connectOptions.inboxPrefix = options.inboxPrefix;
  }
  const serving = served(options);
  return {
    nc: options.nc,
    servers: options.servers,
    connectOptions,
    subjects: eventSubjects(serving),
    tenants: serving.tenants,
    connectionIds: new Set(serving.connections.keys()),
    scope: serving.scope,
    verifier: verifierOf(
      options.trustedSigners,
      positiveInt(options.signatureMaxAgeSeconds, DEFAULT_SIGNATURE_MAX_AGE_SECONDS, 'signatureMaxAgeSeconds'),
    ),
    requestTimeoutMs: positiveInt(options.requestTimeoutMs, 5_000, 'requestTimeoutMs'),
    maxEntries:
      options.maxEntries === undefined
        ? DEFAULT_MAX_ENTRIES
        : options.maxEntries === Infinity
          ? Infinity
          : positiveInt(options.maxEntries, 0, 'maxEntries'),
    maxTombstones: positiveInt(options.maxTombstones, DEFAULT_MAX_TOMBSTONES, 'maxTombstones'),
    defaultMinTtlMs: minTtl * 1000,
    clock: options.clock ?? Date.now,
    dispatcher: options.dispatcher,
    logger: options.logger ?? console,
    onRecovered: options.onRecovered,
    onExpiring: options.onExpiring,
  };
}
