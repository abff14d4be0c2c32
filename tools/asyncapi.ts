/**
 * `npm run asyncapi`: writes docs/asyncapi.yaml, the wire contract as an AsyncAPI 3
 * document, from the contracts' own zod schemas (requests as parsed, replies and events
 * as sent). tools/asyncapi.spec.ts fails when the checked-in document differs from what
 * this generates, so the document cannot drift from the code.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AuditQueryReplySchema,
  AuditQueryRequestSchema,
  AuditRecordSchema,
  ConnectPayloadSchema,
  ConnectReplySchema,
  CredentialListReplySchema,
  CredentialPayloadSchema,
  CredentialReplySchema,
  NAME_RULE,
  REFRESHER_QUEUE_GROUP,
  RevokeReplySchema,
  TokenFailedEventSchema,
  TokenGetPayloadSchema,
  TokenGetReplySchema,
  TokenListRequestSchema,
  TokenRefreshedEventSchema,
  TokenRegisterPayloadSchema,
  TokenRevokedEventSchema,
  TokenRecoveredEventSchema,
  TokenExpiringEventSchema,
  WebhookDeleteRequestSchema,
  WebhookListReplySchema,
  WebhookListRequestSchema,
  WebhookOkReplySchema,
  WebhookSetRequestSchema,
} from '@tokenkeeper/contracts';
import { stringify } from 'yaml';
import { z } from 'zod';
import { REPO_ROOT } from './compile.js';

export const ASYNCAPI_PATH = join(REPO_ROOT, 'docs/asyncapi.yaml');

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    target: 'draft-7',
    io,
    unrepresentable: 'any',
  }) as Json;
  return rest;
}

const ref = (path: string) => ({ $ref: `#/${path}` });

const SIGNED_HEADERS: Json = {
  type: 'object',
  description:
    "Signature scheme 2. The signed bytes are the UTF-8 text `tokenkeeper/2`, LF, the subject (an event's own subject; for a reply, the " +
    'subject of the request it answers), LF, the Tokenkeeper-Signed-At value, LF, followed by the exact payload bytes. Readers that know ' +
    'the trusted signer keys drop a message that is unsigned, signed by another key, over another subject, too old or from the future. ' +
    'Test vectors: libs/contracts/src/signature-vectors.json.',
  required: ['Tokenkeeper-Signer', 'Tokenkeeper-Signed-At', 'Tokenkeeper-Signature'],
  properties: {
    'Tokenkeeper-Signer': {
      type: 'string',
      pattern: '^U[A-Z2-7]{55}$',
      description: "the signer's public key as a NATS user nkey",
    },
    'Tokenkeeper-Signed-At': {
      type: 'string',
      pattern: '^[0-9]{1,16}$',
      description: 'signing time, decimal milliseconds since the Unix epoch',
    },
    'Tokenkeeper-Signature': {
      type: 'string',
      pattern: '^v2\\.[A-Za-z0-9_-]{86}$',
      description: '`v2.` and the unpadded base64url Ed25519 signature',
    },
  },
};

interface Message {
  schema: z.ZodType;
  io: 'input' | 'output';
  summary: string;
  signed?: boolean;
}

const MESSAGES: Record<string, Message> = {
  TokenGetRequest: {
    schema: TokenGetPayloadSchema,
    io: 'input',
    summary: '`{}` or `{minTtlSeconds?, rejectedVersion?}`; an empty payload is `{}`',
  },
  TokenGetReply: {
    schema: TokenGetReplySchema,
    io: 'output',
    summary: 'a token valid for at least minTtlSeconds, or an error; signed when it carries a token',
    signed: true,
  },
  TokenRefreshed: {
    schema: TokenRefreshedEventSchema,
    io: 'output',
    summary: 'a new access token of the credential',
    signed: true,
  },
  TokenRegistered: {
    schema: TokenRefreshedEventSchema,
    io: 'output',
    summary: 'a credential registered or connected',
    signed: true,
  },
  TokenFailed: {
    schema: TokenFailedEventSchema,
    io: 'output',
    summary: 'a refresh failed (status says whether it is retried)',
    signed: true,
  },
  TokenRevoked: {
    schema: TokenRevokedEventSchema,
    io: 'output',
    summary: 'the credential was revoked; its version went up once more',
    signed: true,
  },
  TokenRecovered: {
    schema: TokenRecoveredEventSchema,
    io: 'output',
    summary: 'a credential that was failing refreshed again: since when it failed, after how many attempts',
    signed: true,
  },
  TokenExpiring: {
    schema: TokenExpiringEventSchema,
    io: 'output',
    summary: "the grant's refresh token reaches its absolute expiry soon; only a new connect renews it",
    signed: true,
  },
  RegisterRequest: {
    schema: TokenRegisterPayloadSchema,
    io: 'input',
    summary: 'store a credential (unknown fields are a bad_request)',
  },
  CredentialRequest: { schema: CredentialPayloadSchema, io: 'input', summary: '`{}`' },
  CredentialReply: { schema: CredentialReplySchema, io: 'output', summary: 'the credential, never a secret' },
  RevokeReply: { schema: RevokeReplySchema, io: 'output', summary: 'whether the provider revoked the grant too' },
  ConnectRequest: {
    schema: ConnectPayloadSchema,
    io: 'input',
    summary: 'start the connect flow: a one-time link for a person',
  },
  ConnectReply: { schema: ConnectReplySchema, io: 'output', summary: 'the one-time link and when it expires' },
  ListRequest: { schema: TokenListRequestSchema, io: 'input', summary: 'a page of credentials' },
  ListReply: { schema: CredentialListReplySchema, io: 'output', summary: 'credentials, never a secret' },
  AuditQueryRequest: { schema: AuditQueryRequestSchema, io: 'input', summary: 'a page of audit records' },
  AuditQueryReply: { schema: AuditQueryReplySchema, io: 'output', summary: 'audit records' },
  WebhookSetRequest: {
    schema: WebhookSetRequestSchema,
    io: 'input',
    summary: 'create or replace an endpoint (the secret is stored encrypted, never returned)',
  },
  WebhookDeleteRequest: { schema: WebhookDeleteRequestSchema, io: 'input', summary: 'remove an endpoint' },
  WebhookListRequest: { schema: WebhookListRequestSchema, io: 'input', summary: '`{}`' },
  WebhookOkReply: { schema: WebhookOkReplySchema, io: 'output', summary: 'done' },
  WebhookListReply: {
    schema: WebhookListReplySchema,
    io: 'output',
    summary: "the tenant's endpoints and their last delivery, never a secret",
  },
  AuditRecord: {
    schema: AuditRecordSchema,
    io: 'output',
    summary: 'a secret-free record of one lifecycle change (JetStream, Nats-Msg-Id = recordId)',
  },
};

interface Channel {
  address: string;
  message: keyof typeof MESSAGES;
  description: string;
  reply?: keyof typeof MESSAGES;
  /** `receive`: the services answer or consume it; `send`: the services publish it. */
  action: 'receive' | 'send';
  queue?: string;
}

const ADMIN = 'tokenkeeper.admin';
export const CHANNELS: Record<string, Channel> = {
  tokenGet: {
    address: 'token.get.{tenant}.{connection}',
    message: 'TokenGetRequest',
    reply: 'TokenGetReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'data plane: a token for one credential',
  },
  tokenRefreshed: {
    address: 'token.refreshed.{tenant}.{connection}',
    message: 'TokenRefreshed',
    action: 'send',
    description: 'core NATS event',
  },
  tokenRegistered: {
    address: 'token.registered.{tenant}.{connection}',
    message: 'TokenRegistered',
    action: 'send',
    description: 'core NATS event',
  },
  tokenFailed: {
    address: 'token.failed.{tenant}.{connection}',
    message: 'TokenFailed',
    action: 'send',
    description: 'core NATS event',
  },
  tokenRevoked: {
    address: 'token.revoked.{tenant}.{connection}',
    message: 'TokenRevoked',
    action: 'send',
    description: 'core NATS event',
  },
  tokenRecovered: {
    address: 'token.recovered.{tenant}.{connection}',
    message: 'TokenRecovered',
    action: 'send',
    description: 'core NATS event',
  },
  tokenExpiring: {
    address: 'token.expiring.{tenant}.{connection}',
    message: 'TokenExpiring',
    action: 'send',
    description: 'core NATS event',
  },
  adminRegister: {
    address: `${ADMIN}.register.{tenant}.{connection}`,
    message: 'RegisterRequest',
    reply: 'CredentialReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane',
  },
  adminRefresh: {
    address: `${ADMIN}.refresh.{tenant}.{connection}`,
    message: 'CredentialRequest',
    reply: 'CredentialReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: refresh now',
  },
  adminRevoke: {
    address: `${ADMIN}.revoke.{tenant}.{connection}`,
    message: 'CredentialRequest',
    reply: 'RevokeReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: revoke, at the provider too where it has a revocation endpoint',
  },
  adminDescribe: {
    address: `${ADMIN}.describe.{tenant}.{connection}`,
    message: 'CredentialRequest',
    reply: 'CredentialReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: status, expiry, next refresh, last error',
  },
  adminConnect: {
    address: `${ADMIN}.connect.{tenant}.{connection}`,
    message: 'ConnectRequest',
    reply: 'ConnectReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: the connect flow',
  },
  adminListTenant: {
    address: `${ADMIN}.list.{tenant}`,
    message: 'ListRequest',
    reply: 'ListReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: "control plane: one tenant's credentials",
  },
  adminList: {
    address: `${ADMIN}.list`,
    message: 'ListRequest',
    reply: 'ListReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: credentials across tenants',
  },
  adminWebhookSet: {
    address: `${ADMIN}.webhook.set.{tenant}`,
    message: 'WebhookSetRequest',
    reply: 'WebhookOkReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: a webhook endpoint of the tenant',
  },
  adminWebhookDelete: {
    address: `${ADMIN}.webhook.delete.{tenant}`,
    message: 'WebhookDeleteRequest',
    reply: 'WebhookOkReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: 'control plane: remove a webhook endpoint',
  },
  adminWebhookList: {
    address: `${ADMIN}.webhook.list.{tenant}`,
    message: 'WebhookListRequest',
    reply: 'WebhookListReply',
    action: 'receive',
    queue: REFRESHER_QUEUE_GROUP,
    description: "control plane: the tenant's webhook endpoints",
  },
  auditRecords: {
    address: 'audit.token.{type}.{tenant}.{connection}',
    message: 'AuditRecord',
    action: 'send',
    description: 'JetStream stream TOKEN_AUDIT',
  },
  auditQueryTenant: {
    address: 'audit.query.{tenant}',
    message: 'AuditQueryRequest',
    reply: 'AuditQueryReply',
    action: 'receive',
    queue: 'audit',
    description: "one tenant's audit trail",
  },
  auditQuery: {
    address: 'audit.query',
    message: 'AuditQueryRequest',
    reply: 'AuditQueryReply',
    action: 'receive',
    queue: 'audit',
    description: 'the audit trail across tenants',
  },
};

const PARAMETERS: Json = {
  tenant: { description: `a tenant name, ${NAME_RULE}` },
  connection: { description: `a connection name, ${NAME_RULE}` },
  type: { description: 'an audit record type' },
};

function channelsAndOperations(): { channels: Json; operations: Json } {
  const channels: Json = {};
  const operations: Json = {};
  for (const [id, channel] of Object.entries(CHANNELS)) {
    const params = [...channel.address.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    channels[id] = {
      address: channel.address,
      description: channel.description,
      ...(params.length
        ? { parameters: Object.fromEntries(params.map((p) => [p, ref(`components/parameters/${p}`)])) }
        : {}),
      messages: { [channel.message]: ref(`components/messages/${channel.message}`) },
    };
    const operation: Json = {
      action: channel.action,
      channel: ref(`channels/${id}`),
      messages: [ref(`channels/${id}/messages/${channel.message}`)],
      ...(channel.queue ? { bindings: { nats: { queue: channel.queue, bindingVersion: '0.1.0' } } } : {}),
    };
    if (channel.reply) {
      const replyId = `${id}Reply`;
      channels[replyId] = {
        address: null,
        description:
          "the requester's reply subject: an inbox under its own prefix (`_INBOX…`); replies to any other subject are dropped",
        messages: { [channel.reply]: ref(`components/messages/${channel.reply}`) },
      };
      operation.reply = {
        channel: ref(`channels/${replyId}`),
        messages: [ref(`channels/${replyId}/messages/${channel.reply}`)],
      };
    }
    operations[id] = operation;
  }
  return { channels, operations };
}

export function buildAsyncApi(version: string): Json {
  const messages: Json = {};
  for (const [id, message] of Object.entries(MESSAGES)) {
    messages[id] = {
      name: id,
      summary: message.summary,
      contentType: 'application/json',
      payload: jsonSchema(message.schema, message.io),
      ...(message.signed ? { headers: SIGNED_HEADERS } : {}),
    };
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Tokenkeeper',
      version,
      description:
        'OAuth2 access tokens kept fresh, over NATS. Every payload is UTF-8 JSON with no envelope. Replies are `{"ok":true,…}` or ' +
        '`{"ok":false,"error":{"code","message"}}`. The credential a message is about is named in its subject, so that NATS ' +
        'permissions decide who may touch which tenant. Generated from the contracts (npm run asyncapi); docs/protocol.md explains it.',
      license: { name: 'MIT' },
    },
    defaultContentType: 'application/json',
    servers: { local: { host: '127.0.0.1:4222', protocol: 'nats', description: 'a developer machine' } },
    ...channelsAndOperations(),
    components: { parameters: PARAMETERS, messages },
  };
}

export function renderAsyncApi(): string {
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  return `# Generated by \`npm run asyncapi\` from libs/contracts: do not edit by hand.\n${stringify(buildAsyncApi(version), { lineWidth: 0, aliasDuplicateObjects: false })}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(ASYNCAPI_PATH, renderAsyncApi());
  process.stdout.write(`asyncapi: wrote ${ASYNCAPI_PATH}\n`);
}
