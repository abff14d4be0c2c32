import { join } from 'node:path';
import { compile } from '../../tools/compile.js';
import { REPO_ROOT } from './children.js';

/**
 * Compiles the refresher, the libraries and the bench's child programs (tools/compile.ts),
 * so that the children run on plain `node`, as a compiled deployment does: no TypeScript
 * loader thread and no compiler in the process, whose memory would otherwise be counted
 * as the refresher's RSS (see docs/benchmarks.md).
 */
export const BUILD_DIR = join(REPO_ROOT, 'bench/results/build');

const SOURCES = [
  'apps/refresher/src',
  'libs/common/src',
  'libs/contracts/src',
  'libs/nats/src',
  'libs/sandbox/src',
  'libs/testing/src',
  'bench/support',
];

export function buildChildren(): Promise<{ files: number; seconds: number }> {
  return compile(BUILD_DIR, SOURCES);
}
