import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { redactServers } from '@tokenkeeper/nats';
import { ConfigError, loadConfig } from './config/app-config.js';
import { startRefresher } from './refresher.app.js';

/** Beyond SHUTDOWN_GRACE_MS, what the steps after the refresh drain may take before the process gives up. */
const HARD_STOP_EXTRA_MS = 15_000;

// The only place that reads the environment: everything else receives AppConfig.
let config;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`tokenkeeper-refresher: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
const logger = createLogger({ level: config.logLevel, name: 'refresher' });
try {
  const app = await startRefresher({ config, logger: new PinoLoggerService(logger) });
  // useProcessExit: exit 0 once the shutdown sequence is done (see GracefulShutdown for its
  // order), rather than re-raising the signal, which would end the process "killed by SIGTERM".
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
  // A last resort should a step hang: the refreshes get SHUTDOWN_GRACE_MS, the rest (cancelling,
  // releasing leases, outbox, NATS drain, pool) a few seconds more.
  const hardStop = (signal: NodeJS.Signals) => {
    setTimeout(() => {
      logger.error({ signal }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownGraceMs + HARD_STOP_EXTRA_MS).unref();
  };
  process.once('SIGTERM', hardStop);
  process.once('SIGINT', hardStop);
  logger.info(
    { replica: config.replicaId, httpPort: config.httpPort, nats: redactServers(config.nats.servers) },
    'refresher started',
  );
} catch (error) {
  logger.fatal(
    { type: (error as Error).constructor?.name, message: (error as Error).message },
    'refresher failed to start',
  );
  process.exit(1);
}
