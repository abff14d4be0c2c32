import { Agent, request } from 'undici';
import type { Secret } from '@tokenkeeper/common';
import type {
  CodeExchangeRequest,
  ProviderConfig,
  TokenEndpoint,
  TokenFailure,
  TokenRequest,
  TokenResult,
} from './provider.types.js';
import { classifyTokenResponse } from './token-response.classifier.js';

export interface UndiciTokenEndpointOptions {
  /** Whole exchange: connect, headers and body. */
  timeoutMs?: number;
  maxResponseBytes?: number;
  userAgent?: string;
  /**
   * Epoch ms; the refresher passes its Clock. `requestedAt`, the moment every schedule counts
   * from, is read from it. Default `Date.now`.
   */
  now?: () => number;
}

type Exchange =
  | { ok: true; status: number; contentType?: string; retryAfter?: string; body: string }
  | { ok: false; failure: TokenFailure };

/**
 * Token endpoint adapter on undici's `request` (global fetch costs ~0.5 ms CPU per call,
 * which the refresh pipeline's throughput target cannot afford). Never follows redirects:
 * a redirected POST would carry credentials to wherever the redirect points.
 */
export class UndiciTokenEndpoint implements TokenEndpoint {
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly userAgent: string;
  private readonly now: () => number;

  constructor(options: UndiciTokenEndpointOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024;
    this.userAgent = options.userAgent ?? 'tokenkeeper-refresher';
    this.now = options.now ?? Date.now;
    // undici's own timeouts only back up ours (which spans the whole exchange).
    // Keep-alive and pipelining, checked against the sandbox (bench/keepalive.check.ts,
    // docs/benchmarks.md): connections are reused (one per request in flight, bounded by
    // the provider's maxConcurrency), and an idle one is retired by us before the server's
    // keep-alive timeout (its `Keep-Alive: timeout=N` hint less keepAliveTimeoutThreshold),
    // so no POST is sent on a socket the server is closing. No pipelining: a token POST is
    // not idempotent, one queued behind a slow answer would wait for it, and one lost on a
    // reset cannot be retried (the provider may have rotated the refresh token).
    this.agent = new Agent({
      pipelining: 1,
      keepAliveTimeout: 4_000,
      keepAliveTimeoutThreshold: 2_000,
      connect: { timeout: this.timeoutMs },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  async requestToken(req: TokenRequest): Promise<TokenResult> {
    const { provider } = req;
    if (provider.grant === 'refresh_token' && !req.refreshToken) {
      return fail('invalid_grant', 'missing_refresh_token', 'no refresh token stored for the refresh_token grant');
    }
    const form = new URLSearchParams();
    // Extra parameters first, so that they can never override the grant or the credentials.
    for (const [key, value] of Object.entries(provider.extraParams)) form.set(key, value);
    form.set('grant_type', provider.grant);
    if (provider.grant === 'refresh_token' && req.refreshToken) form.set('refresh_token', req.refreshToken.reveal());
    if (provider.scopes?.length) form.set('scope', provider.scopes.join(' '));
    return this.tokenCall(provider, form, req.refreshToken ? [req.refreshToken] : [], req.signal);
  }

  /**
   * The same request, caps, timeouts and classification as a refresh, with the authorization
   * code grant: a provider's answer to a code means what it means to a refresh token.
   */
  async exchangeCode(req: CodeExchangeRequest): Promise<TokenResult> {
    const { provider } = req;
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(provider.extraParams)) form.set(key, value);
    form.set('grant_type', 'authorization_code');
    form.set('code', req.code.reveal());
    form.set('redirect_uri', req.redirectUri);
    form.set('code_verifier', req.codeVerifier.reveal());
    return this.tokenCall(provider, form, [req.code, req.codeVerifier]);
  }

  /**
   * POSTs a grant to the token endpoint with the client's authentication and classifies the
   * answer; `sent` are the request's own secrets, which the classifier keeps out of messages.
   */
  private async tokenCall(
    provider: ProviderConfig,
    form: URLSearchParams,
    sent: Secret[],
    signal?: AbortSignal,
  ): Promise<TokenResult> {
    const headers = this.headers();
    const secrets = clientAuth(provider, form, headers);
    for (const secret of sent) secrets.push(...variants(secret.reveal()));
    const requestedAt = new Date(this.now());
    const exchange = await this.exchange(provider.tokenUrl, form, headers, signal);
    if (!exchange.ok) return { ok: false, failure: exchange.failure };
    return classifyTokenResponse(exchange, provider, requestedAt, secrets, this.now());
  }

  async revoke(provider: ProviderConfig, token: Secret, hint: 'access_token' | 'refresh_token'): Promise<void> {
    if (!provider.revocationUrl) return;
    const form = new URLSearchParams({ token: token.reveal(), token_type_hint: hint });
    const headers = this.headers();
    clientAuth(provider, form, headers);
    const where = safeUrl(provider.revocationUrl);
    const exchange = await this.exchange(provider.revocationUrl, form, headers);
    if (!exchange.ok) throw new Error(`token revocation at ${where} failed: ${exchange.failure.message}`);
    // RFC 7009 §2.2: 200 also for tokens that were already invalid.
    if (exchange.status >= 200 && exchange.status < 300) return;
    const now = this.now();
    const result = classifyTokenResponse(
      exchange,
      provider,
      new Date(now),
      [...variants(token.reveal()), ...secretVariants(provider)],
      now,
    );
    const detail = result.ok ? `HTTP ${exchange.status}` : result.failure.message;
    throw new Error(`token revocation at ${where} failed: ${detail}`);
  }

  /** Closes the connection pool; called at shutdown, after the refresh work has drained. */
  async close(): Promise<void> {
    await this.agent.close();
  }

  private headers(): Record<string, string> {
    return {
      'content-type': 'application/x-www-form-urlencoded',
      // GitHub answers form-encoded without it.
      accept: 'application/json',
      'user-agent': this.userAgent,
    };
  }

  /** POSTs the form; returns the size-capped body or a transport failure. Never throws. */
  private async exchange(
    url: string,
    form: URLSearchParams,
    headers: Record<string, string>,
    callerSignal?: AbortSignal,
  ): Promise<Exchange> {
    if (callerSignal?.aborted) return { ok: false, failure: aborted() };
    const controller = new AbortController();
    let timedOut = false;
    let callerAborted = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    const onAbort = () => {
      callerAborted = true;
      controller.abort();
    };
    callerSignal?.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await request(url, {
        dispatcher: this.agent,
        method: 'POST',
        headers,
        body: form.toString(),
        signal: controller.signal,
      });
      const declared = Number(header(response.headers['content-length']) ?? NaN);
      if (declared > this.maxResponseBytes) {
        discard(response.body);
        return { ok: false, failure: tooLarge(response.statusCode, this.maxResponseBytes) };
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.maxResponseBytes) {
          discard(response.body);
          return { ok: false, failure: tooLarge(response.statusCode, this.maxResponseBytes) };
        }
        chunks.push(chunk);
      }
      return {
        ok: true,
        status: response.statusCode,
        contentType: header(response.headers['content-type']),
        retryAfter: header(response.headers['retry-after']),
        body: Buffer.concat(chunks, size).toString('utf8'),
      };
    } catch (error) {
      // A caller's deadline (AbortSignal.timeout, e.g. the refresh engine's per-request timeout) is
      // a timeout of the provider, not a cancellation: it must be classified as one.
      const callerTimedOut =
        callerAborted && (callerSignal?.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
      if (callerAborted && !callerTimedOut) return { ok: false, failure: aborted() };
      const code = errorCode(error);
      if (callerTimedOut) {
        return {
          ok: false,
          failure: { kind: 'retryable', code: 'timeout', message: 'no complete answer within the time allowed' },
        };
      }
      if (
        timedOut ||
        code === 'UND_ERR_HEADERS_TIMEOUT' ||
        code === 'UND_ERR_BODY_TIMEOUT' ||
        code === 'UND_ERR_CONNECT_TIMEOUT'
      ) {
        return {
          ok: false,
          failure: { kind: 'retryable', code: 'timeout', message: `no complete answer within ${this.timeoutMs} ms` },
        };
      }
      // Only the error's code: messages of lower layers are not ours to vouch for.
      return {
        ok: false,
        failure: { kind: 'retryable', code: 'network', message: `network error${code ? ` (${code})` : ''}` },
      };
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * Applies the provider's client authentication to the request; returns every form in which
 * the client secret now travels, so failure messages can be checked against them.
 */
function clientAuth(provider: ProviderConfig, form: URLSearchParams, headers: Record<string, string>): string[] {
  const secret = provider.clientSecret?.reveal() ?? '';
  switch (provider.authMethod) {
    case 'client_secret_basic': {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
      const basic = Buffer.from(`${formEncode(provider.clientId)}:${formEncode(secret)}`).toString('base64');
      headers['authorization'] = `Basic ${basic}`;
      return [...variants(secret), basic];
    }
    case 'client_secret_post':
      form.set('client_id', provider.clientId);
      form.set('client_secret', secret);
      return variants(secret);
    case 'none':
      form.set('client_id', provider.clientId);
      return [];
  }
}

function secretVariants(provider: ProviderConfig): string[] {
  const secret = provider.clientSecret?.reveal();
  if (!secret) return [];
  const basic = Buffer.from(`${formEncode(provider.clientId)}:${formEncode(secret)}`).toString('base64');
  return [...variants(secret), basic];
}

/** application/x-www-form-urlencoded serialization of one value (WHATWG URL standard). */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

function variants(secret: string): string[] {
  if (secret === '') return [];
  const encoded = formEncode(secret);
  return encoded === secret ? [secret] : [secret, encoded, encodeURIComponent(secret)];
}

/** Drops a body we will not read; closing the socket is cheaper than draining a hostile body. */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  // undici's BodyReadable emits an AbortError on destroy(); with no listener it would crash the process.
  body.on('error', () => {});
  body.destroy();
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : undefined;
}

function fail(kind: TokenFailure['kind'], code: string, message: string): TokenResult {
  return { ok: false, failure: { kind, code, message } };
}

function aborted(): TokenFailure {
  return { kind: 'retryable', code: 'aborted', message: 'request aborted by the caller' };
}

function tooLarge(status: number, max: number): TokenFailure {
  return {
    kind: 'retryable',
    code: 'response_too_large',
    message: `HTTP ${status} body exceeds ${max} bytes`,
    httpStatus: status,
  };
}

/** Origin and path only: a configured URL could carry credentials or a query. */
function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return 'the revocation endpoint';
  }
}
