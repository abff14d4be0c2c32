import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * Holds a secret (token, client secret, key) so that it cannot leak by accident:
 * string conversion, JSON serialization and `util.inspect` (used by loggers and
 * `console.log`) all print `[redacted]`. Only `reveal()` gives the value, and every
 * call to it is a place to review.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  static of(value: string): Secret;
  static of(value: string | null | undefined): Secret | undefined;
  static of(value: string | null | undefined): Secret | undefined {
    return value === null || value === undefined || value === '' ? undefined : new Secret(value);
  }

  reveal(): string {
    return this.#value;
  }

  equals(other: Secret | undefined): boolean {
    return other !== undefined && other.#value === this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
