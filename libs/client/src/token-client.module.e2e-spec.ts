import 'reflect-metadata';
import { connect } from '@nats-io/transport-node';
import { Inject, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { CredentialKey } from '@tokenkeeper/contracts';
import { type NatsServerHandle, startNatsServer, waitFor } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TOKEN_CLIENT_OPTIONS, TokenClientModule } from './token-client.module.js';
import type { TokenClientOptions } from './token-client.options.js';
import { TokenClient } from './token.client.js';

const NATS_URL = Symbol('NATS_URL');
const quiet = { warn: () => undefined };

@Module({})
class ConfigModule {
  static with(url: string) {
    return { module: ConfigModule, providers: [{ provide: NATS_URL, useValue: url }], exports: [NATS_URL] };
  }
}

/** A consumer that needs a token during its own start-up. */
@Injectable()
class BillingService implements OnModuleInit {
  token?: string;
  constructor(@Inject(TokenClient) private readonly tokens: TokenClient) {}

  async onModuleInit(): Promise<void> {
    this.token = await this.tokens.getAccessToken({ tenant: 'acme', connection: 'stripe' });
  }
}

describe('TokenClientModule', () => {
  let nats: NatsServerHandle;
  let refresher: FakeRefresher;
  const key: CredentialKey = { tenant: 'acme', connection: 'stripe' };

  beforeAll(async () => {
    nats = await startNatsServer();
    refresher = await FakeRefresher.start(nats.url);
    refresher.set(tokenView(key, 1));
  });

  afterAll(async () => {
    await refresher?.close();
    await nats?.stop();
  });

  it('forRoot provides a started client and closes it on shutdown', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TokenClientModule.forRoot({
          servers: nats.url,
          tenants: ['acme'],
          trustedSigners: [refresher.signerPublicKey],
          logger: quiet,
        }),
      ],
      providers: [BillingService],
    }).compile();
    const app = await moduleRef.init();

    expect(app.get(BillingService).token).toBe(tokenView(key, 1).accessToken);
    const client = app.get(TokenClient);
    const v2 = tokenView(key, 2);
    await refresher.publishRefreshed(v2);
    await waitFor(() => client.stats.pushedUpdates === 1, { message: 'event pushed into the Nest-provided client' });
    expect(await client.getAccessToken(key)).toBe(v2.accessToken);

    await app.close();
    await expect(client.getAccessToken(key)).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('forRootAsync builds the options from injected providers and leaves a shared connection open', async () => {
    const nc = await connect({ servers: nats.url });
    const moduleRef = await Test.createTestingModule({
      imports: [
        TokenClientModule.forRootAsync({
          imports: [ConfigModule.with(nats.url)],
          inject: [NATS_URL],
          useFactory: (url: string): TokenClientOptions => {
            expect(url).toBe(nats.url);
            return {
              nc,
              connections: [key],
              trustedSigners: [refresher.signerPublicKey],
              defaultMinTtlSeconds: 10,
              logger: quiet,
            };
          },
          isGlobal: true,
        }),
      ],
    }).compile();
    const app = await moduleRef.init();

    const client = app.get(TokenClient);
    expect(app.get(TOKEN_CLIENT_OPTIONS)).toMatchObject({ defaultMinTtlSeconds: 10, connections: [key] });
    expect(await client.getAccessToken(key)).toMatch(/^at-acme-stripe-v/);

    // Scoped subscription: events of another tenant or connection never reach the cache.
    await refresher.publishRefreshed(tokenView({ tenant: 'globex', connection: 'stripe' }, 1));
    await refresher.publishRefreshed(tokenView({ tenant: 'acme', connection: 'github' }, 1));
    await refresher.publishRefreshed(tokenView(key, 9));
    await waitFor(() => client.stats.pushedUpdates === 1);
    expect(client.size).toBe(1);

    await app.close();
    expect(nc.isClosed()).toBe(false);
    await nc.close();
  });
});
