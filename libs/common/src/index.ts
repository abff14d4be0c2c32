export * from './logger.js';
export * from './secret.js';
