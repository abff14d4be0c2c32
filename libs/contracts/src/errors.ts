/** Error codes of the wire contract. */
export const ERROR_CODES = [
  'bad_request',
  'not_found',
  'unknown_provider',
  'forbidden',
  'rate_limited',
  'reauth_required',
  'refresh_failed',
  'revoked',
  'unavailable',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes after which asking again later can succeed without an operator's help. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['rate_limited', 'refresh_failed', 'unavailable', 'internal']);

export function isRetryableCode(code: ErrorCode): boolean {
  return RETRYABLE.has(code);
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/**
 * An error that carries a contract code. Its message goes on the wire as is, so it
 * must never contain a secret: build it from names and codes, never from a token or
 * a provider's raw body.
 */
export class ContractError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Whole seconds after which a `rate_limited` request may be asked again. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ContractError';
  }

  get retryable(): boolean {
    return isRetryableCode(this.code);
  }
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  retryAfterSeconds?: number;
}
