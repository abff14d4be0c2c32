import { type DynamicModule, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ensureDatabase, openWithMigrations } from '@tokenkeeper/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { AuditMetrics } from './audit.metrics.js';
import { AUDIT_CONFIG, type AuditConfig } from './config/audit-config.js';
import { AuditConsumer } from './consumer/audit-consumer.service.js';
import { AuditMonitoring } from './monitoring/audit-monitoring.service.js';
import { AUDIT_NATS_CONNECTION, AuditNatsLifecycle } from './nats.js';
import { AuditRecordEntity } from './persistence/audit-record.entity.js';
import { AuditRecordRepository } from './persistence/audit-record.repository.js';
import { AuditRecords1764200000000 } from './persistence/migrations/1764200000000-audit-records.js';
import { AuditDeadLetters1764600000000 } from './persistence/migrations/1764600000000-audit-dead-letters.js';
import { AuditRecordId1764700000000 } from './persistence/migrations/1764700000000-audit-record-id.js';
import { AuditRetention } from './retention/audit-retention.service.js';
import { AuditQueryController } from './query/audit-query.controller.js';

export const AUDIT_MIGRATIONS = [AuditRecords1764200000000, AuditDeadLetters1764600000000, AuditRecordId1764700000000];
export const AUDIT_ENTITIES = [AuditRecordEntity];

export interface AuditModuleOptions {
  config: AuditConfig;
  nc: NatsConnection;
  metrics?: AuditMetrics;
}

@Module({})
export class AuditModule {
  static forRoot({ config, nc, metrics = new AuditMetrics() }: AuditModuleOptions): DynamicModule {
    return {
      module: AuditModule,
      imports: [
        TypeOrmModule.forRootAsync({
          dataSourceFactory: async (options) => openWithMigrations(options!, 'tokenkeeper-audit-migrations'),
          useFactory: async () => {
            await ensureDatabase(config.database.url);
            return {
              type: 'postgres' as const,
              url: config.database.url,
              entities: AUDIT_ENTITIES,
              migrations: AUDIT_MIGRATIONS,
              // Applied by openWithMigrations, under a lock shared by all replicas.
              migrationsRun: false,
              synchronize: false,
              poolSize: config.database.poolSize,
              retryAttempts: config.env === 'test' ? 1 : 10,
              retryDelay: 1_000,
              extra: { application_name: `tokenkeeper-audit ${config.replicaId}`.slice(0, 63) },
            };
          },
        }),
      ],
      controllers: [AuditQueryController],
      providers: [
        { provide: AUDIT_CONFIG, useValue: config },
        { provide: AUDIT_NATS_CONNECTION, useValue: nc },
        { provide: AuditMetrics, useValue: metrics },
        AuditNatsLifecycle,
        AuditRecordRepository,
        AuditConsumer,
        AuditRetention,
        AuditMonitoring,
      ],
      exports: [AUDIT_CONFIG, AuditMetrics, AuditRecordRepository, AuditConsumer, AuditRetention, AuditMonitoring],
    };
  }
}
