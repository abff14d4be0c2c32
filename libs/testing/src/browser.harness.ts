import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium (apt `chromium`); playwright never downloads a browser here. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Where a navigation ended: the URL, the HTTP status of its document and its visible text. */
export interface PageResult {
  url: string;
  status: number | undefined;
  text: string;
}

/**
 * A headless Debian chromium through playwright-core, with a fresh profile (temporary
 * user-data-dir, removed on close): no cookies or sessions leak between harnesses.
 */
export class BrowserHarness {
  private constructor(
    private readonly context: BrowserContext,
    private readonly userDataDir: string,
  ) {}

  static async launch(): Promise<BrowserHarness> {
    const userDataDir = await mkdtemp(join(tmpdir(), 'tk-chromium-'));
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    return new BrowserHarness(context, userDataDir);
  }

  /** A new tab on `url`, after its redirects. */
  async open(url: string): Promise<BrowserTab> {
    const tab = new BrowserTab(await this.context.newPage());
    await tab.goto(url);
    return tab;
  }

  async close(): Promise<void> {
    await this.context.close();
    await rm(this.userDataDir, { recursive: true, force: true });
  }
}

export class BrowserTab {
  private lastStatus: number | undefined;

  constructor(readonly page: Page) {
    // The status of the document the tab shows: the last main-frame navigation response.
    page.on('response', (response) => {
      if (response.request().isNavigationRequest() && response.frame() === page.mainFrame())
        this.lastStatus = response.status();
    });
  }

  async goto(url: string): Promise<PageResult> {
    await this.page.goto(url, { waitUntil: 'load' });
    return this.result();
  }

  /** Presses the button of Tokenkeeper's connect page and waits for where it leads (the provider). */
  pressConnect(): Promise<PageResult> {
    return this.submitAndWait(() => this.page.click('form[method=post] button:has-text("Continue to")'));
  }

  /** Fills oidc-provider's login form (devInteractions) and submits it. */
  async login(login: string, password: string): Promise<PageResult> {
    await this.page.fill('input[name=login]', login);
    await this.page.fill('input[name=password]', password);
    return this.submitAndWait(() => this.page.click('button[type=submit]'));
  }

  /** Consents ("Continue") and waits for where the provider sends the browser. */
  consent(): Promise<PageResult> {
    return this.submitAndWait(() => this.page.click('button:has-text("Continue")'));
  }

  /** Refuses ("[ Cancel ]": oidc-provider answers `error=access_denied`). */
  deny(): Promise<PageResult> {
    return this.submitAndWait(() => this.page.click('a:has-text("Cancel")'));
  }

  /** Logs in (when the provider asks) and consents (when it asks): the end of the flow. */
  async loginAndConsent(login: string, password: string): Promise<PageResult> {
    if (await this.page.locator('input[name=login]').count()) await this.login(login, password);
    if (await this.page.locator('button:has-text("Continue")').count()) return this.consent();
    return this.result();
  }

  async result(): Promise<PageResult> {
    return { url: this.page.url(), status: this.lastStatus, text: await this.page.innerText('body').catch(() => '') };
  }

  async screenshot(path: string): Promise<void> {
    await this.page.screenshot({ path, fullPage: true });
  }

  private async submitAndWait(act: () => Promise<void>): Promise<PageResult> {
    // One navigation, whatever its redirects (and also when it lands on the same URL, as a
    // refused login does).
    await Promise.all([this.page.waitForNavigation({ waitUntil: 'load' }), act()]);
    return this.result();
  }
}

export function launchBrowser(): Promise<BrowserHarness> {
  return BrowserHarness.launch();
}
