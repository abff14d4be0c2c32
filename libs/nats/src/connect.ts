/**
 * `@tokenkeeper/nats/connect`: the NATS_* settings, connection options and URL helpers,
 * without the Nest transport, its error mapping and the metric (@nestjs/microservices and
 * prom-client, about 0.3 s to load). What tokenctl needs to connect; the barrel re-exports it.
 */
export * from './nats-config.js';
export * from './nats-connection.js';
export * from './nats-url.js';
