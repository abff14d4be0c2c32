import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import { WEBHOOK_SIGNATURE_HEADER } from '@tokenkeeper/contracts';
import type { Secret } from '@tokenkeeper/common';
import { SsrfGuard } from './ssrf.guard.js';
import { signWebhook } from './webhook.signer.js';

export interface WebhookAttempt {
  url: string;
  secret: Secret;
  body: string;
}

/** What the endpoint answered: a status (2xx is success), or why there was no answer. */
export type WebhookAnswer = { ok: boolean; status: number } | { ok: false; status: null; error: string };

export interface WebhookDeliveryClientOptions {
  allowedNetworks: readonly string[];
  timeoutMs: number;
  maxResponseBytes: number;
  now?: () => number;
}

/** Thrown from the lookup so undici fails the connect with a recognisable reason. */
class RefusedAddressError extends Error {
  code = 'EWEBHOOKADDRESS';
}

/**
 * POSTs one signed delivery. Every attempt resolves the host anew through a lookup that keeps
 * only addresses the SsrfGuard permits, on a fresh agent (no kept-alive socket from an earlier
 * attempt), and that lookup's answer is what the socket connects to: a name that resolves
 * to a public address when checked and to 127.0.0.1 when connected (DNS rebinding) cannot
 * slip through. Redirects are not followed (a 3xx is an answer, and not a 2xx); the answer's
 * body is read up to a cap and thrown away.
 */
export class WebhookDeliveryClient {
  private readonly guard: SsrfGuard;
  private readonly now: () => number;

  constructor(private readonly options: WebhookDeliveryClientOptions) {
    this.guard = new SsrfGuard(options.allowedNetworks);
    this.now = options.now ?? Date.now;
  }

  async deliver(attempt: WebhookAttempt): Promise<WebhookAnswer> {
    const url = new URL(attempt.url);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // An IP literal is connected to without a lookup, so it is judged here.
    if (isIP(host) && !this.guard.permits(host)) return refused();
    const agent = new Agent({
      connect: { timeout: this.options.timeoutMs, lookup: this.lookup },
      headersTimeout: this.options.timeoutMs,
      bodyTimeout: this.options.timeoutMs,
      pipelining: 0,
    });
    try {
      const t = Math.floor(this.now() / 1_000);
      const res = await request(url, {
        method: 'POST',
        dispatcher: agent,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'tokenkeeper-webhooks',
          [WEBHOOK_SIGNATURE_HEADER.toLowerCase()]: signWebhook(attempt.secret, attempt.body, t),
        },
        body: attempt.body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      await res.body.dump({ limit: this.options.maxResponseBytes }).catch(() => undefined);
      return { ok: res.statusCode >= 200 && res.statusCode < 300, status: res.statusCode };
    } catch (error) {
      return { ok: false, status: null, error: reason(error) };
    } finally {
      agent.destroy().catch(() => undefined);
    }
  }

  private readonly lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 4);
      const permitted = addresses.filter((a) => this.guard.permits(a.address));
      if (permitted.length === 0) {
        return callback(new RefusedAddressError('address not permitted for webhooks'), '', 4);
      }
      if (options.all) return callback(null, permitted);
      callback(null, permitted[0].address, permitted[0].family);
    });
  };
}

function refused(): WebhookAnswer {
  return { ok: false, status: null, error: 'address_refused' };
}

/** A short, secret-free reason: error codes and names only, never a message with a URL in it. */
function reason(error: unknown): string {
  const seen = new Set<unknown>();
  for (let e: unknown = error; e && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    if (e instanceof RefusedAddressError || (e as { code?: string }).code === 'EWEBHOOKADDRESS')
      return 'address_refused';
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code)) return code.toLowerCase();
  const name = (error as { name?: unknown }).name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  return 'request_failed';
}
