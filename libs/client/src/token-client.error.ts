import { ContractError, type CredentialKey, type ErrorCode } from '@tokenkeeper/contracts';

/**
 * What every failing `TokenClient` call rejects with. It extends the contract's
 * `ContractError` so that a service can forward `code` as is (e.g. in its own NATS
 * replies) and so that `retryable` means the same thing on both sides of the wire.
 *
 * The message is built from names, codes and the refresher's own (secret-free)
 * message only: it is safe to log.
 */
export class TokenClientError extends ContractError {
  readonly tenant?: string;
  readonly connection?: string;

  constructor(
    code: ErrorCode,
    message: string,
    key?: CredentialKey,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(code, message, options?.retryAfterSeconds);
    this.name = 'TokenClientError';
    this.tenant = key?.tenant;
    this.connection = key?.connection;
    // The cause is a NATS error (timeouts, no responders), never a payload, so it carries no secret.
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
