export * from './database.js';
export * from './deadline.js';
export * from './env-config.js';
export * from './logger.js';
export * from './secret.js';
export * from './wakeable-sleep.js';
export * from './log-throttle.js';
export * from './retry-backoff.js';
