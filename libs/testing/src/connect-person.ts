import { request } from 'undici';

/** One HTTP answer as a person's browser would see it: status, redirect target, body, cookies set. */
export interface PersonStep {
  status: number;
  location?: string;
  text: string;
  setCookies: string[];
  headers: Record<string, string | string[] | undefined>;
}

/**
 * A person's browser played over plain HTTP for the connect flow: it keeps the cookies the
 * refresher sets (by name, as a browser keeps host-only cookies for one host), opens the
 * link's page, presses its button (a form POST with the page's hidden token and the Origin a
 * browser sends), and walks the redirects by hand. A second instance is another browser.
 */
export class ConnectPerson {
  readonly cookies = new Map<string, string>();

  /** A cookie this browser holds already (another flow's, or a forged one). */
  withCookie(name: string, value: string): this {
    this.cookies.set(name, value);
    return this;
  }

  async get(url: string): Promise<PersonStep> {
    return this.send(url, { method: 'GET' });
  }

  /** The link's page: its status and text, and the form token of its button (when it has one). */
  async openLink(link: string): Promise<PersonStep & { formToken?: string }> {
    const page = await this.get(link);
    return { ...page, formToken: /name="form_token" value="([^"]+)"/.exec(page.text)?.[1] };
  }

  /** The button: a POST of the page's form to the link. `formToken` and `headers` can be overridden to play a forgery. */
  async press(
    link: string,
    formToken: string | undefined,
    headers: Record<string, string> = { origin: new URL(link).origin, 'sec-fetch-site': 'same-origin' },
  ): Promise<PersonStep> {
    const body = formToken === undefined ? '' : new URLSearchParams({ form_token: formToken }).toString();
    return this.send(link, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body,
    });
  }

  /** Page, then button: the provider's authorization URL the browser is sent to. */
  async startAt(link: string): Promise<string> {
    const page = await this.openLink(link);
    if (page.status !== 200 || !page.formToken)
      throw new Error(`the connect page answered ${page.status} without a button`);
    const pressed = await this.press(link, page.formToken);
    if (pressed.status !== 303 || !pressed.location)
      throw new Error(`the button answered ${pressed.status}: ${pressed.text}`);
    return pressed.location;
  }

  async postForm(url: string, form: Record<string, string>): Promise<PersonStep> {
    return this.send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  private async send(
    url: string,
    options: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string },
  ): Promise<PersonStep> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const res = await request(url, { ...options, headers: { ...options.headers, ...(cookie ? { cookie } : {}) } });
    const text = await res.body.text();
    const raw = res.headers['set-cookie'];
    const setCookies = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    for (const line of setCookies) this.keep(line);
    return {
      status: res.statusCode,
      location: res.headers.location === undefined ? undefined : String(res.headers.location),
      text,
      setCookies,
      headers: res.headers,
    };
  }

  private keep(line: string): void {
    const [pair, ...attributes] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
    if (expired) this.cookies.delete(name);
    else this.cookies.set(name, value);
  }
}
