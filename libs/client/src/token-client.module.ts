import {
  type DynamicModule,
  Inject,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type OnModuleDestroy,
  type OnModuleInit,
  type OptionalFactoryDependency,
  type Provider,
} from '@nestjs/common';
import type { TokenClientOptions } from './token-client.options.js';
import { TokenClient } from './token.client.js';

/** Injection token of the options, for code that wants to read what the client was built with. */
export const TOKEN_CLIENT_OPTIONS = Symbol('TOKEN_CLIENT_OPTIONS');

export interface TokenClientModuleExtras {
  /** Register the module globally so that feature modules need not import it. Default false. */
  isGlobal?: boolean;
}

export interface TokenClientModuleAsyncOptions extends TokenClientModuleExtras {
  imports?: ModuleMetadata['imports'];
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  // Nest's own factory signature: the injected values arrive untyped.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  useFactory: (...args: any[]) => TokenClientOptions | Promise<TokenClientOptions>;
}

/**
 * The client is built by a factory, not by Nest's constructor injection, so that
 * TokenClient stays a plain class that Node code without Nest can `new` as is,
 * with no decorators and no reflect-metadata.
 */
const clientProvider: Provider = {
  provide: TokenClient,
  useFactory: (options: TokenClientOptions) => new TokenClient(options),
  inject: [TOKEN_CLIENT_OPTIONS],
};

/**
 * Provides `TokenClient`: started when the module initialises (so consumers'
 * `onModuleInit`, which runs after their imports', already gets pushed events) and
 * closed when it is destroyed. A connection passed in as `nc` stays open: it
 * belongs to the application, which may share it with other modules.
 *
 * ```ts
 * @Module({ imports: [TokenClientModule.forRoot({ servers: 'nats://127.0.0.1:4222' })] })
 * ```
 */
@Module({})
export class TokenClientModule implements OnModuleInit, OnModuleDestroy {
  // Explicit @Inject: the class token must not depend on emitted design metadata,
  // which some build set-ups (esbuild, plain tsc without emitDecoratorMetadata) drop.
  constructor(@Inject(TokenClient) private readonly client: TokenClient) {}

  static forRoot(options: TokenClientOptions, extras: TokenClientModuleExtras = {}): DynamicModule {
    return {
      module: TokenClientModule,
      global: extras.isGlobal ?? false,
      providers: [{ provide: TOKEN_CLIENT_OPTIONS, useValue: options }, clientProvider],
      exports: [TokenClient, TOKEN_CLIENT_OPTIONS],
    };
  }

  static forRootAsync(options: TokenClientModuleAsyncOptions): DynamicModule {
    return {
      module: TokenClientModule,
      global: options.isGlobal ?? false,
      imports: options.imports ?? [],
      providers: [
        { provide: TOKEN_CLIENT_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
        clientProvider,
      ],
      exports: [TokenClient, TOKEN_CLIENT_OPTIONS],
    };
  }

  async onModuleInit(): Promise<void> {
    await this.client.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.client.close();
  }
}
