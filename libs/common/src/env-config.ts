import { z } from 'zod';

/**
 * Environment parsing shared by the apps: the NATS connection settings (SPEC §8) and small
 * zod helpers, so that the refresher and the audit app read NATS_* the same way.
 */

/**
 * Validates an environment against an app's schema; `fail` turns the report (one line per
 * offending variable, never its value) into the app's configuration error.
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>, fail: (message: string) => Error): z.output<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  throw fail(`invalid configuration:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
}

/** Cross-variable checks collect lines in `problems`; any line stops start-up. */
export function failOnProblems(problems: string[], fail: (message: string) => Error): void {
  if (problems.length > 0) throw fail(`invalid configuration:\n${problems.join('\n')}`);
}

export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** An optional variable; an empty value counts as unset. */
export const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

/** Spread into an app's environment schema. */
export const natsEnvShape = {
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  NATS_USER: optionalText,
  NATS_PASS: optionalText,
  NATS_TOKEN: optionalText,
  NATS_CREDS: optionalText,
  NATS_TLS_CA: optionalText,
  NATS_TLS_CERT: optionalText,
  NATS_TLS_KEY: optionalText,
};

type NatsEnv = { [K in keyof typeof natsEnvShape]: z.output<(typeof natsEnvShape)[K]> };

export type NatsAuth =
  | { kind: 'none' }
  | { kind: 'userpass'; user: string; pass: string }
  | { kind: 'token'; token: string }
  | { kind: 'creds'; file: string };

export interface NatsConfig {
  servers: string[];
  auth: NatsAuth;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/** Builds the NATS settings, adding a line to `problems` for each inconsistent variable. */
export function natsConfigFrom(e: NatsEnv, problems: string[]): NatsConfig {
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
  const auth: NatsAuth = e.NATS_USER
    ? { kind: 'userpass', user: e.NATS_USER, pass: e.NATS_PASS! }
    : e.NATS_TOKEN
      ? { kind: 'token', token: e.NATS_TOKEN }
      : e.NATS_CREDS
        ? { kind: 'creds', file: e.NATS_CREDS }
        : { kind: 'none' };
  const tls =
    e.NATS_TLS_CA || e.NATS_TLS_CERT ? { caFile: e.NATS_TLS_CA, certFile: e.NATS_TLS_CERT, keyFile: e.NATS_TLS_KEY } : undefined;
  return { servers, auth, tls };
}
