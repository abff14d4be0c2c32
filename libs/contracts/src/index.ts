export * from './codec.js';
export * from './errors.js';
export * from './messages.js';
export * from './names.js';
export * from './names-guard.js';
export * from './subjects.js';
export * from './audit.js';
export * from './token-events.js';
