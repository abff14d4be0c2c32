import { createInbox } from '@nats-io/transport-node';
import { optionalText, Secret, secretFileShape } from '@tokenkeeper/common/core';
import { z } from 'zod';
import { parseServers } from './nats-url.js';

/**
 * The NATS settings of the configuration rules, read the same way by the refresher, the audit app and
 * tokenctl: spread `natsEnvShape` into the app's zod schema, then call `natsConfigFrom`.
 * Problems are reported per variable, never with its value.
 */
/** The NATS secrets that may also come from a file (`NATS_PASS_FILE`, …; see withSecretFiles). */
export const NATS_SECRET_NAMES = ['NATS_PASS', 'NATS_TOKEN', 'NATS_NKEY_SEED'] as const;

export const natsEnvShape = {
  ...secretFileShape(NATS_SECRET_NAMES),
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  NATS_USER: optionalText,
  NATS_PASS: optionalText,
  NATS_TOKEN: optionalText,
  NATS_CREDS: optionalText,
  NATS_NKEY_SEED: optionalText,
  NATS_TLS_CA: optionalText,
  NATS_TLS_CERT: optionalText,
  NATS_TLS_KEY: optionalText,
  NATS_INBOX_PREFIX: optionalText,
};

/** For the apps that answer requests (refresher, audit app); see `replySubjectPrefixesFrom`. */
export const replySubjectEnvShape = {
  REPLY_SUBJECT_PREFIXES: z.string().default('_INBOX'),
};

export type NatsEnv = { [K in keyof typeof natsEnvShape]: z.output<(typeof natsEnvShape)[K]> };

export type NatsAuth =
  | { kind: 'none' }
  | { kind: 'userpass'; user: string; pass: Secret }
  | { kind: 'token'; token: Secret }
  | { kind: 'creds'; file: string }
  | { kind: 'nkey'; seed: Secret };

export interface NatsConfig {
  /** Without user info (see nats-url.ts), so safe to log, though `redactServers` is still the way to. */
  servers: string[];
  auth: NatsAuth;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** The connection's inbox prefix (default `_INBOX`): a least-privilege user is allowed only its own. */
  inboxPrefix?: string;
}

/** A NATS user nkey seed: `SU` and 56 more base32 characters. */
const NKEY_USER_SEED = /^SU[A-Z2-7]{56}$/;
/** Literal subject tokens: no wildcards, no whitespace, no empty token. */
const SUBJECT_PREFIX = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;

/** Builds the NATS settings, adding a line to `problems` for each inconsistent variable. */
export function natsConfigFrom(e: NatsEnv, problems: string[]): NatsConfig {
  let [user, pass, token] = [e.NATS_USER, e.NATS_PASS, e.NATS_TOKEN];
  const parsed = parseServers(e.NATS_URL);
  if (!parsed) problems.push('  NATS_URL: must be nats://host:port (comma-separated for a cluster)');
  // nats://user:pass@host or nats://token@host, as the nats CLI accepts; explicit variables win.
  const embedded = parsed?.embedded;
  if (
    embedded &&
    user === undefined &&
    token === undefined &&
    e.NATS_CREDS === undefined &&
    e.NATS_NKEY_SEED === undefined
  ) {
    if (embedded.pass !== undefined) [user, pass] = [embedded.user, embedded.pass];
    else token = embedded.user;
  }
  if ((user === undefined) !== (pass === undefined)) problems.push('  NATS_USER and NATS_PASS: set both or neither');
  const authKinds = [user, token, e.NATS_CREDS, e.NATS_NKEY_SEED].filter((v) => v !== undefined).length;
  if (authKinds > 1) problems.push('  NATS_USER/NATS_TOKEN/NATS_CREDS/NATS_NKEY_SEED: choose one way to authenticate');
  if (e.NATS_NKEY_SEED !== undefined && !NKEY_USER_SEED.test(e.NATS_NKEY_SEED.trim())) {
    problems.push('  NATS_NKEY_SEED: must be a NATS user nkey seed (SU followed by 56 base32 characters)');
  }
  if (e.NATS_INBOX_PREFIX !== undefined && !SUBJECT_PREFIX.test(e.NATS_INBOX_PREFIX)) {
    problems.push(
      '  NATS_INBOX_PREFIX: must be a literal subject prefix such as _INBOX_billing (no wildcards, spaces or empty tokens)',
    );
  }
  if ((e.NATS_TLS_CERT === undefined) !== (e.NATS_TLS_KEY === undefined)) {
    problems.push('  NATS_TLS_CERT and NATS_TLS_KEY: set both or neither');
  }
  const auth: NatsAuth = user
    ? { kind: 'userpass', user, pass: new Secret(pass ?? '') }
    : token
      ? { kind: 'token', token: new Secret(token) }
      : e.NATS_CREDS
        ? { kind: 'creds', file: e.NATS_CREDS }
        : e.NATS_NKEY_SEED
          ? { kind: 'nkey', seed: new Secret(e.NATS_NKEY_SEED.trim()) }
          : { kind: 'none' };
  const tls =
    e.NATS_TLS_CA || e.NATS_TLS_CERT
      ? { caFile: e.NATS_TLS_CA, certFile: e.NATS_TLS_CERT, keyFile: e.NATS_TLS_KEY }
      : undefined;
  return {
    servers: parsed?.servers ?? [],
    auth,
    tls,
    ...(e.NATS_INBOX_PREFIX ? { inboxPrefix: e.NATS_INBOX_PREFIX } : {}),
  };
}

/**
 * For a service that answers requests: its NATS_INBOX_PREFIX, or when none is set (or it is
 * the shared default `_INBOX`) a private `_INBOX.<nuid>`, still under `_INBOX.>` (so no
 * permission changes) but told apart from every caller's `_INBOX.<nuid>` inbox, so that the
 * reply guard can refuse the service's own without refusing its callers'.
 */
export function withOwnInbox(config: NatsConfig): NatsConfig & { inboxPrefix: string } {
  const own = config.inboxPrefix;
  return {
    ...config,
    inboxPrefix: own === undefined || own === DEFAULT_INBOX_PREFIX ? createInbox(DEFAULT_INBOX_PREFIX) : own,
  };
}

/** nats.js's inbox prefix when none is given: every default client's. */
const DEFAULT_INBOX_PREFIX = '_INBOX';

const OWN_NAMESPACES = ['token.', 'audit.', 'tokenkeeper.', '$'];

/** `REPLY_SUBJECT_PREFIXES`: the reply subjects a service answers to. */
export function replySubjectPrefixesFrom(e: { REPLY_SUBJECT_PREFIXES: string }, problems: string[]): string[] {
  const prefixes = e.REPLY_SUBJECT_PREFIXES.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (prefixes.length === 0 || prefixes.some((p) => !SUBJECT_PREFIX.test(p.replace(/\.$/, '')))) {
    problems.push('  REPLY_SUBJECT_PREFIXES: must be comma-separated literal subject prefixes such as _INBOX');
  } else if (prefixes.some((p) => OWN_NAMESPACES.some((own) => own.startsWith(p) || p.startsWith(own)))) {
    // The guard exists so that no requester can make a service publish into these.
    problems.push('  REPLY_SUBJECT_PREFIXES: must not cover token., audit., tokenkeeper. or $ subjects');
  }
  return prefixes;
}
