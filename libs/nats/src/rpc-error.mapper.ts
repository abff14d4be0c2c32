import type { LoggerService } from '@nestjs/common';
import { ContractError, encodeJson, errorReply } from '@tokenkeeper/contracts';

/**
 * The one place where an error becomes a wire reply. A ContractError carries its code
 * and a message written to be public; anything else is a bug or an outage we did not
 * classify: it is logged once here (by class name and stack, which hold no request
 * data) and answered `internal` with a message that reveals nothing.
 */
export function errorToReply(error: unknown, subject: string, logger: LoggerService): Uint8Array {
  if (error instanceof ContractError) {
    return encodeJson(errorReply(error.code, error.message, error.retryAfterSeconds));
  }
  if (isDatabaseUnreachable(error)) {
    logger.warn?.({ msg: 'database unreachable while handling a request', subject, error: describe(error) });
    return encodeJson(errorReply('unavailable', 'storage is unavailable; retry later'));
  }
  logger.error({ msg: 'unexpected error while handling a request', subject, error: describe(error) });
  return encodeJson(errorReply('internal', 'internal error'));
}

function isDatabaseUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : '';
  return (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === '57P01' || // admin_shutdown
    code === '57P03' || // cannot_connect_now
    /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message)
  );
}

/** Only the class and stack: error messages from drivers can quote query parameters. */
function describe(error: unknown): { type: string; stack?: string } {
  if (error instanceof Error)
    return { type: error.constructor.name, stack: error.stack?.split('\n').slice(1, 6).join('\n') };
  return { type: typeof error };
}
