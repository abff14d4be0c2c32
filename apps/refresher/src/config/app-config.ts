import {
  failOnProblems,
  optionalText,
  parseEnvCollecting,
  positiveInt,
  postgresUrl,
  Secret,
  secretFileShape,
  serviceConfigFrom,
  serviceEnvShape,
  type ServiceConfig,
  withSecretFiles,
} from '@tokenkeeper/common';
import { decodeUserSeed, isUserPublicKey } from '@tokenkeeper/contracts';
import {
  NATS_SECRET_NAMES,
  type NatsConfig,
  natsConfigFrom,
  natsEnvShape,
  replySubjectEnvShape,
  replySubjectPrefixesFrom,
  withOwnInbox,
} from '@tokenkeeper/nats';
import { isIP } from 'node:net';
import { z } from 'zod';
import { EncryptionKeyError, parseKeySpec } from './encryption-key-spec.js';

/** Raised when the environment is invalid; the message names every offending variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * The secrets that may also come from a file (`<NAME>_FILE`). EVENT_SIGNING_KEY_FILE doubles
 * as where a local run keeps the key it makes, so outside production that file may be absent.
 */
const SECRET_NAMES = [...NATS_SECRET_NAMES, 'DATABASE_URL', 'TOKEN_ENCRYPTION_KEYS', 'EVENT_SIGNING_KEY'] as const;

const EnvSchema = z.object({
  ...serviceEnvShape,
  ...secretFileShape(['DATABASE_URL', 'TOKEN_ENCRYPTION_KEYS']),
  ...natsEnvShape,
  ...replySubjectEnvShape,
  DATABASE_URL: postgresUrl('postgres://postgres@127.0.0.1:5432/tokenkeeper'),
  DATABASE_POOL_SIZE: positiveInt(10),
  // Bounds on every database wait, so a PostgreSQL that silently drops packets fails a
  // statement (retried under the lease) instead of hanging it.
  DATABASE_CONNECT_TIMEOUT_MS: positiveInt(5_000),
  DATABASE_STATEMENT_TIMEOUT_MS: positiveInt(15_000),
  DATABASE_IDLE_IN_TX_TIMEOUT_MS: positiveInt(15_000),
  PROVIDERS_FILE: z.string().default('config/providers.yaml'),
  TOKEN_ENCRYPTION_KEYS: optionalText,
  TOKEN_ENCRYPTION_KEY_FILE: z.string().default('.tokenkeeper/encryption.key'),
  // Signing of token replies and events: a NATS user nkey seed, and the public
  // keys of the other replicas' signers (several during a rotation).
  EVENT_SIGNING_KEY: optionalText,
  EVENT_SIGNING_KEY_FILE: z.string().default('.tokenkeeper/event-signing.seed'),
  EVENT_TRUSTED_SIGNERS: optionalText,
  // How long after signing a replica accepts another's event; cached token.get replies are
  // re-signed once their signature is a third of this old.
  SIGNATURE_MAX_AGE_SECONDS: positiveInt(900),
  HTTP_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  // The connect flow's pages: how browsers reach them, and an optional port of
  // their own so that health and metrics can stay private.
  PUBLIC_BASE_URL: optionalText,
  PUBLIC_HTTP_PORT: z.coerce.number().int().min(1).max(65_535).optional(),
  // Sessions of one tenant not yet ended or expired: each is a row and a live link.
  CONNECT_MAX_OPEN_SESSIONS_PER_TENANT: positiveInt(100),
  LEASE_SECONDS: positiveInt(30),
  REFRESH_MIN_MARGIN_SECONDS: positiveInt(60),
  REFRESH_TIMEOUT_MS: positiveInt(10_000),
  CLAIM_INTERVAL_MS: positiveInt(250),
  CLAIM_BATCH_SIZE: positiveInt(100),
  MAX_REFRESHES_IN_FLIGHT: positiveInt(64),
  BACKOFF_BASE_MS: positiveInt(1_000),
  BACKOFF_MAX_MS: positiveInt(300_000),
  MISCONFIGURED_RETRY_MS: positiveInt(600_000),
  SHUTDOWN_GRACE_MS: positiveInt(15_000),
  TOKEN_CACHE_MAX_ENTRIES: positiveInt(100_000),
  // Audit: the TOKEN_AUDIT stream (created at start when missing) and the outbox relay.
  AUDIT_STREAM_MAX_AGE_HOURS: positiveInt(24 * 30),
  AUDIT_STREAM_MAX_BYTES: positiveInt(1024 * 1024 * 1024),
  AUDIT_STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  AUDIT_DEDUPE_WINDOW_SECONDS: positiveInt(120),
  AUDIT_RELAY_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(256),
  AUDIT_RELAY_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(1_024).default(64),
  AUDIT_RELAY_INTERVAL_MS: positiveInt(100),
  AUDIT_RELAY_STANDBY_POLL_MS: positiveInt(1_000),
  AUDIT_RELAY_BACKOFF_MAX_MS: positiveInt(10_000),
  AUDIT_PUBLISH_TIMEOUT_MS: positiveInt(5_000),
  AUDIT_RELAY_DRAIN_MS: positiveInt(5_000),
  AUDIT_OUTBOX_RETENTION_HOURS: positiveInt(24),
  // Webhooks: which otherwise refused networks endpoints may be on, and the delivery loop.
  WEBHOOK_ALLOWED_NETWORKS: optionalText,
  WEBHOOK_TIMEOUT_MS: positiveInt(10_000),
  WEBHOOK_MAX_RESPONSE_BYTES: positiveInt(64 * 1024),
  WEBHOOK_RETRY_BUDGET_SECONDS: positiveInt(86_400),
  WEBHOOK_INTERVAL_MS: positiveInt(500),
  WEBHOOK_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(256),
  WEBHOOK_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(1_024).default(32),
});

/** The refresher's settings and their defaults (the check of .env.example reads them). */
export const ENV_SCHEMA = EnvSchema;

/** Every variable the refresher reads (docs and the compose-file check use it). */
export const ENV_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape);

export type { NatsAuth } from '@tokenkeeper/nats';

/** Everything the refresher reads from its environment, validated once at start. */
export interface AppConfig extends ServiceConfig {
  nats: NatsConfig;
  /** REPLY_SUBJECT_PREFIXES: the only reply subjects request handlers answer to. */
  replySubjectPrefixes: string[];
  database: {
    url: string;
    poolSize: number;
    connectTimeoutMs: number;
    statementTimeoutMs: number;
    idleInTransactionTimeoutMs: number;
  };
  providersFile: string;
  /** The environment `${VAR}` references in the providers file resolve against. */
  providersEnv: Record<string, string | undefined>;
  tokenCacheMaxEntries: number;
  encryption: { keysSpec?: string; devKeyFile: string };
  signing: {
    /** EVENT_SIGNING_KEY (an `SU…` seed, checked here); absent: see createEventSigner. */
    seed?: Secret;
    /** Where a local run keeps the key it made (EVENT_SIGNING_KEY_FILE). */
    devKeyFile: string;
    /** EVENT_TRUSTED_SIGNERS: `U…` public keys trusted besides this replica's own. */
    trustedSigners: string[];
    /** SIGNATURE_MAX_AGE_SECONDS. */
    maxAgeSeconds: number;
  };
  httpPort: number;
  /** The connect flow's public side. */
  connect: {
    /** PUBLIC_BASE_URL without a trailing slash; the redirect_uri is `${publicBaseUrl}/oauth/callback`. */
    publicBaseUrl: string;
    /** PUBLIC_HTTP_PORT: when set, the pages are served there only (and health/metrics on HTTP_PORT only). */
    publicHttpPort?: number;
    /** CONNECT_MAX_OPEN_SESSIONS_PER_TENANT: beyond it `connect` answers `rate_limited`. */
    maxOpenSessionsPerTenant: number;
  };
  refresh: {
    leaseSeconds: number;
    minMarginSeconds: number;
    requestTimeoutMs: number;
    claimIntervalMs: number;
    claimBatchSize: number;
    maxInFlight: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    misconfiguredRetryMs: number;
  };
  shutdownGraceMs: number;
  audit: {
    stream: { maxAgeSeconds: number; maxBytes: number; replicas: number; dedupeWindowSeconds: number };
    relay: {
      batchSize: number;
      maxInFlight: number;
      intervalMs: number;
      standbyPollMs: number;
      backoffMaxMs: number;
      publishTimeoutMs: number;
      drainMs: number;
      outboxRetentionHours: number;
    };
  };
  webhooks: {
    /** WEBHOOK_ALLOWED_NETWORKS: CIDRs exempt from the refusal of private, loopback and link-local targets. */
    allowedNetworks: string[];
    timeoutMs: number;
    maxResponseBytes: number;
    /** How long after a change its delivery is retried before it is parked. */
    retryBudgetSeconds: number;
    intervalMs: number;
    batchSize: number;
    maxInFlight: number;
  };
}

export const APP_CONFIG = Symbol('APP_CONFIG');

export function loadConfig(env: Record<string, string | undefined>): AppConfig {
  const fail = (message: string) => new ConfigError(message);
  const problems: string[] = [];
  const resolved = withSecretFiles(env, SECRET_NAMES, problems, {
    mayBeAbsent: env.NODE_ENV === 'production' ? [] : ['EVENT_SIGNING_KEY'],
  });
  const e = parseEnvCollecting(EnvSchema, resolved, problems, fail);
  const nats = withOwnInbox(natsConfigFrom(e, problems));
  const replySubjectPrefixes = replySubjectPrefixesFrom(e, problems);
  // LEASE_SECONDS need not exceed REFRESH_TIMEOUT_MS any more: the lease is extended while a
  // request runs, and a request is stopped before the lease ends only when no extension could
  // be confirmed (docs/design.md, "Leases, fencing and single flight").
  if (e.AUDIT_DEDUPE_WINDOW_SECONDS > e.AUDIT_STREAM_MAX_AGE_HOURS * 3600) {
    problems.push('  AUDIT_DEDUPE_WINDOW_SECONDS: must not exceed AUDIT_STREAM_MAX_AGE_HOURS');
  }
  encryptionKeysCheck(e, problems);
  const signing = signingFrom(e, problems);
  const publicBaseUrl = publicBaseUrlFrom(e, problems);
  const allowedNetworks = allowedNetworksFrom(e.WEBHOOK_ALLOWED_NETWORKS, problems);
  failOnProblems(problems, fail);

  return {
    ...serviceConfigFrom(e),
    nats,
    replySubjectPrefixes,
    database: {
      url: e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
      idleInTransactionTimeoutMs: e.DATABASE_IDLE_IN_TX_TIMEOUT_MS,
    },
    providersFile: e.PROVIDERS_FILE,
    providersEnv: { ...env },
    tokenCacheMaxEntries: e.TOKEN_CACHE_MAX_ENTRIES,
    encryption: { keysSpec: e.TOKEN_ENCRYPTION_KEYS, devKeyFile: e.TOKEN_ENCRYPTION_KEY_FILE },
    signing,
    httpPort: e.HTTP_PORT,
    connect: {
      publicBaseUrl,
      publicHttpPort: e.PUBLIC_HTTP_PORT,
      maxOpenSessionsPerTenant: e.CONNECT_MAX_OPEN_SESSIONS_PER_TENANT,
    },
    refresh: {
      leaseSeconds: e.LEASE_SECONDS,
      minMarginSeconds: e.REFRESH_MIN_MARGIN_SECONDS,
      requestTimeoutMs: e.REFRESH_TIMEOUT_MS,
      claimIntervalMs: e.CLAIM_INTERVAL_MS,
      claimBatchSize: e.CLAIM_BATCH_SIZE,
      maxInFlight: e.MAX_REFRESHES_IN_FLIGHT,
      backoffBaseMs: e.BACKOFF_BASE_MS,
      backoffMaxMs: e.BACKOFF_MAX_MS,
      misconfiguredRetryMs: e.MISCONFIGURED_RETRY_MS,
    },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    audit: {
      stream: {
        maxAgeSeconds: e.AUDIT_STREAM_MAX_AGE_HOURS * 3600,
        maxBytes: e.AUDIT_STREAM_MAX_BYTES,
        replicas: e.AUDIT_STREAM_REPLICAS,
        dedupeWindowSeconds: e.AUDIT_DEDUPE_WINDOW_SECONDS,
      },
      relay: {
        batchSize: e.AUDIT_RELAY_BATCH_SIZE,
        maxInFlight: e.AUDIT_RELAY_MAX_IN_FLIGHT,
        intervalMs: e.AUDIT_RELAY_INTERVAL_MS,
        standbyPollMs: e.AUDIT_RELAY_STANDBY_POLL_MS,
        backoffMaxMs: e.AUDIT_RELAY_BACKOFF_MAX_MS,
        publishTimeoutMs: e.AUDIT_PUBLISH_TIMEOUT_MS,
        drainMs: e.AUDIT_RELAY_DRAIN_MS,
        outboxRetentionHours: e.AUDIT_OUTBOX_RETENTION_HOURS,
      },
    },
    webhooks: {
      allowedNetworks,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      maxResponseBytes: e.WEBHOOK_MAX_RESPONSE_BYTES,
      retryBudgetSeconds: e.WEBHOOK_RETRY_BUDGET_SECONDS,
      intervalMs: e.WEBHOOK_INTERVAL_MS,
      batchSize: e.WEBHOOK_BATCH_SIZE,
      maxInFlight: e.WEBHOOK_MAX_IN_FLIGHT,
    },
  };
}

/** WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDRs, each checked. */
function allowedNetworksFrom(value: string | undefined, problems: string[]): string[] {
  const cidrs = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  cidrs.forEach((cidr, index) => {
    const [address, prefix, extra] = cidr.split('/');
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(prefix ?? '') || Number(prefix) > max) {
      problems.push(`  WEBHOOK_ALLOWED_NETWORKS: entry #${index + 1} is not a CIDR (e.g. 127.0.0.0/8)`);
    }
  });
  return cidrs;
}

/**
 * PUBLIC_BASE_URL: an http(s) origin with an optional path prefix, no credentials, query or
 * fragment. Plain http only on loopback in production: the pages carry OAuth codes.
 * Default: this replica's HTTP port on loopback, which is what a local run needs.
 */
function publicBaseUrlFrom(
  e: { NODE_ENV: AppConfig['env']; PUBLIC_BASE_URL?: string; PUBLIC_HTTP_PORT?: number; HTTP_PORT: number },
  problems: string[],
): string {
  const fallback = `http://127.0.0.1:${e.PUBLIC_HTTP_PORT ?? e.HTTP_PORT}`;
  if (e.PUBLIC_BASE_URL === undefined) return fallback;
  let url: URL;
  try {
    url = new URL(e.PUBLIC_BASE_URL);
  } catch {
    problems.push('  PUBLIC_BASE_URL: must be an http(s) URL');
    return fallback;
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') problems.push('  PUBLIC_BASE_URL: must be an http(s) URL');
  else if (url.username || url.password || url.search || url.hash)
    problems.push('  PUBLIC_BASE_URL: must not carry credentials, a query or a fragment');
  else if (url.protocol === 'http:' && !loopback && e.NODE_ENV === 'production')
    problems.push('  PUBLIC_BASE_URL: must be https in production (except on loopback)');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** TOKEN_ENCRYPTION_KEYS, checked here so that its problems are named with all the others. */
function encryptionKeysCheck(
  e: { NODE_ENV: AppConfig['env']; TOKEN_ENCRYPTION_KEYS?: string },
  problems: string[],
): void {
  if (e.TOKEN_ENCRYPTION_KEYS === undefined) {
    if (e.NODE_ENV === 'production')
      problems.push(
        '  TOKEN_ENCRYPTION_KEYS: required in production (kid:base64-32-byte-key,…; `tokenctl keygen encryption-key`)',
      );
    return;
  }
  try {
    parseKeySpec(e.TOKEN_ENCRYPTION_KEYS);
  } catch (error) {
    // Its messages name the entry and key id, never key material.
    if (error instanceof EncryptionKeyError) problems.push(`  ${error.message}`);
    else throw error;
  }
}

/** The signing settings; each problem names the variable (and a list entry's position), never the value. */
function signingFrom(
  e: {
    NODE_ENV: AppConfig['env'];
    EVENT_SIGNING_KEY?: string;
    EVENT_SIGNING_KEY_FILE: string;
    EVENT_TRUSTED_SIGNERS?: string;
    SIGNATURE_MAX_AGE_SECONDS: number;
  },
  problems: string[],
): AppConfig['signing'] {
  let seed: Secret | undefined;
  if (e.EVENT_SIGNING_KEY !== undefined) {
    try {
      decodeUserSeed(e.EVENT_SIGNING_KEY);
      seed = new Secret(e.EVENT_SIGNING_KEY.trim());
    } catch {
      problems.push(
        '  EVENT_SIGNING_KEY: must be a NATS user nkey seed (SU…, e.g. from `tokenctl keygen signing-key`)',
      );
    }
  } else if (e.NODE_ENV === 'production') {
    // Replicas must share one key (or trust each other's): a key made up per container would
    // make every replica drop the others' events.
    problems.push(
      '  EVENT_SIGNING_KEY: required in production (a NATS user nkey seed, SU…; `tokenctl keygen signing-key`)',
    );
  }
  const trustedSigners = (e.EVENT_TRUSTED_SIGNERS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  trustedSigners.forEach((key, index) => {
    if (!isUserPublicKey(key))
      problems.push(`  EVENT_TRUSTED_SIGNERS: entry #${index + 1} is not a NATS user public key (U…)`);
  });
  return { seed, devKeyFile: e.EVENT_SIGNING_KEY_FILE, trustedSigners, maxAgeSeconds: e.SIGNATURE_MAX_AGE_SECONDS };
}
