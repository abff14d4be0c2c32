import { hostname } from 'node:os';
import { z } from 'zod';
import type { AppConfig, NatsAuth } from '../../../refresher/src/config/app-config.js';

/** Raised when the environment is invalid; the message names every offending variable. */
export class AuditConfigError extends Error {
  override name = 'AuditConfigError';
}

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  NATS_USER: optionalText,
  NATS_PASS: optionalText,
  NATS_TOKEN: optionalText,
  NATS_CREDS: optionalText,
  NATS_TLS_CA: optionalText,
  NATS_TLS_CERT: optionalText,
  NATS_TLS_KEY: optionalText,
  AUDIT_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .default('postgres://postgres@127.0.0.1:5432/tokenkeeper_audit'),
  AUDIT_DATABASE_POOL_SIZE: positiveInt(5),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  REPLICA_ID: optionalText,
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
});

/** Everything the audit app reads from its environment, validated once at start. */
export interface AuditConfig {
  env: 'development' | 'test' | 'production';
  replicaId: string;
  /** Same shape as the refresher's, so both connect through the same helper. */
  nats: AppConfig['nats'];
  database: { url: string; poolSize: number };
  logLevel: string;
  consumer: {
    name: string;
    /** Records delivered and not yet acknowledged, at most (the consumer's max_ack_pending). */
    maxInFlight: number;
    insertBatchSize: number;
    ackWaitSeconds: number;
    retryMaxMs: number;
  };
  shutdownGraceMs: number;
}

export const AUDIT_CONFIG = Symbol('AUDIT_CONFIG');

export function loadAuditConfig(env: Record<string, string | undefined>): AuditConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new AuditConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const problems: string[] = [];
  if ((e.NATS_USER === undefined) !== (e.NATS_PASS === undefined)) {
    problems.push('  NATS_USER and NATS_PASS: set both or neither');
  }
  const authKinds = [e.NATS_USER, e.NATS_TOKEN, e.NATS_CREDS].filter((v) => v !== undefined).length;
  if (authKinds > 1) problems.push('  NATS_USER/NATS_TOKEN/NATS_CREDS: choose one way to authenticate');
  if ((e.NATS_TLS_CERT === undefined) !== (e.NATS_TLS_KEY === undefined)) {
    problems.push('  NATS_TLS_CERT and NATS_TLS_KEY: set both or neither');
  }
  const servers = e.NATS_URL.split(',').map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0 || servers.some((s) => !/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(s))) {
    problems.push('  NATS_URL: must be nats://host:port (comma-separated for a cluster)');
  }
  if (!new URL(e.AUDIT_DATABASE_URL).pathname.replace(/^\//, '')) problems.push('  AUDIT_DATABASE_URL: must name a database');
  if (problems.length > 0) throw new AuditConfigError(`invalid configuration:\n${problems.join('\n')}`);

  const auth: NatsAuth = e.NATS_USER
    ? { kind: 'userpass', user: e.NATS_USER, pass: e.NATS_PASS! }
    : e.NATS_TOKEN
      ? { kind: 'token', token: e.NATS_TOKEN }
      : e.NATS_CREDS
        ? { kind: 'creds', file: e.NATS_CREDS }
        : { kind: 'none' };
  const tls =
    e.NATS_TLS_CA || e.NATS_TLS_CERT
      ? { caFile: e.NATS_TLS_CA, certFile: e.NATS_TLS_CERT, keyFile: e.NATS_TLS_KEY }
      : undefined;

  return {
    env: e.NODE_ENV,
    replicaId: e.REPLICA_ID ?? `${hostname()}-${process.pid}`,
    nats: { servers, auth, tls },
    database: { url: e.AUDIT_DATABASE_URL, poolSize: e.AUDIT_DATABASE_POOL_SIZE },
    logLevel: e.LOG_LEVEL,
    consumer: {
      name: e.AUDIT_CONSUMER_NAME,
      maxInFlight: e.AUDIT_MAX_IN_FLIGHT,
      insertBatchSize: Math.min(e.AUDIT_INSERT_BATCH_SIZE, e.AUDIT_MAX_IN_FLIGHT),
      ackWaitSeconds: e.AUDIT_ACK_WAIT_SECONDS,
      retryMaxMs: e.AUDIT_RETRY_MAX_MS,
    },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
  };
}
