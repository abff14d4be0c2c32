import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { AppConfig } from '../config/app-config.js';

export const NATS_CONNECTION = Symbol('NATS_CONNECTION');

/** Connection options from the validated configuration; reconnects forever, like a service should. */
export function natsOptions(config: AppConfig['nats'], name: string): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: config.servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    // Async stack traces cost half the client CPU of a request; the refresher does not need them.
    noAsyncTraces: true,
  };
  switch (config.auth.kind) {
    case 'userpass':
      options.user = config.auth.user;
      options.pass = config.auth.pass;
      break;
    case 'token':
      options.token = config.auth.token;
      break;
    case 'creds': {
      const file = config.auth.file;
      options.authenticator = credsAuthenticator(() => readFileSync(file));
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

export function connectNats(config: AppConfig['nats'], name: string): Promise<NatsConnection> {
  return connect(natsOptions(config, name));
}
