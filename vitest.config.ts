import swc from 'unplugin-swc';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // Nest's DI needs decorator metadata, which esbuild (Vite's default) does not emit; SWC does.
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    alias: {
      '@tokenkeeper/contracts': here('./libs/contracts/src/index.ts'),
      '@tokenkeeper/client': here('./libs/client/src/index.ts'),
      '@tokenkeeper/testing': here('./libs/testing/src/index.ts'),
      '@tokenkeeper/common': here('./libs/common/src/index.ts'),
      '@tokenkeeper/nats': here('./libs/nats/src/index.ts'),
    },
  },
  test: {
    include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'tools/**/*.spec.ts', 'apps/**/*.e2e-spec.ts', 'test/**/*.e2e-spec.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
