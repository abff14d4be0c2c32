/**
 * `npm run build` (the Dockerfile's build stage): a clean `nest build`, then a check that
 * every app an image or docker-compose starts came out as `dist/<app>/main.js`.
 *
 * The Nest CLI's SWC builder (nest-cli.json) compiles apps/ and libs/ in one pass whatever
 * project is named, resolving the `@tokenkeeper/*` path aliases to relative imports, so
 * `nest build refresher` alone already yields every entry below; this script only adds
 * what the CLI does not: an empty dist/ first (no stale modules in an image) and a failed
 * build when an entry is missing, rather than a container that dies at start.
 *
 * tsconfig.build.json's `exclude` keeps test code out (specs, fixtures, `test/` folders,
 * libs/testing and the demo, which starts test harnesses): what this writes is what the
 * image copies, and test/image-contents.e2e-spec.ts checks that it holds no test harness.
 * `npm run build -- --out-dir DIR` writes it elsewhere than dist/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { REPO_ROOT } from './compile.js';

/** Source roots (nest-cli.json "sourceRoot") of the apps the image runs. */
const DEPLOYED = ['apps/refresher/src', 'apps/audit/src', 'apps/sandbox-provider/src', 'apps/tokenctl/src'];

const outFlag = process.argv.indexOf('--out-dir');
const outDir = outFlag === -1 ? join(REPO_ROOT, 'dist') : resolve(process.argv[outFlag + 1] ?? '');
if (outFlag !== -1 && !process.argv[outFlag + 1]) {
  process.stderr.write('build: --out-dir needs a directory\n');
  process.exit(2);
}
rmSync(outDir, { recursive: true, force: true });
const nest = spawnSync(join(REPO_ROOT, 'node_modules/.bin/nest'), ['build', 'refresher', ...tsconfigFor(outDir)], {
  cwd: REPO_ROOT,
  stdio: 'inherit',
});
if (nest.status !== 0) process.exit(nest.status ?? 1);
const missing = DEPLOYED.map((root) => join(outDir, root, 'main.js')).filter((entry) => !existsSync(entry));
if (missing.length > 0) {
  process.stderr.write(`build: nest build did not produce ${missing.map((m) => relative(REPO_ROOT, m)).join(', ')}\n`);
  process.exit(1);
}
process.stdout.write(`build: ${DEPLOYED.length} app entries in ${outDir}\n`);

/**
 * `--out-dir` (a test builds the image's output next to a running checkout without touching
 * its dist/): a tsconfig extending tsconfig.build.json with that outDir. The CLI reads
 * `exclude` from the named file only, not from the one it extends, and joins relative
 * patterns to that file's folder, so they are copied over as absolute paths.
 */
function tsconfigFor(out: string): string[] {
  if (out === join(REPO_ROOT, 'dist')) return [];
  const base = join(REPO_ROOT, 'tsconfig.build.json');
  const exclude = (ts.readConfigFile(base, (path) => ts.sys.readFile(path)).config as { exclude: string[] }).exclude;
  const file = join(mkdtempSync(join(tmpdir(), 'tokenkeeper-build-')), 'tsconfig.json');
  writeFileSync(
    file,
    JSON.stringify({
      extends: base,
      compilerOptions: { outDir: out },
      exclude: exclude.map((pattern) => (isAbsolute(pattern) ? pattern : join(REPO_ROOT, pattern))),
    }),
  );
  process.on('exit', () => rmSync(dirname(file), { recursive: true, force: true }));
  return ['-p', relative(REPO_ROOT, file)];
}
