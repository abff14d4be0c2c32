/**
 * `npm run build`: every app and library compiled to dist/ for production images, e.g.
 * `node dist/apps/refresher/src/main.js`. Development and tests run from source.
 */
import { join } from 'node:path';
import { compile, REPO_ROOT } from './compile.js';

const { files, seconds } = await compile(join(REPO_ROOT, 'dist'), [
  'apps/refresher/src',
  'apps/audit/src',
  'apps/sandbox-provider/src',
  'apps/tokenctl/src',
  'libs/client/src',
  'libs/common/src',
  'libs/contracts/src',
  'libs/nats/src',
  'libs/testing/src',
]);
process.stdout.write(`compiled ${files} files to dist/ in ${seconds.toFixed(2)} s\n`);
