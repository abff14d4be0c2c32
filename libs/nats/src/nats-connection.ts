import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { settleWithin } from '@tokenkeeper/common/core';
import type { NatsConfig } from './nats-config.js';

/**
 * Connection options from the validated configuration, for every app. The default is a
 * service's: reconnect forever, wait for the first connect. `overrides` lets a short-lived
 * tool (tokenctl) bound its retries and connect timeout.
 */
export function natsConnectionOptions(
  config: NatsConfig,
  name: string,
  overrides: Partial<NodeConnectionOptions> = {},
): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: config.servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    // Async stack traces cost half the client CPU of a request; none of the apps needs them.
    noAsyncTraces: true,
    ...(config.inboxPrefix ? { inboxPrefix: config.inboxPrefix } : {}),
    ...overrides,
  };
  const auth = config.auth;
  switch (auth.kind) {
    case 'userpass':
      options.user = auth.user;
      options.pass = auth.pass.reveal();
      break;
    case 'token':
      options.token = auth.token.reveal();
      break;
    case 'creds':
      // Read at every (re)connect, so a rotated creds file is picked up.
      options.authenticator = credsAuthenticator(() => readFileSync(auth.file));
      break;
    case 'nkey': {
      const seed = new TextEncoder().encode(auth.seed.reveal());
      options.authenticator = nkeyAuthenticator(() => seed);
      break;
    }
  }
  if (config.tls) {
    options.tls = {
      ...(config.tls.caFile ? { caFile: config.tls.caFile } : {}),
      ...(config.tls.certFile ? { certFile: config.tls.certFile, keyFile: config.tls.keyFile } : {}),
    };
  }
  return options;
}

export function connectNats(
  config: NatsConfig,
  name: string,
  overrides?: Partial<NodeConnectionOptions>,
): Promise<NatsConnection> {
  return connect(natsConnectionOptions(config, name, overrides));
}

/** What a drain at shutdown may take by default. */
export const NATS_DRAIN_MS = 5_000;

/**
 * Drains the connection (subscriptions finish what they hold, pending publishes are
 * flushed), then closes it. Bounded: while disconnected a drain would wait for the server
 * forever. Resolves to false when the bound cut it short.
 */
export async function drainBounded(nc: NatsConnection, ms: number = NATS_DRAIN_MS): Promise<boolean> {
  if (nc.isClosed()) return true;
  const drained = await settleWithin(nc.drain(), ms);
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
  return drained;
}
