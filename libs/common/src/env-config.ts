import { hostname } from 'node:os';
import { z } from 'zod';

/**
 * Environment parsing shared by the apps: small zod helpers and the report format. The
 * NATS settings are read by `natsEnvShape`/`natsConfigFrom` in @tokenkeeper/nats.
 */

/**
 * Validates an environment against an app's schema; `fail` turns the report (one line per
 * offending variable, never its value) into the app's configuration error.
 */
export function parseEnv<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
  fail: (message: string) => Error,
): z.output<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  throw fail(
    `invalid configuration:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`,
  );
}

/**
 * Like `parseEnv`, but collects the schema's problems into `problems` and still returns a
 * typed value (each offending variable at its default), so that the cross-variable checks
 * run too and one start names every problem, not only the first kind.
 */
export function parseEnvCollecting<S extends z.ZodObject>(
  schema: S,
  env: Record<string, string | undefined>,
  problems: string[],
  fail: (message: string) => Error,
): z.output<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  problems.push(...parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`));
  const offending = new Set(parsed.error.issues.map((i) => String(i.path[0])));
  const rest = Object.fromEntries(Object.entries(env).filter(([name]) => !offending.has(name)));
  const fallback = schema.safeParse(rest);
  if (fallback.success) return fallback.data;
  throw fail(`invalid configuration:\n${problems.join('\n')}`);
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

/** A postgres:// connection URL, defaulting to what a local run uses. */
export const postgresUrl = (fallback: string) =>
  z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .default(fallback);

/** The variables every service reads alike: its mode, its log level and its replica's name. */
export const serviceEnvShape = {
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: logLevel,
  REPLICA_ID: optionalText,
};

/** The part of a service's configuration `serviceEnvShape` gives. */
export interface ServiceConfig {
  env: 'development' | 'test' | 'production';
  /** REPLICA_ID, else host and pid: unique per process, stable for its life. */
  replicaId: string;
  logLevel: string;
}

export function serviceConfigFrom(e: {
  NODE_ENV: ServiceConfig['env'];
  LOG_LEVEL: string;
  REPLICA_ID?: string;
}): ServiceConfig {
  return { env: e.NODE_ENV, replicaId: e.REPLICA_ID ?? `${hostname()}-${process.pid}`, logLevel: e.LOG_LEVEL };
}
