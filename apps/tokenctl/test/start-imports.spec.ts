import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../../tools/compile.js';

/**
 * What a tokenctl start loads, read from the sources: the static imports reachable from an
 * entry (type-only imports are erased; `import()` runs only when a command asks for it),
 * through relative paths and the `@tokenkeeper/*` aliases of tsconfig.json. A command-line
 * tool started once per command must not load the services' frameworks: Nest and TypeORM
 * alone were about 0.45 s of `tokenctl list` (docs/benchmarks.md, "tokenctl start").
 */
const SERVICE_ONLY = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/microservices',
  'typeorm',
  'pg',
  'pino',
  'prom-client',
];

const aliases = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: { paths: Record<string, [string]> };
  }
).compilerOptions.paths;

/** Module specifiers a file imports statically at run time. */
function staticImports(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const from = [...code.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?\sfrom\s+'([^']+)'/gm)].map((m) => m[1]!);
  const bare = [...code.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]!);
  return [...from, ...bare];
}

/** The packages (outside the workspace) loaded by importing `entry`, and the workspace files on the way. */
function packagesLoadedBy(entry: string): { packages: Set<string>; files: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of staticImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (aliases[spec]) visit(join(REPO_ROOT, aliases[spec][0]));
      else if (!spec.startsWith('node:'))
        packages.add(
          spec
            .split('/')
            .slice(0, spec.startsWith('@') ? 2 : 1)
            .join('/'),
        );
    }
  };
  const path = join(REPO_ROOT, entry);
  expect(existsSync(path), entry).toBe(true);
  visit(path);
  return { packages, files };
}

describe('tokenctl start: what it loads', () => {
  it('builds the program (--help, --version, keygen) without a NATS client or any service framework', () => {
    const { packages } = packagesLoadedBy('apps/tokenctl/src/main.ts');
    expect(packages).toContain('commander');
    for (const name of [...SERVICE_ONLY, '@nats-io/transport-node']) expect(packages, name).not.toContain(name);
  });

  it('connects for a NATS command (nats.session) without Nest, TypeORM, pg, pino or prom-client', () => {
    const { packages, files } = packagesLoadedBy('apps/tokenctl/src/nats.session.ts');
    expect(packages).toContain('@nats-io/transport-node');
    expect(files).toContain(join(REPO_ROOT, 'libs/nats/src/nats-connection.ts'));
    for (const name of SERVICE_ONLY) expect(packages, name).not.toContain(name);
  });

  it('sees through the barrels: the libraries’ full entries do load the frameworks', () => {
    // Proves the walk follows aliases and re-exports: were it blind, the tests above would pass vacuously.
    expect(packagesLoadedBy('libs/nats/src/index.ts').packages).toContain('@nestjs/microservices');
    expect(packagesLoadedBy('libs/common/src/index.ts').packages).toContain('typeorm');
  });
});
