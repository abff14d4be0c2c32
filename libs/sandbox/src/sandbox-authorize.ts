import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** How long the person has between the consent page and a click. */
const CONSENT_TTL_MS = 10 * 60_000;
/** RFC 6749 §4.1.2: "a maximum authorization code lifetime of 10 minutes is RECOMMENDED"; a sandbox can be stricter. */
const CODE_TTL_MS = 60_000;
/** RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const REQUEST_PARAMS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
];

export interface AuthorizeSettings {
  clientId: string;
  /** RFC 9207 `iss` on every authorization response, when set. */
  issuer?: string;
  /** Registered redirect URIs, compared exactly; when unset any http(s) URI without a fragment is accepted (a sandbox). */
  redirectUris?: readonly string[];
  now?: () => number;
}

/** What an authorization request asked for, once checked; the consent and the code carry it on. */
interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  scope?: string;
  state?: string;
  codeChallenge: string;
}

interface PendingConsent extends AuthorizationRequest {
  expiresAt: number;
}

interface IssuedCode extends AuthorizationRequest {
  expiresAt: number;
  used: boolean;
  /** The family the exchange started, revoked if the code is presented again (RFC 6749 §4.1.2). */
  refreshToken?: string;
}

export type CodeRedemption =
  | { ok: true; scope?: string; bind(refreshToken: string): void }
  | { ok: false; description: string; revokeRefreshToken?: string };

export interface CodePresentation {
  code: string | null;
  clientId: string;
  redirectUri: string | null;
  codeVerifier: string | null;
}

/** The strict headers of every page here (asks the same of the refresher's). */
function pageHeaders(formAction: string): Record<string, string> {
  return {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    pragma: 'no-cache',
    'referrer-policy': 'no-referrer',
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
  };
}

function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Sandbox provider</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:0 .25rem}button{font:inherit;padding:.4rem 1.2rem;margin-right:.6rem}
footer{margin-top:3rem;font-size:.8rem;color:#888}</style></head>
<body><h1>${escapeHtml(title)}</h1>${body}<footer>Sandbox OAuth2 provider: test tokens only</footer></body></html>
`;
}

function sendPage(res: ServerResponse, status: number, html: string, formAction = "'none'"): void {
  if (res.destroyed) return;
  res.writeHead(status, pageHeaders(formAction)).end(html);
}

/** An error the browser must see here: with no trustworthy redirect_uri there is nowhere safe to send it (RFC 6749 §4.1.2.1). */
function refuse(res: ServerResponse, message: string): void {
  sendPage(res, 400, page('Invalid authorization request', `<p>${escapeHtml(message)}</p>`));
}

function token(): string {
  return randomBytes(32).toString('base64url');
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The sandbox's authorization endpoint (authorization code with PKCE S256 only), kept apart
 * from the token endpoint: `GET /authorize` checks the request and shows a consent page,
 * `POST /authorize` turns Allow or Deny into the redirect, and `redeem` is the token
 * endpoint's side of a code. The consent form carries an unguessable id of the checked
 * request, not the request itself, so a click cannot change what was checked.
 */
export class SandboxAuthorizer {
  private readonly consents = new Map<string, PendingConsent>();
  private readonly codes = new Map<string, IssuedCode>();
  private readonly now: () => number;

  constructor(private readonly settings: AuthorizeSettings) {
    this.now = settings.now ?? Date.now;
  }

  /** `GET /authorize?…`: a consent page, or a plain 400 page. */
  consentPage(query: URLSearchParams, res: ServerResponse): void {
    const checked = this.check(query);
    if (typeof checked === 'string') return refuse(res, checked);
    const id = token();
    this.consents.set(id, { ...checked, expiresAt: this.now() + CONSENT_TTL_MS });
    const scope = checked.scope
      ? `<p>It asks for: ${checked.scope
          .split(' ')
          .map((s) => `<code>${escapeHtml(s)}</code>`)
          .join(' ')}</p>`
      : '';
    const body = `<p><strong>${escapeHtml(checked.clientId)}</strong> wants to access your sandbox account.</p>${scope}
<p>You will be sent back to <code>${escapeHtml(new URL(checked.redirectUri).origin)}</code>.</p>
<form method="post" action="/authorize"><input type="hidden" name="consent" value="${id}">
<button type="submit" name="decision" value="allow">Allow</button><button type="submit" name="decision" value="deny">Deny</button></form>`;
    // Browsers apply form-action to the redirect that answers the form too, so the client's origin must be allowed as well.
    sendPage(res, 200, page('Authorize access', body), `'self' ${new URL(checked.redirectUri).origin}`);
  }

  /** `POST /authorize` with `consent` and `decision`: the redirect back to the client. */
  decide(form: URLSearchParams, res: ServerResponse): void {
    const id = form.get('consent') ?? '';
    const consent = this.consents.get(id);
    // Single use: a second click (or a replayed form) finds nothing.
    this.consents.delete(id);
    if (!consent || consent.expiresAt <= this.now()) {
      return sendPage(
        res,
        400,
        page(
          'Consent expired',
          '<p>This consent request is unknown, used or expired. Start again from the application.</p>',
        ),
      );
    }
    const decision = form.get('decision');
    if (decision !== 'allow' && decision !== 'deny') return refuse(res, 'decision must be allow or deny');

    const location = new URL(consent.redirectUri);
    if (decision === 'allow') {
      const code = token();
      this.codes.set(code, { ...consent, expiresAt: this.now() + CODE_TTL_MS, used: false });
      location.searchParams.set('code', code);
    } else {
      location.searchParams.set('error', 'access_denied');
      location.searchParams.set('error_description', 'the user denied the request');
    }
    if (consent.state !== undefined) location.searchParams.set('state', consent.state);
    if (this.settings.issuer !== undefined) location.searchParams.set('iss', this.settings.issuer);
    if (res.destroyed) return;
    res
      .writeHead(302, {
        location: location.toString(),
        'cache-control': 'no-store',
        pragma: 'no-cache',
        'referrer-policy': 'no-referrer',
      })
      .end();
  }

  /**
   * The token endpoint's `authorization_code` grant for an authenticated client. A code is
   * spent on its first presentation, whatever the outcome, and one presented again takes the
   * family it started with it (RFC 6749 §4.1.2, §10.5).
   */
  redeem(p: CodePresentation): CodeRedemption {
    if (!p.code) return { ok: false, description: 'code is required' };
    const issued = this.codes.get(p.code);
    if (!issued) return { ok: false, description: 'unknown authorization code' };
    if (issued.used) {
      const revokeRefreshToken = issued.refreshToken;
      issued.refreshToken = undefined;
      return {
        ok: false,
        description: 'authorization code already used; the grant it gave is revoked',
        revokeRefreshToken,
      };
    }
    issued.used = true;
    if (issued.expiresAt <= this.now()) return { ok: false, description: 'authorization code expired' };
    if (issued.clientId !== p.clientId)
      return { ok: false, description: 'authorization code was issued to another client' };
    // RFC 6749 §4.1.3: required, and identical, when the authorization request carried it (it always does here).
    if (p.redirectUri === null || p.redirectUri !== issued.redirectUri)
      return { ok: false, description: 'redirect_uri does not match the authorization request' };
    if (p.codeVerifier === null || !VERIFIER.test(p.codeVerifier))
      return { ok: false, description: 'code_verifier is missing or malformed' };
    const challenge = createHash('sha256').update(p.codeVerifier).digest('base64url');
    if (!sameText(challenge, issued.codeChallenge)) return { ok: false, description: 'PKCE verification failed' };
    return { ok: true, scope: issued.scope, bind: (refreshToken) => (issued.refreshToken = refreshToken) };
  }

  /** Forgets expired consents, and codes past their lifetime (a replay after that is just "unknown"). */
  sweepExpired(): void {
    const now = this.now();
    for (const [id, consent] of this.consents) if (consent.expiresAt <= now) this.consents.delete(id);
    for (const [code, issued] of this.codes) if (issued.expiresAt + CODE_TTL_MS <= now) this.codes.delete(code);
  }

  /** A checked request, or what is wrong with it. */
  private check(query: URLSearchParams): AuthorizationRequest | string {
    const names = [...query.keys()];
    const repeated = names.find((name, i) => REQUEST_PARAMS.includes(name) && names.indexOf(name) !== i);
    // RFC 6749 §3.1: request parameters must not be included more than once.
    if (repeated) return `${repeated} is repeated`;
    const clientId = query.get('client_id');
    if (!clientId) return 'client_id is required';
    if (clientId !== this.settings.clientId) return 'unknown client_id';
    const redirectUri = query.get('redirect_uri');
    if (!redirectUri) return 'redirect_uri is required';
    const redirectProblem = this.redirectProblem(redirectUri);
    if (redirectProblem) return redirectProblem;
    if (query.get('response_type') !== 'code') return 'response_type must be code';
    const codeChallenge = query.get('code_challenge');
    if (query.get('code_challenge_method') !== 'S256' || !codeChallenge)
      return 'PKCE is required: code_challenge with code_challenge_method=S256';
    if (!S256_CHALLENGE.test(codeChallenge)) return 'code_challenge must be 43 base64url characters (S256)';
    const scope = query.get('scope')?.trim().split(/\s+/).filter(Boolean).join(' ') || undefined;
    return { clientId, redirectUri, scope, state: query.get('state') ?? undefined, codeChallenge };
  }

  private redirectProblem(redirectUri: string): string | undefined {
    if (this.settings.redirectUris)
      return this.settings.redirectUris.includes(redirectUri)
        ? undefined
        : 'redirect_uri is not registered for this client';
    let url: URL;
    try {
      url = new URL(redirectUri);
    } catch {
      return 'redirect_uri must be an absolute URL';
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'redirect_uri must be http(s)';
    // RFC 6749 §3.1.2: no fragment.
    if (redirectUri.includes('#')) return 'redirect_uri must not have a fragment';
    return undefined;
  }
}
