import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { ConfigError, loadConfig } from './config/app-config.js';
import { startRefresher } from './refresher.app.js';

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
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  logger.info({ replica: config.replicaId, httpPort: config.httpPort, nats: config.nats.servers }, 'refresher started');
} catch (error) {
  logger.fatal({ type: (error as Error).constructor?.name, message: (error as Error).message }, 'refresher failed to start');
  process.exit(1);
}
