/**
 * A refresher in its own process, as in production, so that its CPU and RSS can be
 * measured apart from the load generator. Started by BenchChild with the refresher's
 * usual environment variables plus BENCH_PROVIDERS (a providers document as JSON).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { loadConfig } from '../../apps/refresher/src/config/app-config.js';
import { parseProvidersDocument } from '../../apps/refresher/src/providers/providers-file.loader.js';
import { RefreshMetrics } from '../../apps/refresher/src/metrics/refresh.metrics.js';
import { startRefresher } from '../../apps/refresher/src/refresher.app.js';
import { reportFatal, reportReady, serveParent } from './children.js';

try {
  const config = loadConfig(process.env);
  const providers = parseProvidersDocument(process.env.BENCH_PROVIDERS ?? '{"providers":{}}', 'json', {});
  const logger = new PinoLoggerService(
    createLogger({ level: config.logLevel, name: 'refresher', destination: process.stderr }),
  );
  const app = await startRefresher({ config, logger, providers });
  const metrics = app.get(RefreshMetrics);
  // CPU profiles of a chosen window only (start-up would otherwise dominate): see --profile.
  let session: Session | undefined;
  serveParent(
    {
      ping: () => true,
      metrics: () => metrics.registry.metrics(),
      profileStart: async () => {
        session = new Session();
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.setSamplingInterval', { interval: 500 });
        await session.post('Profiler.start');
        return true;
      },
      profileStop: async ({ file }: { file: string }) => {
        const { profile } = await session!.post('Profiler.stop');
        session!.disconnect();
        session = undefined;
        writeFileSync(file, JSON.stringify(profile));
        return file;
      },
      gc: () => {
        (globalThis as { gc?: () => void }).gc?.();
        return process.memoryUsage();
      },
    },
    () => app.close(),
  );
  reportReady({ pid: process.pid, replicaId: config.replicaId });
} catch (error) {
  reportFatal(error);
}
