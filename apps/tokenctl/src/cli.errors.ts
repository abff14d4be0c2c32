import type { z } from 'zod';
import { isErrorCode, type ErrorBody, type ErrorCode } from '@tokenkeeper/contracts';

/**
 * What tokenctl's exit status means, so that scripts can tell "the service said no"
 * from "you called me wrong" from "nobody is there to ask".
 */
export const ExitCode = {
  ok: 0,
  /** The service answered with an error reply (`{ok:false, error}`). */
  serviceError: 1,
  /** Bad flags, bad arguments or bad input file: nothing (more) was sent. */
  usage: 2,
  /** NATS unreachable, refused the connection, no responders, or no reply in time. */
  unreachable: 3,
  /** `connect`: the link was handed out, but no credential was connected in time. */
  waitTimedOut: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Base of every error tokenctl reports itself; carries the exit code and what to do next. */
export abstract class CliError extends Error {
  abstract readonly exitCode: ExitCode;
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  override name = 'UsageError';
  readonly exitCode = ExitCode.usage;
}

export class UnreachableError extends CliError {
  override name = 'UnreachableError';
  readonly exitCode = ExitCode.unreachable;
}

/** The service answered `{ok:false, error}`; `reply` is that answer as received. */
export class ServiceError extends CliError {
  override name = 'ServiceError';
  readonly exitCode = ExitCode.serviceError;
  constructor(
    readonly code: string,
    message: string,
    readonly reply: unknown,
    hint?: string,
  ) {
    super(message, hint);
  }
}

/** Who a hint may point at: the credential the command was about, when there is one. */
export interface HintContext {
  tenant?: string;
  connection?: string;
}

const HINTS: Record<ErrorCode, (c: Required<HintContext> | null) => string> = {
  bad_request: () =>
    'the service rejected the request: names must match ^[A-Za-z0-9_-]{1,128}$; see `tokenctl <command> --help`',
  not_found: (c) =>
    c
      ? `check the tenant and connection names, or see \`tokenctl list --tenant ${c.tenant}\``
      : 'no such credential: check the names, or see `tokenctl list`',
  unknown_provider: () =>
    "the provider id is not in the refresher's providers file (PROVIDERS_FILE): check its spelling, or add it there and restart the refresher",
  forbidden: () =>
    'the providers file does not allow this tenant this provider (its `tenants` setting) or these scopes (`allowedScopes`): ask the operator',
  rate_limited: () =>
    'this credential was refreshed on demand moments ago (onDemandCooldownSeconds); retry after the time the error gives',
  reauth_required: (c) =>
    `the provider refused the refresh token: a person must grant access again, then register the new tokens with \`tokenctl register${c ? ` --tenant ${c.tenant} --connection ${c.connection}` : ''} --provider … --refresh-token-file …\``,
  refresh_failed: (c) =>
    `refreshing failed and is being retried with backoff; see the last error with \`tokenctl describe ${c ? `${c.tenant} ${c.connection}` : '<tenant> <connection>'}\` and try again later`,
  revoked: () => 'the credential was revoked: register it again (`tokenctl register …`) to use it',
  unavailable: () =>
    "the refresher cannot reach its database or the provider: retry shortly; check the refresher's logs and /readyz",
  internal: () => 'a bug in the service (logged there with a stack trace): retry, and report it if it persists',
};

/** What to do about an error code; codes unknown to this version get a generic hint. */
export function hintForCode(code: string, context: HintContext = {}): string {
  const key = context.tenant && context.connection ? { tenant: context.tenant, connection: context.connection } : null;
  return isErrorCode(code)
    ? HINTS[code](key)
    : 'an error code this tokenctl does not know: is it older than the service?';
}

/** Builds the error for an `{ok:false}` reply (or for a reply that is not the contract's shape). */
export function serviceErrorFrom(reply: unknown, context: HintContext = {}): ServiceError {
  const error = (reply as { error?: Partial<ErrorBody> } | null)?.error;
  if (error && typeof error.code === 'string') {
    return new ServiceError(error.code, String(error.message ?? ''), reply, hintForCode(error.code, context));
  }
  return new ServiceError(
    'invalid_reply',
    'the reply is not {ok, …} JSON',
    reply,
    'is something else answering on this subject?',
  );
}

/**
 * Validates a request against its contract schema before anything is sent. Problems
 * name fields and rules, never values: a value may be a secret given to the wrong field.
 */
export function contractProblems(schema: z.ZodType, data: unknown): string | null {
  const result = schema.safeParse(data);
  if (result.success) return null;
  return result.error.issues
    .slice(0, 5)
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const names = issue.keys.filter((k) => /^[A-Za-z0-9_]{1,40}$/.test(k));
        return names.length === issue.keys.length ? `unknown field ${names.join(', ')}` : 'unknown field';
      }
      const path = issue.path.join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** Parses with a contract schema or throws a UsageError (exit 2) naming the problem. */
export function validateRequest<S extends z.ZodType>(schema: S, data: unknown, what: string): z.output<S> {
  const problems = contractProblems(schema, data);
  if (problems !== null) throw new UsageError(`invalid ${what}: ${problems}`, 'see `tokenctl <command> --help`');
  return schema.parse(data);
}

/** Writes an error the way every command reports it: what happened, then what to do. */
export function reportError(error: unknown, stderr: NodeJS.WritableStream): ExitCode {
  if (error instanceof ServiceError) {
    stderr.write(`tokenctl: error ${error.code}: ${error.message}\n`);
    if (error.hint) stderr.write(`  hint: ${error.hint}\n`);
    return error.exitCode;
  }
  if (error instanceof CliError) {
    stderr.write(`tokenctl: ${error.message}\n`);
    if (error.hint) stderr.write(`  hint: ${error.hint}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  stderr.write(`tokenctl: unexpected error: ${message}\n`);
  return ExitCode.serviceError;
}
