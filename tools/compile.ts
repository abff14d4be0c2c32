import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformFile } from '@swc/core';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The workspace libraries, as `tsconfig.json` paths name them: the barrel, then narrower entries. */
const ALIASES: Record<string, Record<string, string>> = {
  '@tokenkeeper/client': { '.': 'libs/client/src/index.js' },
  '@tokenkeeper/common': { '.': 'libs/common/src/index.js', './core': 'libs/common/src/core.js' },
  '@tokenkeeper/contracts': { '.': 'libs/contracts/src/index.js' },
  '@tokenkeeper/nats': { '.': 'libs/nats/src/index.js', './connect': 'libs/nats/src/connect.js' },
  '@tokenkeeper/sandbox': { '.': 'libs/sandbox/src/index.js' },
  '@tokenkeeper/testing': { '.': 'libs/testing/src/index.js' },
};

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith('.ts') && !/\.(spec|e2e-spec|fixture|d)\.ts$/.test(name)) out.push(path);
  }
  return out;
}

/**
 * Compiles TypeScript sources to plain ES modules with the same SWC settings
 * @swc-node/register uses (legacy decorators with metadata, no define semantics for
 * class fields), so that production runs on plain `node`: no loader thread and no
 * compiler in the process (about 140 MiB of RSS; see docs/benchmarks.md). `tsc` cannot
 * do this alone: it leaves the `@tokenkeeper/*` aliases unresolved in ESM output, so they
 * become tiny packages next to the build, which Node finds by walking up from each file.
 */
export async function compile(outDir: string, sourceDirs: string[]): Promise<{ files: number; seconds: number }> {
  const t0 = performance.now();
  rmSync(outDir, { recursive: true, force: true });
  const files = sourceDirs.flatMap((dir) => tsFiles(join(REPO_ROOT, dir)));
  await Promise.all(
    files.map(async (file) => {
      const { code } = await transformFile(file, {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
          target: 'es2022',
          keepClassNames: true,
        },
        module: { type: 'es6' },
        sourceMaps: false,
        swcrc: false,
        configFile: false,
      });
      const target = join(outDir, relative(REPO_ROOT, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, code);
    }),
  );
  for (const [name, entries] of Object.entries(ALIASES)) {
    const dir = join(outDir, 'node_modules', name);
    mkdirSync(dir, { recursive: true });
    // One re-exporting file per entry; `exports` maps `@tokenkeeper/x/sub` to it (ESM adds no extension).
    const exports = Object.fromEntries(
      Object.keys(entries).map((sub) => [sub, sub === '.' ? './index.js' : `${sub}.js`]),
    );
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, type: 'module', exports }));
    for (const [sub, entry] of Object.entries(entries)) {
      writeFileSync(join(dir, exports[sub]), `export * from '${relative(dir, join(outDir, entry))}';\n`);
    }
  }
  writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  return { files: files.length, seconds: (performance.now() - t0) / 1000 };
}
