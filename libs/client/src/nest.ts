// The NestJS module, on its own entry (`@tokenkeeper/client/nest`) so that a plain Node
// service imports no framework: `@nestjs/common` is an optional peer dependency.
export {
  TOKEN_CLIENT_OPTIONS,
  TokenClientModule,
  type TokenClientModuleAsyncOptions,
  type TokenClientModuleExtras,
} from './token-client.module.js';
