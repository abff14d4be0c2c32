#!/usr/bin/env node
// Launcher of `tokenctl` (package.json "bin"), from any working directory (npx tokenctl,
// npm link, or bin/tokenctl.js directly). It runs compiled JavaScript on plain node, because
// compiling the TypeScript at every call cost about 3 s a command: in a checkout the sources
// are compiled once into .tokenkeeper/cache/ and again only when one of them changes; in the
// image, where only the build output exists, that output runs.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = 'apps/tokenctl/src/main';
/** What tokenctl imports; a change under any of them means a new compile. */
const SOURCES = ['apps/tokenctl/src', 'libs/common/src', 'libs/contracts/src', 'libs/nats/src'];

/** A name for the sources as they are now: their paths, sizes and modification times. */
function sourceStamp() {
  const hash = createHash('sha256');
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const { size, mtimeMs } = statSync(path);
        hash.update(`${path}\0${size}\0${mtimeMs}\n`);
      }
    }
  };
  for (const dir of [...SOURCES, 'tools']) walk(join(root, dir));
  hash.update(String(statSync(join(root, 'package.json')).mtimeMs));
  return hash.digest('hex').slice(0, 16);
}

/** Compiles into a directory of its own, then renames it into place, so concurrent first calls do not collide. */
async function compileInto(cacheRoot, target) {
  process.env.SWC_NODE_PROJECT ??= join(root, 'tsconfig.json');
  register('@swc-node/register/esm', import.meta.url);
  const { compile } = await import(pathToFileURL(join(root, 'tools/compile.ts')).href);
  const tmp = `${target}.tmp-${process.pid}`;
  await compile(tmp, SOURCES);
  try {
    renameSync(tmp, target);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another call finished first: its output is the same
  }
  for (const name of readdirSync(cacheRoot)) {
    const path = join(cacheRoot, name);
    if (path !== target && !name.includes('.tmp-')) rmSync(path, { recursive: true, force: true });
  }
}

async function compiledEntry() {
  const cacheRoot = join(root, '.tokenkeeper/cache/tokenctl');
  const target = join(cacheRoot, sourceStamp());
  if (!existsSync(join(target, `${ENTRY}.js`))) {
    mkdirSync(cacheRoot, { recursive: true });
    await compileInto(cacheRoot, target);
  }
  return join(target, `${ENTRY}.js`);
}

if (!existsSync(join(root, `${ENTRY}.ts`))) {
  // The image: no sources, only `npm run build`'s output.
  await import(pathToFileURL(join(root, 'dist', `${ENTRY}.js`)).href);
} else {
  let entry;
  try {
    entry = await compiledEntry();
  } catch (error) {
    // A read-only checkout (a global install): run the sources through SWC as before, slowly.
    process.stderr.write(
      `tokenctl: cannot compile into .tokenkeeper/cache (${error.code ?? error.message}); running from source\n`,
    );
    process.env.SWC_NODE_PROJECT ??= join(root, 'tsconfig.json');
    register('@swc-node/register/esm', import.meta.url);
    entry = join(root, `${ENTRY}.ts`);
  }
  await import(pathToFileURL(entry).href);
}
