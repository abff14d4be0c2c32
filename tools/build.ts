/**
 * `npm run build` (the Dockerfile's build stage): a clean `nest build`, then a check that
 * every app an image or docker-compose starts came out as `dist/<app>/main.js`.
 *
 * The Nest CLI's SWC builder (nest-cli.json) compiles apps/ and libs/ in one pass whatever
 * project is named, resolving the `@tokenkeeper/*` path aliases to relative imports, so
 * `nest build refresher` alone already yields every entry below; this script only adds
 * what the CLI does not: an empty dist/ first (no stale modules in an image) and a failed
 * build when an entry is missing, rather than a container that dies at start.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './compile.js';

/** Source roots (nest-cli.json "sourceRoot") of the apps the image runs. */
const DEPLOYED = ['apps/refresher/src', 'apps/audit/src', 'apps/sandbox-provider/src', 'apps/tokenctl/src'];

const dist = join(REPO_ROOT, 'dist');
rmSync(dist, { recursive: true, force: true });
const nest = spawnSync(join(REPO_ROOT, 'node_modules/.bin/nest'), ['build', 'refresher'], { cwd: REPO_ROOT, stdio: 'inherit' });
if (nest.status !== 0) process.exit(nest.status ?? 1);
const missing = DEPLOYED.map((root) => join('dist', root, 'main.js')).filter((entry) => !existsSync(join(REPO_ROOT, entry)));
if (missing.length > 0) {
  process.stderr.write(`build: nest build did not produce ${missing.join(', ')}\n`);
  process.exit(1);
}
process.stdout.write(`build: ${DEPLOYED.length} app entries in dist/\n`);
