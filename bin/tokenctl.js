#!/usr/bin/env node
// Launcher of `tokenctl` (package.json "bin"): runs the TypeScript entry through SWC,
// from any working directory (npx tokenctl, npm link, or bin/tokenctl.js directly).
import { register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The @tokenkeeper/* path aliases come from the project's tsconfig, not from the caller's directory.
process.env.SWC_NODE_PROJECT ??= join(root, 'tsconfig.json');
// Resolved from this file, so the project's own @swc-node/register is used.
register('@swc-node/register/esm', import.meta.url);
await import(pathToFileURL(join(root, 'apps/tokenctl/src/main.ts')).href);
