export * from './sandbox-provider.js';
