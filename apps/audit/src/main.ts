import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { redactServers } from '@tokenkeeper/nats';
import { startAudit } from './audit.app.js';
import { AuditMonitoring } from './monitoring/audit-monitoring.service.js';
import { AuditConfigError, loadAuditConfig } from './config/audit-config.js';

// The only place that reads the environment: everything else receives AuditConfig.
let config;
try {
  config = loadAuditConfig(process.env);
} catch (error) {
  if (error instanceof AuditConfigError) {
    process.stderr.write(`tokenkeeper-audit: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
const logger = createLogger({ level: config.logLevel, name: 'audit' });
try {
  const app = await startAudit({ config, logger: new PinoLoggerService(logger) });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  logger.info(
    {
      replica: config.replicaId,
      nats: redactServers(config.nats.servers),
      consumer: config.consumer.name,
      database: new URL(config.database.url).pathname.slice(1),
      monitoring: app.get(AuditMonitoring).address,
    },
    'audit started',
  );
} catch (error) {
  logger.fatal(
    { type: (error as Error).constructor?.name, message: (error as Error).message },
    'audit failed to start',
  );
  process.exit(1);
}
