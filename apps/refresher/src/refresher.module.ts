import { type DynamicModule, Inject, Logger, Module, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { connectNats, drainBounded } from '@tokenkeeper/nats';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ensureDatabase, openWithMigrations } from '@tokenkeeper/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { EventSigner, SignatureVerifier } from '@tokenkeeper/contracts';
import { AuditStreamService } from './audit/audit-stream.service.js';
import { OutboxRelay } from './audit/outbox-relay.service.js';
import { APP_CONFIG, type AppConfig } from './config/app-config.js';
import { EncryptionKeyCheck } from './persistence/encryption-key-check.service.js';
import { createTokenCipher } from './crypto/encryption-keys.provider.js';
import { createEventSigner, createSignatureVerifier } from './crypto/event-signing-key.provider.js';
import { Clock } from './domain/clock.js';
import { ReplyCache } from './events/reply-cache.js';
import { TokenChangeNotifier } from './events/token-change.notifier.js';
import { TokenEventListener } from './events/token-event.listener.js';
import { OwnEvents } from './events/own-events.js';
import { TokenEventPublisher } from './events/token-event.publisher.js';
import { TokenCipher } from './crypto/token-cipher.js';
import { NATS_CONNECTION } from './nats/nats-connection.js';
import { CredentialEntity } from './persistence/credential.entity.js';
import { CredentialMapper } from './persistence/credential.mapper.js';
import { CredentialStatsRepository } from './persistence/credential-stats.repository.js';
import { DatabaseStatusRepository } from './persistence/database-status.repository.js';
import { OutboxRepository } from './persistence/outbox.repository.js';
import { CredentialRepository } from './persistence/credential.repository.js';
import { EncryptionKeyRepository } from './persistence/encryption-key.repository.js';
import { InitialSchema1764100000000 } from './persistence/migrations/1764100000000-initial-schema.js';
import { EncryptionKeys1764500000000 } from './persistence/migrations/1764500000000-encryption-keys.js';
import { OutboxRecordId1764700000000 } from './persistence/migrations/1764700000000-outbox-record-id.js';
import { ConnectAdminController } from './connect/connect-admin.controller.js';
import { ConnectController } from './connect/connect.controller.js';
import { ConnectService } from './connect/connect.service.js';
import { ConnectLinkService } from './connect/connect-link.service.js';
import { ConnectLinkSigner } from './connect/connect-link.signer.js';
import { ConnectSessionRepository } from './persistence/connect-session.repository.js';
import { ConnectSessions1764900000000 } from './persistence/migrations/1764900000000-connect-sessions.js';
import { RefreshTokenExpiry1765100000000 } from './persistence/migrations/1765100000000-refresh-token-expiry.js';
import { CredentialFields1765300000000 } from './persistence/migrations/1765300000000-credential-fields.js';
import { OutboxEntity } from './persistence/outbox.entity.js';
import { GracefulShutdown } from './lifecycle/graceful-shutdown.service.js';
import { HealthController } from './observability/health.controller.js';
import { NatsStatusMonitor } from './observability/nats-status.monitor.js';
import { OpsMetrics } from './observability/ops-metrics.js';
import { ReadinessService } from './observability/readiness.service.js';
import { ProviderRegistry } from './providers/provider.registry.js';
import { ProviderRevocation } from './providers/provider-revocation.client.js';
import type { ProviderConfig, TokenEndpoint } from './providers/provider.types.js';
import { TOKEN_ENDPOINT } from './providers/provider.tokens.js';
import { loadProvidersFile } from './providers/providers-file.loader.js';
import { UndiciTokenEndpoint } from './providers/token-endpoint.client.js';
import { TokenEndpointLifecycle } from './providers/token-endpoint.lifecycle.js';
import { ReencryptionService } from './refresh/reencryption.service.js';
import { RefreshCoordinator } from './refresh/refresh-coordinator.service.js';
import { RefreshMetrics } from './metrics/refresh.metrics.js';
import { RefreshScheduler } from './refresh/refresh.scheduler.js';
import { WithdrawnTenantsSweep } from './refresh/withdrawn-tenants.sweep.js';
import { RefreshService } from './refresh/refresh.service.js';
import { CredentialListPager } from './tokens/credential-list.pager.js';
import { TokenController } from './tokens/token.controller.js';
import { TokenService } from './tokens/token.service.js';
import { Webhooks1765200000000 } from './persistence/migrations/1765200000000-webhooks.js';
import { WebhookRepository } from './persistence/webhook.repository.js';
import { WebhookAdminController } from './webhooks/webhook-admin.controller.js';
import { WebhookAdminService } from './webhooks/webhook-admin.service.js';
import { WebhookDeliveryClient } from './webhooks/webhook-delivery.client.js';
import { WebhookDispatcher } from './webhooks/webhook-dispatcher.service.js';

export const MIGRATIONS = [
  InitialSchema1764100000000,
  EncryptionKeys1764500000000,
  OutboxRecordId1764700000000,
  ConnectSessions1764900000000,
  RefreshTokenExpiry1765100000000,
  Webhooks1765200000000,
  CredentialFields1765300000000,
];
export const ENTITIES = [CredentialEntity, OutboxEntity];

export interface RefresherModuleOptions {
  config: AppConfig;
  /** Instead of reading PROVIDERS_FILE (tests, embedding). */
  providers?: ReadonlyMap<string, ProviderConfig>;
}

/**
 * Drains the NATS connection last, after handlers and the scheduler have stopped (see
 * GracefulShutdown for the whole order). Bounded: while disconnected a drain would wait
 * for the server forever.
 */
class NatsLifecycle implements OnApplicationShutdown {
  constructor(@Inject(NATS_CONNECTION) private readonly nc: NatsConnection) {}
  async onApplicationShutdown(): Promise<void> {
    await drainBounded(this.nc);
  }
}

/** PostgreSQL through TypeORM: migrations under a lock shared by all replicas, timeouts on both sides. */
function databaseModule(config: AppConfig): DynamicModule {
  return TypeOrmModule.forRootAsync({
    dataSourceFactory: async (options) => openWithMigrations(options!, 'tokenkeeper-refresher-migrations'),
    useFactory: async () => {
      await ensureDatabase(config.database.url);
      return {
        type: 'postgres' as const,
        url: config.database.url,
        entities: ENTITIES,
        migrations: MIGRATIONS,
        // Applied by openWithMigrations, under a lock shared by all replicas.
        migrationsRun: false,
        synchronize: false,
        poolSize: config.database.poolSize,
        retryAttempts: config.env === 'test' ? 1 : 10,
        retryDelay: 1_000,
        extra: {
          application_name: `tokenkeeper-refresher ${config.replicaId}`,
          connectionTimeoutMillis: config.database.connectTimeoutMs,
          statement_timeout: config.database.statementTimeoutMs,
          idle_in_transaction_session_timeout: config.database.idleInTransactionTimeoutMs,
          // Client side too: a server that stopped answering cannot enforce its own timeout.
          query_timeout: config.database.statementTimeoutMs + 2_000,
          keepAlive: true,
        },
      };
    },
  });
}

/** The configuration, and the token cipher with the row mapping that uses it. */
function configAndCipher(config: AppConfig, logger: Logger): Provider[] {
  return [
    { provide: APP_CONFIG, useValue: config },
    { provide: TokenCipher, useFactory: () => createTokenCipher(config, (message) => logger.log(message)) },
    {
      provide: CredentialMapper,
      useFactory: (cipher: TokenCipher) => new CredentialMapper(cipher),
      inject: [TokenCipher],
    },
  ];
}

/** The providers file and the HTTP side of the OAuth providers: token endpoint, revocation. */
function oauthProviders(config: AppConfig, providers?: ReadonlyMap<string, ProviderConfig>): Provider[] {
  return [
    {
      provide: ProviderRegistry,
      useFactory: () => new ProviderRegistry(providers ?? loadProvidersFile(config.providersFile, config.providersEnv)),
    },
    {
      provide: TOKEN_ENDPOINT,
      useFactory: (clock: Clock): TokenEndpoint =>
        new UndiciTokenEndpoint({ timeoutMs: config.refresh.requestTimeoutMs, now: () => clock.now() }),
      inject: [Clock],
    },
    TokenEndpointLifecycle,
    ProviderRevocation,
  ];
}

/** The NATS connection, the signing keys of replies and events, and the signed reply cache. */
function natsProviders(config: AppConfig, logger: Logger): Provider[] {
  return [
    {
      provide: NATS_CONNECTION,
      useFactory: () => connectNats(config.nats, `tokenkeeper-refresher ${config.replicaId}`),
    },
    { provide: EventSigner, useFactory: () => createEventSigner(config, (message) => logger.log(message)) },
    {
      provide: SignatureVerifier,
      useFactory: (signer: EventSigner) => createSignatureVerifier(config, signer),
      inject: [EventSigner],
    },
    {
      provide: ReplyCache,
      useFactory: (signer: EventSigner, clock: Clock) =>
        new ReplyCache(config.tokenCacheMaxEntries, signer, {
          clock: () => clock.now(),
          maxAgeSeconds: config.signing.maxAgeSeconds,
        }),
      inject: [EventSigner, Clock],
    },
    NatsLifecycle,
  ];
}

/** The clock, the refresh metrics, and the credential storage with its start-up key check. */
function storageProviders(): Provider[] {
  return [
    Clock,
    RefreshMetrics,
    CredentialRepository,
    EncryptionKeyRepository,
    {
      provide: EncryptionKeyCheck,
      useFactory: EncryptionKeyCheck.run,
      inject: [TokenCipher, EncryptionKeyRepository],
    },
  ];
}

/** Where committed changes go (cache, signed events), and the listener for other replicas' events. */
function eventProviders(): Provider[] {
  return [OwnEvents, TokenEventPublisher, TokenChangeNotifier, TokenEventListener];
}

/** The refresh engine: one refresh, on-demand single flight, the scheduler, the sweeps. */
function refreshProviders(): Provider[] {
  return [RefreshService, RefreshCoordinator, RefreshScheduler, WithdrawnTenantsSweep, ReencryptionService];
}

/** The token API's request handling and list paging. */
function tokenProviders(): Provider[] {
  return [TokenService, CredentialListPager];
}

/** The browser connect flow: its sessions and its signed one-time links. */
function connectProviders(): Provider[] {
  return [
    ConnectSessionRepository,
    ConnectService,
    ConnectLinkService,
    {
      provide: ConnectLinkSigner,
      useFactory: (cipher: TokenCipher) => new ConnectLinkSigner(cipher),
      inject: [TokenCipher],
    },
  ];
}

/** The audit stream and outbox relay, health and metrics, and the shutdown order. */
function operationsProviders(): Provider[] {
  return [
    AuditStreamService,
    OutboxRepository,
    OutboxRelay,
    CredentialStatsRepository,
    DatabaseStatusRepository,
    NatsStatusMonitor,
    ReadinessService,
    OpsMetrics,
    GracefulShutdown,
  ];
}

/** Webhook endpoints: their storage, admin handlers, the guarded HTTP client and the delivery loop. */
function webhookProviders(config: AppConfig): Provider[] {
  return [
    WebhookRepository,
    WebhookAdminService,
    {
      provide: WebhookDeliveryClient,
      useFactory: (clock: Clock) =>
        new WebhookDeliveryClient({
          allowedNetworks: config.webhooks.allowedNetworks,
          timeoutMs: config.webhooks.timeoutMs,
          maxResponseBytes: config.webhooks.maxResponseBytes,
          now: () => clock.now(),
        }),
      inject: [Clock],
    },
    WebhookDispatcher,
  ];
}

@Module({})
export class RefresherModule {
  /**
   * The providers in groups; Nest calls the lifecycle hooks of one module in the order its
   * providers are listed, so the groups keep the order GracefulShutdown relies on.
   */
  static forRoot({ config, providers }: RefresherModuleOptions): DynamicModule {
    const logger = new Logger('Refresher');
    return {
      module: RefresherModule,
      imports: [databaseModule(config)],
      controllers: [
        TokenController,
        ConnectAdminController,
        ConnectController,
        HealthController,
        WebhookAdminController,
      ],
      providers: [
        ...configAndCipher(config, logger),
        ...oauthProviders(config, providers),
        ...natsProviders(config, logger),
        ...storageProviders(),
        ...eventProviders(),
        ...refreshProviders(),
        ...tokenProviders(),
        ...connectProviders(),
        ...operationsProviders(),
        ...webhookProviders(config),
      ],
      exports: [APP_CONFIG, NATS_CONNECTION, RefreshMetrics, TokenService, RefreshScheduler],
    };
  }
}
