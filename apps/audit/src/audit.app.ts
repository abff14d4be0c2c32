import 'reflect-metadata';
import type { INestMicroservice, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AUDIT_QUEUE_GROUP } from '@tokenkeeper/contracts';
import { connectNats, NatsRpcServer, PassThroughRpcExceptionFilter, rpcDropCounter } from '@tokenkeeper/nats';
import { AuditMetrics } from './audit.metrics.js';
import { AuditModule } from './audit.module.js';
import type { AuditConfig } from './config/audit-config.js';

export interface AuditAppOptions {
  config: AuditConfig;
  logger: LoggerService | false;
}

/**
 * Builds and starts the audit app: the durable JetStream consumer that stores records,
 * and `audit.query` on the same lean NATS transport as the refresher (queue group
 * `audit`, plain-JSON replies). Used by main.ts, the demo and tests.
 */
export async function startAudit(options: AuditAppOptions): Promise<INestMicroservice> {
  const nc = await connectNats(options.config.nats, `tokenkeeper-audit ${options.config.replicaId}`);
  const metrics = new AuditMetrics();
  try {
    const app = await NestFactory.createMicroservice(AuditModule.forRoot({ config: options.config, nc, metrics }), {
      strategy: new NatsRpcServer(nc, {
        queue: AUDIT_QUEUE_GROUP,
        replySubjectPrefixes: options.config.replySubjectPrefixes,
        ownInboxPrefix: options.config.nats.inboxPrefix,
        onDrop: rpcDropCounter(metrics.registry),
      }),
      logger: options.logger,
      abortOnError: false,
      bufferLogs: false,
    });
    app.useGlobalFilters(new PassThroughRpcExceptionFilter());
    await app.listen();
    return app;
  } catch (error) {
    await nc.close().catch(() => undefined);
    throw error;
  }
}
