import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The image holds what `npm run build` writes and nothing of the test code: no libs/testing
 * (database, cluster, proxy, browser and OIDC harnesses), no spec or fixture, nothing that
 * loads vitest, playwright or oidc-provider. There is no Docker engine where the tests run,
 * so this checks the two things an image is made of: the build's output, and the
 * Dockerfile's COPY lines into the runtime stage.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TEST_PACKAGES = [
  'vitest',
  '@vitest/',
  'playwright',
  'playwright-core',
  'oidc-provider',
  '@nestjs/testing',
  'unplugin-swc',
];
const TEST_FILE = /(\.spec|\.e2e-spec|\.fixtures?|\.harness)\.js$/;

let work: string;
let out: string;
let files: string[];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tokenkeeper-image-'));
  out = join(work, 'dist');
  await promisify(execFile)('npm', ['run', 'build', '--', '--out-dir', out], { cwd: ROOT, timeout: 120_000 });
  files = walk(out).map((file) => relative(out, file));
}, 150_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the build the image copies', () => {
  it('holds the deployed apps and their libs, the sandbox provider among them', () => {
    for (const entry of ['refresher', 'audit', 'sandbox-provider', 'tokenctl'])
      expect(files).toContain(`apps/${entry}/src/main.js`);
    expect(files).toContain('libs/sandbox/src/sandbox-provider.js');
  });

  it('holds no file of libs/testing, of the demo, of a test folder, and no spec or fixture', () => {
    const offenders = files.filter(
      (file) =>
        file.startsWith('libs/testing/') ||
        file.startsWith('apps/demo/') ||
        /(^|\/)test\//.test(file) ||
        TEST_FILE.test(file),
    );
    expect(offenders).toEqual([]);
  });

  it('imports no test package, and every relative import it makes is in the build', () => {
    const offenders: string[] = [];
    for (const file of files.filter((f) => f.endsWith('.js'))) {
      for (const specifier of importsOf(readFileSync(join(out, file), 'utf8'))) {
        if (specifier.startsWith('.')) {
          if (!files.includes(join(dirname(file), specifier)))
            offenders.push(`${file}: ${specifier} (not in the build)`);
        } else if (
          TEST_PACKAGES.some((pkg) => specifier === pkg || specifier.startsWith(pkg.endsWith('/') ? pkg : `${pkg}/`))
        ) {
          offenders.push(`${file}: ${specifier}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });
});

describe('the sources', () => {
  it('of no app import the @tokenkeeper/testing barrel (the demo takes its two harness modules by path)', () => {
    const offenders = walk(join(ROOT, 'apps'))
      .filter((file) => file.includes('/src/') && file.endsWith('.ts') && !/\.(e2e-)?spec\.ts$/.test(file))
      .filter((file) => importsOf(readFileSync(file, 'utf8')).includes('@tokenkeeper/testing'))
      .map((file) => relative(ROOT, file));
    expect(offenders).toEqual([]);
  });
});

describe('the Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const runtime = stages.at(-1) ?? '';

  it('copies into the runtime stage only the build output, production dependencies and runtime files', () => {
    const copies = [...runtime.matchAll(/^COPY\s+(.+)$/gm)].map((m) => m[1].trim());
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const from = /--from=(\S+)/.exec(copy)?.[1];
      const sources = copy
        .replace(/--\S+\s+/g, '')
        .split(/\s+/)
        .slice(0, -1);
      const allowed =
        from === 'build'
          ? ['/app/dist']
          : from === 'deps'
            ? ['/app/node_modules']
            : ['package.json', 'package-lock.json', 'config', 'deploy/healthcheck.mjs'];
      for (const source of sources) expect(allowed, copy).toContain(source);
    }
  });

  it('installs the runtime dependencies without devDependencies, where every test package is', () => {
    const deps = stages.find((stage) => /^\S+\s+AS\s+deps\b/i.test(stage)) ?? '';
    expect(deps).toMatch(/npm ci[^\n]*--omit=dev/);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    for (const pkg of ['vitest', 'playwright-core', 'oidc-provider', '@nestjs/testing']) {
      expect(Object.keys(manifest.dependencies)).not.toContain(pkg);
      expect(Object.keys(manifest.devDependencies)).toContain(pkg);
    }
  });

  it('builds with the script this test ran', () => {
    const build = stages.find((stage) => /^\S+\s+AS\s+build\b/i.test(stage)) ?? '';
    expect(build).toMatch(/^RUN npm run build$/m);
  });
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** The specifiers of static imports, re-exports and dynamic imports with a literal. */
function importsOf(code: string): string[] {
  const found = [
    ...code.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]/g),
    ...code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
    ...code.matchAll(/^import\s*['"]([^'"]+)['"]/gm),
  ];
  return found.map((m) => m[1]);
}
