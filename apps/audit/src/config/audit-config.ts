import { isIP } from 'node:net';
import { z } from 'zod';
import {
  failOnProblems,
  parseEnvCollecting,
  positiveInt,
  postgresUrl,
  serviceConfigFrom,
  secretFileShape,
  serviceEnvShape,
  type ServiceConfig,
  withSecretFiles,
} from '@tokenkeeper/common';
import {
  NATS_SECRET_NAMES,
  type NatsConfig,
  natsConfigFrom,
  natsEnvShape,
  replySubjectEnvShape,
  replySubjectPrefixesFrom,
  withOwnInbox,
} from '@tokenkeeper/nats';

/** Raised when the environment is invalid; the message names every offending variable. */
export class AuditConfigError extends Error {
  override name = 'AuditConfigError';
}

/** The secrets that may also come from a file (`<NAME>_FILE`). */
const SECRET_NAMES = [...NATS_SECRET_NAMES, 'AUDIT_DATABASE_URL'] as const;

const EnvSchema = z.object({
  ...secretFileShape(['AUDIT_DATABASE_URL']),
  ...serviceEnvShape,
  ...natsEnvShape,
  ...replySubjectEnvShape,
  AUDIT_DATABASE_URL: postgresUrl('postgres://postgres@127.0.0.1:5432/tokenkeeper_audit'),
  AUDIT_DATABASE_POOL_SIZE: positiveInt(5),
  // A JetStream durable name: no dots, wildcards or whitespace.
  AUDIT_CONSUMER_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must match ^[A-Za-z0-9_-]{1,64}$')
    .default('tokenkeeper-audit'),
  AUDIT_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(10_000).default(512),
  AUDIT_INSERT_BATCH_SIZE: z.coerce.number().int().min(1).max(1_000).default(200),
  AUDIT_ACK_WAIT_SECONDS: positiveInt(30),
  AUDIT_RETRY_MAX_MS: positiveInt(10_000),
  SHUTDOWN_GRACE_MS: positiveInt(10_000),
  // 0: records are kept for ever (nothing is deleted unless the operator asks for it).
  AUDIT_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(0),
  AUDIT_RETENTION_BATCH_SIZE: z.coerce.number().int().min(1).max(100_000).default(5_000),
  AUDIT_RETENTION_INTERVAL_MINUTES: positiveInt(60),
  // Health and metrics. Loopback by default: a container sets 0.0.0.0 for Prometheus, behind an unpublished port.
  AUDIT_MONITORING_PORT: z.coerce.number().int().min(0).max(65_535).default(8081),
  AUDIT_MONITORING_HOST: z
    .string()
    .refine((host) => isIP(host) !== 0, 'must be an IP address, e.g. 127.0.0.1 or 0.0.0.0')
    .default('127.0.0.1'),
});

/** The audit app's settings and their defaults (the check of .env.example reads them). */
export const AUDIT_ENV_SCHEMA = EnvSchema;

/** Every variable the audit app reads (docs and the compose-file check use it). */
export const AUDIT_ENV_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape);

/** Everything the audit app reads from its environment, validated once at start. */
export interface AuditConfig extends ServiceConfig {
  /** Same shape as the refresher's, so both connect through the same helper. */
  nats: NatsConfig;
  /** REPLY_SUBJECT_PREFIXES: the only reply subjects audit.query answers to. */
  replySubjectPrefixes: string[];
  database: { url: string; poolSize: number };
  consumer: {
    name: string;
    /** Records delivered and not yet acknowledged, at most (the consumer's max_ack_pending). */
    maxInFlight: number;
    insertBatchSize: number;
    ackWaitSeconds: number;
    retryMaxMs: number;
  };
  shutdownGraceMs: number;
  /** Records older than `days` are deleted in batches of `batchSize`, every `intervalMs`; days 0: never. */
  retention: { days: number; batchSize: number; intervalMs: number };
  /** AUDIT_MONITORING_HOST/PORT: where /healthz and /metrics answer (port 0: a free one). */
  monitoring: { host: string; port: number };
}

export const AUDIT_CONFIG = Symbol('AUDIT_CONFIG');

export function loadAuditConfig(env: Record<string, string | undefined>): AuditConfig {
  const fail = (message: string) => new AuditConfigError(message);
  const problems: string[] = [];
  const e = parseEnvCollecting(EnvSchema, withSecretFiles(env, SECRET_NAMES, problems), problems, fail);
  const nats = withOwnInbox(natsConfigFrom(e, problems));
  const replySubjectPrefixes = replySubjectPrefixesFrom(e, problems);
  if (!new URL(e.AUDIT_DATABASE_URL).pathname.replace(/^\//, ''))
    problems.push('  AUDIT_DATABASE_URL: must name a database');
  failOnProblems(problems, fail);

  return {
    ...serviceConfigFrom(e),
    nats,
    replySubjectPrefixes,
    database: { url: e.AUDIT_DATABASE_URL, poolSize: e.AUDIT_DATABASE_POOL_SIZE },
    consumer: {
      name: e.AUDIT_CONSUMER_NAME,
      maxInFlight: e.AUDIT_MAX_IN_FLIGHT,
      insertBatchSize: Math.min(e.AUDIT_INSERT_BATCH_SIZE, e.AUDIT_MAX_IN_FLIGHT),
      ackWaitSeconds: e.AUDIT_ACK_WAIT_SECONDS,
      retryMaxMs: e.AUDIT_RETRY_MAX_MS,
    },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    retention: {
      days: e.AUDIT_RETENTION_DAYS,
      batchSize: e.AUDIT_RETENTION_BATCH_SIZE,
      intervalMs: e.AUDIT_RETENTION_INTERVAL_MINUTES * 60_000,
    },
    monitoring: { host: e.AUDIT_MONITORING_HOST, port: e.AUDIT_MONITORING_PORT },
  };
}
