export * from './database.harness.js';
export * from './free-port.js';
export * from './nats-cluster.harness.js';
export * from './nats-server.harness.js';
// The sandbox provider is its own lib (apps that only need it do not load these harnesses);
// re-exported so that a test finds every fake it starts in one place.
export * from '@tokenkeeper/sandbox';
export * from './wait.js';
export * from './tcp-proxy.js';
export * from './nats-errors.js';
// oidc-provider.harness.ts and browser.harness.ts are imported by path: they load oidc-provider
// and playwright, which the other tests do not need.
export * from './connect-person.js';
