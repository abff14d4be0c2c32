/**
 * `@tokenkeeper/common/core`: the part of the library that needs nothing heavier than zod
 * (settings, secrets, deadlines). A command-line tool imports this instead of the barrel,
 * which also loads the database layer (TypeORM, pg), the logger (pino) and node:http: about
 * 0.2 s of a tokenctl start for code it never runs.
 */
export * from './deadline.js';
export * from './env-config.js';
export * from './secret.js';
export * from './secret-files.js';
