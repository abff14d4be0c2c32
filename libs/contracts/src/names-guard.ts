import { ContractError } from './errors.js';
import { isValidName, NAME_RULE_MESSAGE } from './names.js';

/** Last line of defence: a name that is not a safe subject token is never published. */
export function assertSubjectToken(value: string): void {
  if (!isValidName(value)) {
    throw new ContractError('bad_request', NAME_RULE_MESSAGE);
  }
}
