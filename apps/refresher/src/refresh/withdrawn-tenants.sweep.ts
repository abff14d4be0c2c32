import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { tenantRefusal } from '../providers/tenant-access.policy.js';

/**
 * At start, applies a changed providers file's `tenants` to stored credentials at once
 * instead of at each credential's next scheduled refresh (hours away for a long-lived token):
 * - a credential whose provider no longer allows its tenant is made due now; its refresh
 *   records the refusal (`failing`, `forbidden`, no request) and publishes `token.failed`,
 *   on which client caches stop serving the token;
 * - one marked `forbidden` whose tenant is allowed again is made due now, and refreshes.
 * Every replica may run it: it only moves `next_refresh_at` to now, and skips what is done.
 */
@Injectable()
export class WithdrawnTenantsSweep implements OnApplicationBootstrap {
  private readonly logger = new Logger(WithdrawnTenantsSweep.name);

  constructor(
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
  ) {}

  onApplicationBootstrap(): void {
    // In the background: a scan of the credentials must not hold up the start.
    void this.run().catch((error: unknown) => {
      this.logger.warn({
        msg: 'applying tenants to stored credentials at start failed; each is checked at its next refresh',
        error: error instanceof Error ? error.message : typeof error,
      });
    });
  }

  /** How many credentials were made due. */
  async run(): Promise<number> {
    const restricting = this.providers.all().filter((p) => p.tenants !== undefined || p.grant === 'client_credentials');
    const pairs = await this.repository.tenantsToCheck(restricting.map((p) => p.id));
    // provider → marked? → tenants whose state does not match the file
    const changes = new Map<string, { refused: string[]; allowed: string[] }>();
    for (const { provider, tenant, marked } of pairs) {
      const config = this.providers.get(provider);
      // A provider gone from the file is refused as unknown_provider at its refresh.
      if (!config) continue;
      const refused = tenantRefusal(config, tenant) !== undefined;
      if (refused === marked) continue;
      const change = changes.get(provider) ?? { refused: [], allowed: [] };
      (refused ? change.refused : change.allowed).push(tenant);
      changes.set(provider, change);
    }
    let due = 0;
    for (const [provider, { refused, allowed }] of changes) {
      const withdrawn = refused.length ? await this.repository.makeDueNow(provider, refused, false) : 0;
      const restored = allowed.length ? await this.repository.makeDueNow(provider, allowed, true) : 0;
      due += withdrawn + restored;
      if (withdrawn + restored > 0) {
        this.logger.warn({
          msg: 'the providers file changed which tenants may use a provider; their credentials are checked now',
          provider,
          withdrawn,
          restored,
        });
      }
    }
    return due;
  }
}
