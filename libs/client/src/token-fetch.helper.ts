import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { CredentialKey, TokenView } from '@tokenkeeper/contracts';
import { type Dispatcher, request } from 'undici';
import { TokenClientError } from './token-client.error.js';

/**
 * The fetch-like subset `client.fetch` accepts. Headers may be a plain record, an
 * array of pairs or any `Headers` (undici's or Node's global one).
 */
export interface TokenFetchInit {
  method?: string;
  headers?:
    | Record<string, string | readonly string[] | undefined>
    | ReadonlyArray<readonly [string, string]>
    | { forEach(callback: (value: string, name: string) => void): void };
  /**
   * Replayable (retried after a 401): string, Uint8Array/Buffer, ArrayBuffer, any
   * ArrayBufferView, URLSearchParams, Blob, FormData. Not replayable (a 401 is
   * returned as is): Node Readable, web ReadableStream, any async iterable.
   */
  body?: unknown;
  signal?: AbortSignal;
}

export interface TokenFetchTarget extends CredentialKey {
  minTtlSeconds?: number;
}

/**
 * undici's response under fetch-like names. `body` is undici's BodyReadable: read
 * it (text/json/arrayBuffer) or `dump()` it, or the connection is not reused.
 */
export interface TokenFetchResponse {
  status: number;
  statusText: string;
  ok: boolean;
  /** Lower-case names, as Node's `IncomingHttpHeaders`. */
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
  arrayBuffer(): Promise<ArrayBuffer>;
  /** Version of the token sent with the request that produced this response. */
  tokenVersion: number;
  /** True when this is the answer to the one retry after a 401. */
  retried: boolean;
}

/** What the helper needs from TokenClient; an interface so that the helper stays testable alone. */
export interface TokenSource {
  getToken(key: CredentialKey, options?: { minTtlSeconds?: number }): Promise<TokenView>;
  rejectToken(key: CredentialKey, rejectedVersion: number, options?: { minTtlSeconds?: number }): Promise<TokenView>;
}

interface PreparedBody {
  body: Dispatcher.DispatchOptions['body'];
  replayable: boolean;
  contentType?: string;
}

type HeaderRecord = Record<string, string | string[]>;

/**
 * undici.request rather than undici.fetch: it skips the WHATWG Request/Response
 * machinery and is several times faster. The price is that it takes fewer body
 * types, so fetch's body types are converted here, once, before the first send;
 * the converted body is what makes a retry possible.
 *
 * Redirects are not followed (undici.request does not), which also means the
 * bearer token can never be forwarded to another origin by a redirect.
 */
export async function tokenFetch(
  source: TokenSource,
  url: string | URL,
  init: TokenFetchInit,
  target: TokenFetchTarget,
  dispatcher?: Dispatcher,
): Promise<TokenFetchResponse> {
  const key: CredentialKey = { tenant: target.tenant, connection: target.connection };
  const ttl = target.minTtlSeconds === undefined ? undefined : { minTtlSeconds: target.minTtlSeconds };
  const view = await source.getToken(key, ttl);
  const prepared = await prepareBody(init.body);
  const headers = normalizeHeaders(init.headers);
  if (prepared.contentType !== undefined && headers['content-type'] === undefined) {
    headers['content-type'] = prepared.contentType;
  }

  const first = await send(url, init, headers, prepared.body, view, dispatcher);
  if (first.statusCode !== 401 || !prepared.replayable) return wrap(first, view.version, false);

  let fresh: TokenView;
  try {
    fresh = await source.rejectToken(key, view.version, ttl);
  } catch (err) {
    // Over the credential's refresh budget: no new token before retryAfterSeconds, so the
    // API's own 401 is the answer (unretried, body unread), not a loop of reports.
    if ((err as TokenClientError).code === 'rate_limited') return wrap(first, view.version, false);
    // The refresher's verdict (reauth_required, revoked, unavailable) says more than a bare 401.
    await first.body.dump().catch(() => undefined);
    throw err;
  }
  // Same version back: the refresher could not replace it and still deems it valid.
  // Sending the token the API just refused would only repeat the 401.
  if (fresh.version === view.version) return wrap(first, view.version, false);
  await first.body.dump().catch(() => undefined);
  const second = await send(url, init, headers, prepared.body, fresh, dispatcher);
  return wrap(second, fresh.version, true);
}

function send(
  url: string | URL,
  init: TokenFetchInit,
  headers: HeaderRecord,
  body: PreparedBody['body'],
  view: TokenView,
  dispatcher: Dispatcher | undefined,
): Promise<Dispatcher.ResponseData> {
  headers.authorization = `${authScheme(view.tokenType)} ${view.accessToken}`;
  return request(url, {
    method: (init.method ?? 'GET').toUpperCase(),
    headers,
    body,
    signal: init.signal,
    dispatcher,
  });
}

/** Providers send "bearer" in any case; RFC 6750 spells it "Bearer" and some APIs insist. */
function authScheme(tokenType: string): string {
  return tokenType.toLowerCase() === 'bearer' || tokenType === '' ? 'Bearer' : tokenType;
}

function wrap(res: Dispatcher.ResponseData, tokenVersion: number, retried: boolean): TokenFetchResponse {
  const body = res.body;
  return {
    status: res.statusCode,
    statusText: res.statusText,
    ok: res.statusCode >= 200 && res.statusCode < 300,
    headers: res.headers,
    body,
    text: () => body.text(),
    json: <T>() => body.json() as Promise<T>,
    arrayBuffer: () => body.arrayBuffer(),
    tokenVersion,
    retried,
  };
}

function normalizeHeaders(input: TokenFetchInit['headers']): HeaderRecord {
  const out: HeaderRecord = {};
  if (input === undefined || input === null) return out;
  const add = (name: string, value: string) => {
    const lower = name.toLowerCase();
    const prev = out[lower];
    if (prev === undefined) out[lower] = value;
    else out[lower] = Array.isArray(prev) ? [...prev, value] : [prev, value];
  };
  if (Array.isArray(input)) {
    for (const [name, value] of input as ReadonlyArray<readonly [string, string]>) add(name, value);
  } else if (typeof (input as { forEach?: unknown }).forEach === 'function') {
    (input as { forEach(cb: (value: string, name: string) => void): void }).forEach((value, name) => add(name, value));
  } else {
    for (const [name, value] of Object.entries(input as Record<string, string | readonly string[] | undefined>)) {
      if (value === undefined) continue;
      if (typeof value === 'string') add(name, value);
      else for (const v of value) add(name, v);
    }
  }
  return out;
}

async function prepareBody(body: unknown): Promise<PreparedBody> {
  if (body === undefined || body === null) return { body: null, replayable: true };
  if (typeof body === 'string') return { body, replayable: true };
  if (body instanceof Uint8Array) return { body, replayable: true };
  if (body instanceof ArrayBuffer) return { body: new Uint8Array(body), replayable: true };
  if (ArrayBuffer.isView(body)) {
    return { body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), replayable: true };
  }
  if (body instanceof URLSearchParams) {
    return { body: body.toString(), replayable: true, contentType: 'application/x-www-form-urlencoded;charset=UTF-8' };
  }
  if (body instanceof Blob) {
    const bytes = new Uint8Array(await body.arrayBuffer());
    return { body: bytes, replayable: true, contentType: body.type === '' ? undefined : body.type };
  }
  // undici serialises a FormData afresh on every send, so it can be sent twice.
  // The global FormData and undici's are the same class at run time but two declarations.
  // eslint-disable-next-line no-restricted-syntax
  if (body instanceof FormData) return { body: body as unknown as PreparedBody['body'], replayable: true };
  if (body instanceof Readable) return { body, replayable: false };
  if (typeof (body as { getReader?: unknown }).getReader === 'function') {
    return { body: Readable.fromWeb(body as WebReadableStream), replayable: false };
  }
  if (typeof (body as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function') {
    return { body: Readable.from(body as AsyncIterable<unknown>), replayable: false };
  }
  throw new TokenClientError('bad_request', 'unsupported body type for client.fetch');
}
