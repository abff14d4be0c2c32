export * from './database.harness.js';
export * from './nats-cluster.harness.js';
export * from './nats-server.harness.js';
export * from './sandbox-provider.js';
export * from './wait.js';
export * from './tcp-proxy.js';
export * from './nats-errors.js';
// oidc-provider.harness.ts and browser.harness.ts are imported by path: they load oidc-provider
// and playwright, which the other tests do not need.
export * from './connect-person.js';
