/**
 * Defaults the help text shows. Apart from nats.session.ts so that building the program
 * (and `--version`, `--help`, `keygen`) loads no NATS client and none of the shared libraries.
 */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
export const DEFAULT_TIMEOUT_MS = 15_000;
