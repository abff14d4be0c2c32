export * from './database.harness.js';
export * from './nats-cluster.harness.js';
export * from './nats-server.harness.js';
export * from './sandbox-provider.js';
export * from './wait.js';
export * from './tcp-proxy.js';
export * from './oidc-provider.harness.js';
export * from './browser.harness.js';
