import { PermissionViolationError } from '@nats-io/transport-node';

/**
 * The server's permission violation behind a failed request or a closed subscription:
 * nats.js wraps it (RequestError → cause), and the tests of the authorization model want the subject and
 * operation the server named.
 */
export function permissionError(error: unknown): PermissionViolationError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return undefined;
}
