import { TokenClient } from '@tokenkeeper/client';
import type { CredentialKey } from '@tokenkeeper/contracts';
import type { DemoLog } from './demo-log.js';

export interface ConsumerSummary {
  name: string;
  calls: number;
  failed: number;
  retriedAfter401: number;
  versionsSeen: number[];
  fromCache: number;
  fetched: number;
  pushedUpdates: number;
}

/** A service calling the provider's protected API about once a second through the client. */
export class DemoConsumer {
  private readonly client: TokenClient;
  private timer?: NodeJS.Timeout;
  private calls = 0;
  private failed = 0;
  private retried = 0;
  private readonly versions: number[] = [];
  private inFlight?: Promise<void>;

  constructor(
    readonly name: string,
    natsUrl: string,
    private readonly key: CredentialKey,
    private readonly apiUrl: string,
    private readonly log: DemoLog,
  ) {
    // Demo tokens live 20 s, so a cached one is used while it has 5 s left.
    this.client = new TokenClient({ servers: natsUrl, subscribe: [key], defaultMinTtlSeconds: 5 });
  }

  async start(periodMs: number): Promise<void> {
    await this.client.start();
    const tick = () => {
      this.inFlight = this.callOnce().finally(() => {
        this.inFlight = undefined;
      });
      this.timer = setTimeout(tick, periodMs);
    };
    tick();
  }

  private async callOnce(): Promise<void> {
    this.calls++;
    const before = this.client.stats;
    try {
      const res = await this.client.fetch(this.apiUrl, { method: 'GET' }, this.key);
      await res.text();
      const after = this.client.stats;
      const source = after.fallbacks > before.fallbacks ? 'token.get' : 'cache';
      if (!this.versions.includes(res.tokenVersion)) {
        this.versions.push(res.tokenVersion);
        this.log.line(this.name, `now using token v${res.tokenVersion} (${source === 'cache' ? 'pushed by the refresher' : 'asked token.get'})`);
      }
      if (res.retried) {
        this.retried++;
        this.log.line(this.name, `API said 401 for the old token; reported it, got v${res.tokenVersion}, retried: ${res.status}`);
      }
      if (!res.ok) {
        this.failed++;
        this.log.line(this.name, `API call #${this.calls} FAILED: HTTP ${res.status}`);
      } else if (this.calls % 10 === 1) {
        this.log.line(this.name, `API call #${this.calls} → ${res.status} with token v${res.tokenVersion} from ${source}`);
      }
    } catch (error) {
      this.failed++;
      this.log.line(this.name, `API call #${this.calls} FAILED: ${(error as Error).message}`);
    }
  }

  async stop(): Promise<ConsumerSummary> {
    clearTimeout(this.timer);
    await this.inFlight;
    const stats = this.client.stats;
    await this.client.close();
    return {
      name: this.name,
      calls: this.calls,
      failed: this.failed,
      retriedAfter401: this.retried,
      versionsSeen: this.versions,
      fromCache: stats.hits,
      fetched: stats.fallbacks,
      pushedUpdates: stats.pushedUpdates,
    };
  }
}
