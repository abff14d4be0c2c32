import { AUDIT_STREAM, AUDIT_SUBJECT_PREFIX, TOKEN_EVENT_KINDS } from './subjects.js';
import { isValidName, NAME_PATTERN } from './names.js';
import { ConsumerScope, scopeEntryText } from './consumer-scope.js';
import { WEBHOOK_OPERATIONS } from './webhooks.js';
import { ADMIN_CREDENTIAL_OPERATIONS, ADMIN_PREFIX, AUDIT_QUERY_PREFIX, TOKEN_GET_PREFIX } from './wire-subjects.js';

/**
 * The permission model of the authorization model as data: what each role may publish and subscribe
 * to on a single-account nats-server. `tokenctl authz` renders it into the server's
 * `authorization` block and into `nsc` commands; the e2e tests run under it.
 *
 * Rules it keeps:
 * - every client has its own inbox prefix `_INBOX_<user>`; nobody is allowed `_INBOX.>`,
 *   so nobody reads another client's replies;
 * - event types are named one by one (`token.refreshed.T.*`, never `token.*.T.>`);
 * - JetStream API subjects are named for the `TOKEN_AUDIT` stream and the audit app's
 *   durable consumer only, never `$JS.API.>`;
 * - only the two services answer requests (`allow_responses`), so a consumer cannot
 *   publish to an arbitrary subject by choosing it as a reply subject elsewhere.
 */

/** The audit app's durable consumer when `AUDIT_CONSUMER_NAME` is not set (apps/audit config). */
export const DEFAULT_AUDIT_CONSUMER = 'tokenkeeper-audit';

/** Where a client's replies arrive: its `NATS_INBOX_PREFIX` / the client library's `inboxPrefix`. */
export function inboxPrefixFor(user: string): string {
  return `_INBOX_${user}`;
}

export type AuthzRole =
  | { kind: 'refresher' }
  | { kind: 'audit'; consumerName?: string }
  | { kind: 'operator' }
  | { kind: 'tenant-admin'; tenant: string }
  /** A consumer service of one tenant, optionally limited to some of its connections. */
  | { kind: 'consumer'; tenant: string; service?: string; connections?: readonly string[] }
  /**
   * A consumer service of many tenants: `scope` entries `<tenant>.<connection>`, each side a
   * name or `*` (`*.twitter`, `acme.*`, `*.*`). The scope is its grant; the service its identity.
   */
  | { kind: 'scoped-consumer'; service: string; scope: readonly string[] }
  /**
   * The user a leaf node's `leafnodes { remotes }` connection authenticates as on the hub.
   * The hub holds everything the leaf forwards to it to this user's permissions, so they are
   * the union of what the leaf's consumers may do: `scope` (`<tenant>.<connection>` entries,
   * as for a scoped consumer) for requests and events, and the inboxes of the consumers it
   * serves for their replies (see {@link leafRole}).
   */
  | { kind: 'leaf'; leaf: string; scope: readonly string[]; inboxPrefixes: readonly string[] };

export type AuthzRoleKind = AuthzRole['kind'];

export interface SubjectPermissions {
  publish: readonly string[];
  subscribe: readonly string[];
  /** nats-server `allow_responses: true`: may publish one reply to the reply subject of each message it received. */
  allowResponses: boolean;
}

export interface AuthzUser {
  /** nats-server user name (and, in nsc, the user's name). */
  name: string;
  role: AuthzRole;
  inboxPrefix: string;
  permissions: SubjectPermissions;
}

/**
 * A tenant or service name as one part of a user name: `_` becomes `__` and `-` becomes
 * `_-`, so that an unescaped `-` only ever separates parts. Without it `--tenant acme-billing`
 * and `--consumer acme:billing` would both be `svc-acme-billing`, one user for two roles.
 */
export function userNamePart(value: string): string {
  return value.replace(/[_-]/g, (c) => `_${c}`);
}

/**
 * User names that keep roles apart: `svc-<tenant>[-<service>]`, `admin-<tenant>`,
 * `scope-<service>` (not `svc-scope-…`: that is tenant `scope`'s service), or the
 * service's own, each part escaped by {@link userNamePart}. A pure function of the role's
 * identity (kind, tenant, service), so two runs of `tokenctl authz` agree and two different
 * identities never share a name; a consumer's connections are its grant, not its identity.
 */
export function defaultUserName(role: AuthzRole): string {
  switch (role.kind) {
    case 'refresher':
    case 'audit':
    case 'operator':
      return role.kind;
    case 'tenant-admin':
      return `admin-${userNamePart(role.tenant)}`;
    case 'consumer':
      return role.service === undefined
        ? `svc-${userNamePart(role.tenant)}`
        : `svc-${userNamePart(role.tenant)}-${userNamePart(role.service)}`;
    case 'scoped-consumer':
      return `scope-${userNamePart(role.service)}`;
    case 'leaf':
      return `leaf-${userNamePart(role.leaf)}`;
  }
}

/** User names: the name characters, long enough for two escaped 128-character parts. */
const USER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,600}$/;

const eventSubjects = (tenant: string, connection: string) =>
  TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.${tenant}.${connection}`);
const inbox = (prefix: string) => `${prefix}.>`;

/** `$JS.API.INFO`: what `jetstreamManager()` asks first (account info, to see JetStream is on). */
const JS_API_INFO = '$JS.API.INFO';

/**
 * The JetStream API of `TOKEN_AUDIT` the refresher uses: info and create (apps/refresher
 * audit-stream.service). Not update: an update could shrink the stream's limits to nothing,
 * which is as good as a purge; an existing stream's settings are the operator's to change.
 */
export function auditStreamApi(stream = AUDIT_STREAM): string[] {
  return [JS_API_INFO, `$JS.API.STREAM.INFO.${stream}`, `$JS.API.STREAM.CREATE.${stream}`];
}

/**
 * The JetStream API of the audit app's durable consumer: info, create/update (nats.js
 * sends `CONSUMER.CREATE.<stream>.<name>.<filter>` when a filter is set, and the old
 * `DURABLE.CREATE` to servers before 2.9), pull (`MSG.NEXT`) and acks.
 */
export function auditConsumerApi(consumer = DEFAULT_AUDIT_CONSUMER, stream = AUDIT_STREAM): string[] {
  return [
    JS_API_INFO,
    `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
    `$JS.API.CONSUMER.CREATE.${stream}.${consumer}`,
    `$JS.API.CONSUMER.CREATE.${stream}.${consumer}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${consumer}`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    `$JS.ACK.${stream}.${consumer}.>`,
  ];
}

function assertName(value: string, what: string): void {
  if (!isValidName(value)) throw new RangeError(`${what} must match ${NAME_PATTERN.source}`);
}

/** The allow lists of one role, for a client whose inbox prefix is `inboxPrefix`. */
export function rolePermissions(role: AuthzRole, inboxPrefix: string): SubjectPermissions {
  switch (role.kind) {
    case 'consumer': {
      assertName(role.tenant, 'tenant');
      if (role.service !== undefined) assertName(role.service, 'service');
      // `>` as the authorization model writes it: the same reach as `*` (a connection is one subject token and
      // the refresher serves only 4-token subjects), and it lets a client subscribe either way.
      for (const c of role.connections ?? []) assertName(c, 'connection');
      const connections = role.connections?.length ? role.connections : ['>'];
      return {
        publish: connections.map((c) => `${TOKEN_GET_PREFIX}.${role.tenant}.${c}`),
        subscribe: [...connections.flatMap((c) => eventSubjects(role.tenant, c)), inbox(inboxPrefix)],
        allowResponses: false,
      };
    }
    case 'scoped-consumer': {
      assertName(role.service, 'service');
      const scope = ConsumerScope.parse(role.scope);
      if (scope.size === 0) throw new RangeError('scope needs at least one <tenant>.<connection> entry');
      // `*` stays a one-token wildcard on each side: the refresher serves only 4-token subjects.
      const entries = scope.entries.map(scopeEntryText);
      return {
        publish: entries.map((e) => `${TOKEN_GET_PREFIX}.${e}`),
        subscribe: [...scope.entries.flatMap((e) => eventSubjects(e.tenant, e.connection)), inbox(inboxPrefix)],
        allowResponses: false,
      };
    }
    case 'leaf':
      return leafPermissions(role);
    case 'tenant-admin':
      assertName(role.tenant, 'tenant');
      return {
        // Operations one by one rather than `tokenkeeper.admin.*.T.>`: same reach on
        // today's subjects, and an operation added later is not granted by accident.
        publish: [
          ...ADMIN_CREDENTIAL_OPERATIONS.map((op) => `${ADMIN_PREFIX}.${op}.${role.tenant}.*`),
          `${ADMIN_PREFIX}.list.${role.tenant}`,
          ...WEBHOOK_OPERATIONS.map((op) => `${ADMIN_PREFIX}.webhook.${op}.${role.tenant}`),
          `${AUDIT_QUERY_PREFIX}.${role.tenant}`,
        ],
        subscribe: [inbox(inboxPrefix)],
        allowResponses: false,
      };
    case 'operator':
      return {
        // token.get.> for `tokenctl get`: it reveals nothing the operator's `watch`
        // subscription to token.refreshed.> does not already show.
        publish: [`${ADMIN_PREFIX}.>`, AUDIT_QUERY_PREFIX, `${AUDIT_QUERY_PREFIX}.>`, `${TOKEN_GET_PREFIX}.>`],
        subscribe: [inbox(inboxPrefix), ...eventSubjects('*', '*')],
        allowResponses: false,
      };
    case 'refresher':
      return {
        publish: [
          ...TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.>`),
          `${AUDIT_SUBJECT_PREFIX}.>`,
          ...auditStreamApi(),
        ],
        subscribe: [
          `${TOKEN_GET_PREFIX}.>`,
          `${ADMIN_PREFIX}.>`,
          // Replica coherence: each replica applies its peers' events to its cache.
          ...TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.>`),
          inbox(inboxPrefix),
        ],
        allowResponses: true,
      };
    case 'audit': {
      const consumer = role.consumerName ?? DEFAULT_AUDIT_CONSUMER;
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(consumer))
        throw new RangeError('audit consumer name must match ^[A-Za-z0-9_-]{1,64}$');
      return {
        publish: auditConsumerApi(consumer),
        subscribe: [AUDIT_QUERY_PREFIX, `${AUDIT_QUERY_PREFIX}.>`, inbox(inboxPrefix)],
        allowResponses: true,
      };
    }
  }
}

/** Seen from the leaf: publish is what it may send to the hub, subscribe what the hub delivers to it. */
function leafPermissions(role: Extract<AuthzRole, { kind: 'leaf' }>): SubjectPermissions {
  assertName(role.leaf, 'leaf');
  const scope = ConsumerScope.parse(role.scope);
  if (scope.size === 0) throw new RangeError('a leaf needs at least one <tenant>.<connection> entry');
  if (role.inboxPrefixes.length === 0)
    throw new RangeError('a leaf needs the inbox of at least one consumer it serves');
  for (const prefix of role.inboxPrefixes) {
    // Its own token: a wildcard or a bare `_INBOX` would hand the leaf every client's replies.
    if (!/^_INBOX_[A-Za-z0-9_-]{1,600}$/.test(prefix))
      throw new RangeError(`inbox prefix ${prefix}: give _INBOX_<user>`);
  }
  const entries = scope.entries.map(scopeEntryText);
  return {
    publish: entries.map((e) => `${TOKEN_GET_PREFIX}.${e}`),
    subscribe: [
      ...scope.entries.flatMap((e) => eventSubjects(e.tenant, e.connection)),
      ...role.inboxPrefixes.map(inbox),
    ],
    allowResponses: false,
  };
}

/** Whether a consumer's whole grant lies inside the scope, so that a leaf of that scope can serve it. */
export function scopeServes(scope: ConsumerScope, role: AuthzRole): boolean {
  switch (role.kind) {
    case 'consumer':
      return role.connections?.length
        ? role.connections.every((connection) => scope.covers({ tenant: role.tenant, connection }))
        : scope.coversTenant(role.tenant);
    case 'scoped-consumer':
      return ConsumerScope.parse(role.scope).entries.every((e) => scope.coversEntry(e));
    default:
      return false;
  }
}

/**
 * The leaf-connection role of leaf node `leaf` with scope `scope`, serving every consumer among
 * `roles` whose grant lies inside the scope (their inboxes are what replies travel back on).
 * Throws when it would serve nobody: a leaf whose consumers get no replies is a mistake.
 */
export function leafRole(leaf: string, scope: readonly string[], roles: readonly AuthzRole[]): AuthzRole {
  const parsed = ConsumerScope.parse(scope);
  const served = roles.filter((r) => scopeServes(parsed, r));
  if (served.length === 0)
    throw new RangeError(`leaf ${leaf}: no consumer asked for lies inside its scope ${scope.join(',')}`);
  const inboxPrefixes = [...new Set(served.map((r) => inboxPrefixFor(defaultUserName(r))))];
  return { kind: 'leaf', leaf, scope: parsed.entries.map(scopeEntryText), inboxPrefixes };
}

/** One user per role; the name defaults to {@link defaultUserName}, the inbox to `_INBOX_<name>`. */
export function authzUser(role: AuthzRole, name = defaultUserName(role)): AuthzUser {
  // The name is a subject token of the inbox prefix: no dots, wildcards or spaces.
  if (!USER_NAME_PATTERN.test(name)) throw new RangeError(`user name must match ${USER_NAME_PATTERN.source}`);
  const inboxPrefix = inboxPrefixFor(name);
  return { name, role, inboxPrefix, permissions: rolePermissions(role, inboxPrefix) };
}

/** Users for a set of roles, refusing two that would share a name (and so an inbox). */
export function authzUsers(roles: Iterable<AuthzRole | { role: AuthzRole; name: string }>): AuthzUser[] {
  const users: AuthzUser[] = [];
  const names = new Set<string>();
  for (const entry of roles) {
    const user = 'role' in entry ? authzUser(entry.role, entry.name) : authzUser(entry);
    if (names.has(user.name)) throw new RangeError(`two roles would share the user name ${user.name}`);
    names.add(user.name);
    users.push(user);
  }
  return users;
}
