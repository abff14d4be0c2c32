/** What the browser gets from a connect page: an HTML page, or a redirect; either may set cookies. */
export type ConnectPage = (
  | { kind: 'redirect'; status: 302 | 303; location: string }
  | { kind: 'html'; status: number; title: string; message: string; facts?: [string, string][]; form?: ConnectForm }
) & { cookies?: string[] };

/** The confirmation page's button: a POST to the page's own URL, carrying the form token. */
export interface ConnectForm {
  token: string;
  button: string;
  /** The origin the POST's redirect leads to (the provider's authorization endpoint): allowed in form-action. */
  redirectOrigin: string;
}

/**
 * Headers of every connect page: nothing cached (the URLs carry codes and
 * states), no referrer (the provider and the return app must not see them), no script, no
 * frame, no form, no embedded content of any kind.
 */
export const CONNECT_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

/**
 * The confirmation page differs in two headers only. Its one form may post to this origin and
 * be redirected to the provider (browsers check form-action on the redirect too). Its
 * referrer policy is same-origin, because under no-referrer a browser sends `Origin: null`
 * with the POST and the origin check could not tell the page's own button from a foreign
 * form; the provider still gets no referrer.
 */
export function formPageHeaders(form: ConnectForm): Record<string, string> {
  return {
    ...CONNECT_PAGE_HEADERS,
    'referrer-policy': 'same-origin',
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self' ${form.redirectOrigin}; base-uri 'none'`,
  };
}

export function htmlPage(status: number, title: string, message: string): ConnectPage {
  return { kind: 'html', status, title, message };
}

export function renderHtml(page: {
  title: string;
  message: string;
  facts?: [string, string][];
  form?: ConnectForm;
}): string {
  const facts = page.facts?.length
    ? `<dl>${page.facts.map(([label, value]) => `<dt>${escapeHtml(label)}</dt><dd>${escapeHtml(value)}</dd>`).join('')}</dl>`
    : '';
  const form = page.form
    ? `<form method="post"><input type="hidden" name="form_token" value="${escapeHtml(page.form.token)}"><button type="submit">${escapeHtml(page.form.button)}</button></form>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.title)} · Tokenkeeper</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem}p{color:#444}footer{margin-top:3rem;font-size:.8rem;color:#888}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#666}dd{margin:0;font-weight:600;word-break:break-word}
button{font:inherit;padding:.5rem 1.2rem;margin-top:1rem;cursor:pointer}</style></head>
<body><h1>${escapeHtml(page.title)}</h1><p>${escapeHtml(page.message)}</p>${facts}${form}<footer>Tokenkeeper</footer></body></html>
`;
}

export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}
