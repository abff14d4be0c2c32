import { ContractError } from './errors.js';
import { isValidName } from './names.js';

/** Last line of defence: a name that is not a safe subject token is never published. */
export function assertSubjectToken(value: string): void {
  if (!isValidName(value)) {
    throw new ContractError('bad_request', 'tenant and connection must match ^[A-Za-z0-9_-]{1,128}$');
  }
}
