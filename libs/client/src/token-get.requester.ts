import {
  ClosedConnectionError,
  DrainingConnectionError,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import {
  type CredentialKey,
  encodeJson,
  type ErrorCode,
  isErrorCode,
  type HeaderReader,
  MAX_MIN_TTL_SECONDS,
  tokenGetSubject,
  type ValidatedToken,
  validateTokenView,
} from '@tokenkeeper/contracts';
import { TokenClientError } from './token-client.error.js';
import type { RejectionReason, TokenClientStats } from './token-client.options.js';
import type { TokenMessageGuard } from './token-message.guard.js';

function describeKey(key: CredentialKey): string {
  return `${key.tenant}/${key.connection}`;
}

/**
 * Every transport failure is `unavailable`: the caller cannot tell a slow refresher
 * from a missing one, and both mean "try again later", which is what that code says.
 */
export function fromNatsError(err: unknown, subject: string, key: CredentialKey, timeoutMs: number): TokenClientError {
  const what = `${subject} for ${describeKey(key)}`;
  if (err instanceof TimeoutError) {
    return new TokenClientError('unavailable', `${what} timed out after ${timeoutMs} ms`, key, { cause: err });
  }
  if (err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) {
    return new TokenClientError('unavailable', `${what}: no refresher is listening`, key, { cause: err });
  }
  if (err instanceof ClosedConnectionError || err instanceof DrainingConnectionError) {
    return new TokenClientError('unavailable', `${what}: NATS connection is closed`, key, { cause: err });
  }
  if (err instanceof TokenClientError) return err;
  const reason = err instanceof Error ? err.name : 'unknown error';
  return new TokenClientError('unavailable', `${what} failed (${reason})`, key, { cause: err });
}

/**
 * An error reply from the refresher. Its message is part of the contract and is
 * secret-free by rule; a code this client does not know yet becomes `internal`
 * rather than being passed on unchecked.
 */
export function fromErrorReply(error: unknown, subject: string, key: CredentialKey): TokenClientError {
  const body = (error ?? {}) as { code?: unknown; message?: unknown; retryAfterSeconds?: unknown };
  const code: ErrorCode = isErrorCode(body.code) ? body.code : 'internal';
  const detail = typeof body.message === 'string' ? body.message.slice(0, 500) : 'no message';
  const retryAfter = body.retryAfterSeconds;
  // Bounded, so that a confused or hostile reply cannot park a caller for days.
  const retryAfterSeconds =
    code === 'rate_limited' && typeof retryAfter === 'number' && retryAfter > 0
      ? Math.min(Math.ceil(retryAfter), 3600)
      : undefined;
  return new TokenClientError(code, `${subject} for ${describeKey(key)}: ${detail}`, key, { retryAfterSeconds });
}

export function malformedReply(subject: string, key: CredentialKey): TokenClientError {
  return new TokenClientError('internal', `${subject} for ${describeKey(key)}: malformed reply`, key);
}

/** A reply that carried a token but failed verification; the message names the reason, never the token. */
export function unverifiedReply(subject: string, key: CredentialKey, reason: RejectionReason): TokenClientError {
  return new TokenClientError(
    'internal',
    `${subject} for ${describeKey(key)}: unverified reply (${reason}), dropped`,
    key,
  );
}

/** The wire payload: the credential is in the subject, not here. */
interface TokenGetPayload {
  minTtlSeconds: number;
  rejectedVersion?: number;
}

const decoder = new TextDecoder();

/**
 * Sends one `token.get` and turns the reply into a validated token or a
 * `TokenClientError`. Plain `nc.request` with the contract's JSON, no Nest
 * ClientProxy: the proxy's envelope and observables cost about twice the round
 * trip, and the refresher speaks bare JSON to any client anyway.
 *
 * Deduplication is the caller's business (TokenClient keeps one flight per key);
 * this class only counts what actually goes on the wire.
 */
export class TokenGetRequester {
  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
    private readonly stats: TokenClientStats,
    private readonly guard: TokenMessageGuard,
  ) {}

  async get(key: CredentialKey, minTtlMs: number, rejectedVersion?: number): Promise<ValidatedToken> {
    // Names were checked by the caller; the builder refuses bad ones all the same.
    const subject = tokenGetSubject(key.tenant, key.connection);
    const request: TokenGetPayload = {
      // Rounded up: asking for a little more validity than needed is harmless, less is not. The
      // contract bounds minTtlSeconds (more would be a bad_request).
      minTtlSeconds: Math.min(MAX_MIN_TTL_SECONDS, Math.ceil(minTtlMs / 1000)),
    };
    if (rejectedVersion !== undefined) request.rejectedVersion = rejectedVersion;

    this.stats.fallbacks++;
    let data: Uint8Array;
    let headers: HeaderReader | undefined;
    try {
      const msg = await this.nc.request(subject, encodeJson(request), { timeout: this.timeoutMs });
      data = msg.data;
      headers = msg.headers;
    } catch (err) {
      throw fromNatsError(err, subject, key, this.timeoutMs);
    }
    return this.parseReply(subject, data, headers, key);
  }

  private parseReply(
    subject: string,
    data: Uint8Array,
    headers: HeaderReader | undefined,
    key: CredentialKey,
  ): ValidatedToken {
    let reply: { ok?: unknown; token?: unknown; error?: unknown };
    try {
      reply = JSON.parse(decoder.decode(data)) as typeof reply;
    } catch {
      throw malformedReply(subject, key);
    }
    if (reply === null || typeof reply !== 'object') throw malformedReply(subject, key);
    // Error replies are not signed: a forged one can fail a call, never plant a token.
    if (reply.ok === false) throw fromErrorReply(reply.error, subject, key);
    if (reply.ok !== true) throw malformedReply(subject, key);
    // Verified as the answer to this very request's subject: a reply signed for another credential does not verify.
    const unverified = this.guard.checkReplySignature(subject, data, headers);
    if (unverified !== null) throw unverifiedReply(subject, key, unverified);
    const token = validateTokenView(reply.token);
    if (token === null) throw malformedReply(subject, key);
    // A token for another credential would poison the cache under this key: refuse it.
    if (token.view.tenant !== key.tenant || token.view.connection !== key.connection) {
      this.guard.rejectReply('request_mismatch', subject);
      throw unverifiedReply(subject, key, 'request_mismatch');
    }
    return token;
  }
}
