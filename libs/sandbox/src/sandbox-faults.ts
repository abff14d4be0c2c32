import type { IncomingMessage, ServerResponse } from 'node:http';

/** What a misbehaving token endpoint can do instead of answering normally. */
export type SandboxFault =
  | { type: 'status'; status: number; body?: string; contentType?: string }
  | { type: 'rate_limit'; retryAfterSeconds: number; status?: 429 | 503 }
  /** 502 with an HTML page, as a proxy in front of the provider sends. */
  | { type: 'html' }
  /** 200 with an HTML page, e.g. a captive portal or a login page. */
  | { type: 'html200' }
  /** GitHub style: 200 `{"error":"bad_verification_code",...}`. */
  | { type: 'error_in_200'; error: string }
  /** RFC 6749 §5.2 error; status defaults to 401 for invalid_client, else 400. */
  | { type: 'oauth_error'; status?: number; error: string }
  /** 200 with an application/x-www-form-urlencoded body (GitHub without `Accept: application/json`). */
  | { type: 'form_encoded' }
  /** Accepts the request and never answers, until the provider is closed. */
  | { type: 'stall' }
  /** Destroys the socket (TCP RST) without answering. */
  | { type: 'reset' }
  /** 200 with a multi-megabyte JSON body, sent chunked so that no Content-Length gives it away. */
  | { type: 'huge' }
  /** Waits, then answers normally. */
  | { type: 'delay'; ms: number }
  /** Processes the grant normally (rotating the refresh token) but advertises this `expires_in`. */
  | { type: 'expires_in'; value: number | string };

export const HUGE_BODY_BYTES = 5 * 1024 * 1024;

const HTML_502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
`;

const HTML_200 = `<!DOCTYPE html>
<html><head><title>Sign in</title></head>
<body><form method="post" action="/login"><input name="username"><input type="password" name="password"></form></body>
</html>
`;

let hugeChunk: Buffer | undefined;

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

function sendHuge(res: ServerResponse): void {
  // Valid-looking JSON whose padding makes it huge: a client without a size cap would "succeed" on it.
  hugeChunk ??= Buffer.alloc(1024 * 1024, 'x');
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
  res.write('{"access_token":"at_huge","token_type":"Bearer","expires_in":3600,"padding":"');
  for (let written = 0; written < HUGE_BODY_BYTES; written += hugeChunk.length) {
    if (res.destroyed) return;
    res.write(hugeChunk);
  }
  res.end('"}');
}

/**
 * Writes the response of a fault. Returns false for `delay` and `expires_in`, which
 * the caller handles because they end in a normal answer.
 */
export function respondWithFault(fault: SandboxFault, req: IncomingMessage, res: ServerResponse): boolean {
  switch (fault.type) {
    case 'status':
      res.writeHead(fault.status, { 'content-type': fault.contentType ?? 'text/plain; charset=utf-8' });
      res.end(fault.body ?? '');
      return true;
    case 'rate_limit': {
      const status = fault.status ?? 429;
      const body =
        status === 429
          ? { error: 'too_many_requests', error_description: 'Rate limit exceeded' }
          : { error: 'temporarily_unavailable', error_description: 'Service unavailable' };
      sendJson(res, status, body, { 'retry-after': String(fault.retryAfterSeconds) });
      return true;
    }
    case 'html':
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end(HTML_502);
      return true;
    case 'html200':
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(HTML_200);
      return true;
    case 'error_in_200':
      sendJson(res, 200, {
        error: fault.error,
        error_description: 'The code passed is incorrect or expired.',
        error_uri:
          'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors',
      });
      return true;
    case 'oauth_error':
      sendJson(res, fault.status ?? (fault.error === 'invalid_client' ? 401 : 400), {
        error: fault.error,
        error_description: `sandbox fault: ${fault.error}`,
      });
      return true;
    case 'form_encoded':
      // Made-up values, never registered: a client that takes this for success gets 401s from the API.
      res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
      res.end('access_token=at_formencoded&expires_in=3600&refresh_token=rt_formencoded&scope=&token_type=bearer');
      return true;
    case 'stall':
      return true;
    case 'reset':
      req.socket.resetAndDestroy();
      return true;
    case 'huge':
      sendHuge(res);
      return true;
    case 'delay':
    case 'expires_in':
      return false;
  }
}
