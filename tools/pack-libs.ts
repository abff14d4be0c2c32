/**
 * `npm run pack:libs [-- --out <dir>]`: builds `@tokenkeeper/contracts` and
 * `@tokenkeeper/client` as npm packages (ESM with type declarations, compiled by tsc from
 * each lib's tsconfig.pack.json) and packs them with `npm pack`, contracts first since
 * the client's declarations import it. Both carry the project's version: a lib whose
 * version differs from the root package.json's stops the pack, so a release is one
 * version everywhere. Prints the tarballs' paths, one a line.
 */
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from './compile.js';

export const PACKED_LIBS = ['contracts', 'client'] as const;

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const readManifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;

function run(command: string, args: string[], cwd: string): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

/** Problems that would make the packages disagree with the project's version. */
export function versionProblems(root: Manifest, libs: Manifest[]): string[] {
  const problems: string[] = [];
  for (const lib of libs) {
    if (lib.version !== root.version) problems.push(`${lib.name} is at ${lib.version}, the project at ${root.version}`);
    for (const [name, range] of Object.entries(lib.dependencies ?? {})) {
      if (name.startsWith('@tokenkeeper/') && range !== root.version)
        problems.push(`${lib.name} depends on ${name}@${range}, not ${root.version}`);
    }
  }
  return problems;
}

/** The package a bare import specifier names: `@scope/name` or `name`, without a subpath. */
export function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/**
 * Packages that a lib's shipped sources import but its package.json does not declare
 * (dependencies or peerDependencies): an installed package would fail on them, while
 * inside the repository the root node_modules hides the omission.
 */
export function undeclaredImports(libDir: string): string[] {
  const manifest = readManifest(libDir);
  const declared = new Set([
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}),
  ]);
  const builtins = new Set(builtinModules);
  const missing = new Set<string>();
  const src = join(libDir, 'src');
  for (const file of readdirSync(src)) {
    if (!file.endsWith('.ts') || /\.(e2e-spec|spec|fixture)\.ts$/.test(file)) continue;
    const text = readFileSync(join(src, file), 'utf8');
    for (const [, specifier] of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^'.][^']*)'/g)) {
      const name = packageOf(specifier);
      if (!specifier.startsWith('node:') && !builtins.has(name) && !declared.has(name)) missing.add(`${file}: ${name}`);
    }
  }
  return [...missing].sort();
}

export function packLibs(outDir: string): string[] {
  const root = readManifest(REPO_ROOT);
  const dirs = PACKED_LIBS.map((lib) => join(REPO_ROOT, 'libs', lib));
  const problems = versionProblems(root, dirs.map(readManifest));
  if (problems.length > 0) throw new Error(`pack: ${problems.join('; ')}`);
  mkdirSync(outDir, { recursive: true });
  const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  return dirs.map((dir) => {
    rmSync(join(dir, 'dist'), { recursive: true, force: true });
    run(process.execPath, [tsc, '-p', 'tsconfig.pack.json'], dir);
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', outDir], dir)) as [
      { filename: string },
    ];
    return join(outDir, packed.filename);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const at = process.argv.indexOf('--out');
  const outDir = resolve(at > 0 ? process.argv[at + 1] : join(REPO_ROOT, 'dist/packages'));
  for (const tarball of packLibs(outDir)) process.stdout.write(`${tarball}\n`);
}
