import { Inject, Injectable, Logger } from '@nestjs/common';
import { bindProvider } from './url-placeholders.policy.js';
import type { Credential } from '../domain/credential.js';
import { ProviderRegistry } from './provider.registry.js';
import { TOKEN_ENDPOINT } from './provider.tokens.js';
import type { TokenEndpoint } from './provider.types.js';

/**
 * RFC 7009 revocation of a credential's tokens at its provider (`tokenkeeper.admin.revoke`),
 * over the token endpoint adapter's HTTP client. Best effort: the credential is already
 * revoked here whatever the provider says.
 */
@Injectable()
export class ProviderRevocation {
  private readonly logger = new Logger(ProviderRevocation.name);

  constructor(
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
  ) {}

  /** True when the provider has a revocation endpoint and accepted every token sent to it. */
  async revokeTokensOf(credential: Credential): Promise<boolean> {
    const configured = this.providers.get(credential.provider);
    if (!configured?.revocationUrl) return false;
    try {
      const provider = bindProvider(configured, credential.connectionConfig);
      if (credential.refreshToken) await this.endpoint.revoke(provider, credential.refreshToken, 'refresh_token');
      if (credential.accessToken) await this.endpoint.revoke(provider, credential.accessToken, 'access_token');
      return true;
    } catch (error) {
      this.logger.warn({ msg: 'provider revocation failed', provider: configured.id, error: (error as Error).message });
      return false;
    }
  }
}
