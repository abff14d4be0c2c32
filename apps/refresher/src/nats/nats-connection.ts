/**
 * The refresher's NATS connection, as a Nest provider token. Options, connecting and the
 * bounded drain live in @tokenkeeper/nats, shared with the audit app and tokenctl.
 */
export const NATS_CONNECTION = Symbol('NATS_CONNECTION');
