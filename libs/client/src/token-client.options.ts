import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { DEFAULT_MIN_TTL_SECONDS, isValidName, NAME_RULE, tokenEventFilter } from '@tokenkeeper/contracts';
import type { Dispatcher } from 'undici';
import { TokenClientError } from './token-client.error.js';

/** Which pushed events a client listens to; `'*'` (or leaving a field out) means any. */
export interface TokenEventSubscription {
  tenant?: string;
  /** `'>'` is accepted too and means the same as `'*'` here: a connection is one subject token. */
  connection?: string;
}

export interface TokenClientOptions {
  /** A connection the application owns. The client never closes it. */
  nc?: NatsConnection;
  /**
   * Used only when `nc` is not given: the client then connects (nats.js defaults to
   * 127.0.0.1:4222, the project's local default) and closes what it opened.
   */
  servers?: string | string[];
  /** Extra nats.js options (auth, TLS, name, reconnect policy) for a connection the client opens. */
  connectOptions?: Omit<NodeConnectionOptions, 'servers'>;
  /** Default: every tenant and connection. */
  subscribe?: TokenEventSubscription[];
  /** Timeout of each `token.get` request. Default 5000. */
  requestTimeoutMs?: number;
  /** Optional LRU bound on cached credentials. Default: unbounded. */
  maxEntries?: number;
  /** A cached token is served only if it stays valid this long. Default 30 (the contract's default). */
  defaultMinTtlSeconds?: number;
  /** Epoch milliseconds. Injected by tests; default `Date.now`. */
  clock?: () => number;
  /** undici dispatcher (Agent, Pool, ProxyAgent) for `client.fetch`. Default: undici's global one. */
  dispatcher?: Dispatcher;
}

export interface TokenRequestOptions {
  /** The token must stay valid at least this long. Default: the client's `defaultMinTtlSeconds`. */
  minTtlSeconds?: number;
}

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
  };
}

export interface ResolvedTokenClientOptions {
  nc?: NatsConnection;
  servers?: string | string[];
  connectOptions: Omit<NodeConnectionOptions, 'servers'>;
  subjects: string[];
  requestTimeoutMs: number;
  maxEntries: number;
  defaultMinTtlMs: number;
  clock: () => number;
  dispatcher?: Dispatcher;
}

function positiveInt(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new TokenClientError('bad_request', `${what} must be a positive integer`);
  }
  return value;
}

function filterToken(value: string | undefined, what: string, allowTail: boolean): string {
  if (value === undefined || value === '*') return '*';
  if (allowTail && value === '>') return '*';
  if (!isValidName(value)) {
    throw new TokenClientError('bad_request', `subscribe ${what} must be '*' or match ${NAME_RULE}`);
  }
  return value;
}

/**
 * Subjects are built with the contract's `tokenEventFilter` and kind `*`, so one
 * subscription per filter carries all four event kinds. Identical filters collapse;
 * overlapping ones (e.g. `*` and `acme`) would deliver an event twice, which the
 * version rules absorb as a duplicate, so they are kept as given.
 */
function eventSubjects(filters: TokenEventSubscription[] | undefined): string[] {
  const list = filters === undefined || filters.length === 0 ? [{}] : filters;
  const subjects = new Set<string>();
  for (const f of list) {
    subjects.add(tokenEventFilter('*', filterToken(f.tenant, 'tenant', false), filterToken(f.connection, 'connection', true)));
  }
  return [...subjects];
}

export function resolveOptions(options: TokenClientOptions): ResolvedTokenClientOptions {
  const minTtl = options.defaultMinTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS;
  if (!Number.isFinite(minTtl) || minTtl < 0) {
    throw new TokenClientError('bad_request', 'defaultMinTtlSeconds must be a number >= 0');
  }
  return {
    nc: options.nc,
    servers: options.servers,
    connectOptions: options.connectOptions ?? {},
    subjects: eventSubjects(options.subscribe),
    requestTimeoutMs: positiveInt(options.requestTimeoutMs, 5_000, 'requestTimeoutMs'),
    maxEntries: options.maxEntries === undefined ? Infinity : positiveInt(options.maxEntries, 0, 'maxEntries'),
    defaultMinTtlMs: minTtl * 1000,
    clock: options.clock ?? Date.now,
    dispatcher: options.dispatcher,
  };
}
