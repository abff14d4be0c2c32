export * from './nats-config.js';
export * from './fixed-headers.js';
export * from './nats-connection.js';
export * from './nats-rpc.server.js';
export * from './nats-url.js';
export * from './rpc-drop.metric.js';
export * from './rpc-error.mapper.js';
export * from './rpc-exception.filter.js';
