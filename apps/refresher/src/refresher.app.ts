import 'reflect-metadata';
import type { INestApplication, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createServer, type RequestListener } from 'node:http';
import { splitByPort } from './connect/public-port.middleware.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { AppConfig } from './config/app-config.js';
import { GracefulShutdown } from './lifecycle/graceful-shutdown.service.js';
import { NATS_CONNECTION } from './nats/nats-connection.js';
import { NatsRpcServer, PassThroughRpcExceptionFilter, rpcDropCounter } from '@tokenkeeper/nats';
import { RefreshMetrics } from './metrics/refresh.metrics.js';
import type { ProviderConfig } from './providers/provider.types.js';
import { RefresherModule } from './refresher.module.js';
import { TokenController } from './tokens/token.controller.js';
import { WireSubscription } from '@tokenkeeper/contracts';

/** The connect pages' own port: the same express app on a second server, closed with the app. */
async function listenPublic(app: INestApplication, port: number): Promise<void> {
  const server = createServer(app.getHttpAdapter().getInstance() as RequestListener);
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '0.0.0.0', () => resolve()));
  app.get(GracefulShutdown).stopRequestsWith(async () => {
    server.closeIdleConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

export interface RefresherAppOptions {
  config: AppConfig;
  logger: LoggerService | false;
  providers?: ReadonlyMap<string, ProviderConfig>;
}

/**
 * Builds and starts a refresher: HTTP (health, metrics) on HTTP_PORT and the NATS
 * request-reply handlers on the lean transport. Used by main.ts, the demo and tests.
 */
export async function startRefresher(options: RefresherAppOptions): Promise<INestApplication> {
  const app = await NestFactory.create(RefresherModule.forRoot(options), {
    logger: options.logger,
    abortOnError: false,
    bufferLogs: false,
  });
  app.useGlobalFilters(new PassThroughRpcExceptionFilter());
  const nc = app.get<NatsConnection>(NATS_CONNECTION);
  // token.get skips Nest's per-request pipeline; guards, interceptors and pipes do not apply to it.
  const tokens = app.get(TokenController);
  const rpc = new NatsRpcServer(nc, {
    direct: { [WireSubscription.tokenGet]: (data, subject) => tokens.getDirect(data, subject) },
    replySubjectPrefixes: options.config.replySubjectPrefixes,
    ownInboxPrefix: options.config.nats.inboxPrefix,
    onDrop: rpcDropCounter(app.get(RefreshMetrics).registry),
  });
  app.connectMicroservice({ strategy: rpc }, { inheritAppConfig: true });
  // At shutdown the request-reply subscriptions go first, before the refresh work drains.
  app.get(GracefulShutdown).stopRequestsWith(() => rpc.close());
  await app.startAllMicroservices();
  const publicPort = options.config.connect.publicHttpPort;
  if (publicPort !== undefined) app.use(splitByPort(publicPort));
  await app.listen(options.config.httpPort, '0.0.0.0');
  if (publicPort !== undefined) await listenPublic(app, publicPort);
  return app;
}
