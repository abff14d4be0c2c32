import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { TOKEN_ENDPOINT } from './provider.tokens.js';
import type { TokenEndpoint } from './provider.types.js';

/**
 * Closes the token endpoint's connection pool at shutdown. onApplicationShutdown runs after
 * GracefulShutdown (beforeApplicationShutdown) has drained the refresh work, so no token
 * request is cut off by it.
 */
@Injectable()
export class TokenEndpointLifecycle implements OnApplicationShutdown {
  constructor(@Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint) {}

  async onApplicationShutdown(): Promise<void> {
    await this.endpoint.close();
  }
}
