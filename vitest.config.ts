import swc from 'unplugin-swc';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Two tiers, decided by the file name alone: `*.spec.ts` is the unit tier (no PostgreSQL, no
// NATS, no browser, no child process; tools/unit-tier.setup.ts refuses them), `*.e2e-spec.ts`
// the e2e tier (real servers). `npm test` runs both, `npm run test:unit` / `test:e2e` one each.
const roots = ['apps', 'libs', 'test', 'tools'];

export default defineConfig({
  // Nest's DI needs decorator metadata, which esbuild (Vite's default) does not emit; SWC does.
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    alias: {
      '@tokenkeeper/contracts': here('./libs/contracts/src/index.ts'),
      // Before '@tokenkeeper/client', which would otherwise take the subpath as a prefix.
      '@tokenkeeper/client/nest': here('./libs/client/src/nest.ts'),
      '@tokenkeeper/client': here('./libs/client/src/index.ts'),
      '@tokenkeeper/testing': here('./libs/testing/src/index.ts'),
      '@tokenkeeper/sandbox': here('./libs/sandbox/src/index.ts'),
      '@tokenkeeper/common/core': here('./libs/common/src/core.ts'),
      '@tokenkeeper/common': here('./libs/common/src/index.ts'),
      '@tokenkeeper/nats/connect': here('./libs/nats/src/connect.ts'),
      '@tokenkeeper/nats': here('./libs/nats/src/index.ts'),
    },
  },
  test: {
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: roots.map((root) => `${root}/**/*.spec.ts`),
          setupFiles: [here('./tools/unit-tier.setup.ts')],
        },
      },
      { extends: true, test: { name: 'e2e', include: roots.map((root) => `${root}/**/*.e2e-spec.ts`) } },
    ],
  },
});
