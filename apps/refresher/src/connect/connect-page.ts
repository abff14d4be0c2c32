/** What the browser gets from a connect page: an HTML page, or a redirect. */
export type ConnectPage = { kind: 'redirect'; status: 302 | 303; location: string } | { kind: 'html'; status: number; title: string; message: string };

/**
 * Headers of every connect page (SPEC §12): nothing cached (the URLs carry codes and
 * states), no referrer (the provider and the return app must not see them), no script, no
 * frame, no form, no embedded content of any kind.
 */
export const CONNECT_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

export function htmlPage(status: number, title: string, message: string): ConnectPage {
  return { kind: 'html', status, title, message };
}

export function renderHtml(page: { title: string; message: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.title)} · Tokenkeeper</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem}p{color:#444}footer{margin-top:3rem;font-size:.8rem;color:#888}</style></head>
<body><h1>${escapeHtml(page.title)}</h1><p>${escapeHtml(page.message)}</p><footer>Tokenkeeper</footer></body></html>
`;
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
