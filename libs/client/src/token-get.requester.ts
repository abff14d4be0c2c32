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
  MAX_MIN_TTL_SECONDS,
  RpcSubject,
  type TokenGetRequest,
  type ValidatedToken,
  validateTokenView,
} from '@tokenkeeper/contracts';
import { TokenClientError } from './token-client.error.js';
import type { TokenClientStats } from './token-client.options.js';

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
  const body = (error ?? {}) as { code?: unknown; message?: unknown };
  const code: ErrorCode = isErrorCode(body.code) ? body.code : 'internal';
  const detail = typeof body.message === 'string' ? body.message.slice(0, 500) : 'no message';
  return new TokenClientError(code, `${subject} for ${describeKey(key)}: ${detail}`, key);
}

export function malformedReply(subject: string, key: CredentialKey): TokenClientError {
  return new TokenClientError('internal', `${subject} for ${describeKey(key)}: malformed reply`, key);
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
  ) {}

  async get(key: CredentialKey, minTtlMs: number, rejectedVersion?: number): Promise<ValidatedToken> {
    const request: TokenGetRequest = {
      tenant: key.tenant,
      connection: key.connection,
      // Rounded up: asking for a little more validity than needed is harmless, less is not. The
      // contract bounds minTtlSeconds (more would be a bad_request).
      minTtlSeconds: Math.min(MAX_MIN_TTL_SECONDS, Math.ceil(minTtlMs / 1000)),
    };
    if (rejectedVersion !== undefined) request.rejectedVersion = rejectedVersion;

    this.stats.fallbacks++;
    let data: Uint8Array;
    try {
      const msg = await this.nc.request(RpcSubject.get, encodeJson(request), { timeout: this.timeoutMs });
      data = msg.data;
    } catch (err) {
      throw fromNatsError(err, RpcSubject.get, key, this.timeoutMs);
    }
    return this.parseReply(data, key);
  }

  private parseReply(data: Uint8Array, key: CredentialKey): ValidatedToken {
    let reply: { ok?: unknown; token?: unknown; error?: unknown };
    try {
      reply = JSON.parse(decoder.decode(data)) as typeof reply;
    } catch {
      throw malformedReply(RpcSubject.get, key);
    }
    if (reply === null || typeof reply !== 'object') throw malformedReply(RpcSubject.get, key);
    if (reply.ok === false) throw fromErrorReply(reply.error, RpcSubject.get, key);
    if (reply.ok !== true) throw malformedReply(RpcSubject.get, key);
    const token = validateTokenView(reply.token);
    // A token for another credential would poison the cache under this key: refuse it.
    if (token === null || token.view.tenant !== key.tenant || token.view.connection !== key.connection) {
      throw malformedReply(RpcSubject.get, key);
    }
    return token;
  }
}
