import { z } from 'zod';
import { ContractError } from './errors.js';
import { isValidName, NAME_PATTERN, NAME_RULE } from './names.js';
import { ADMIN_PREFIX } from './wire-subjects.js';

/**
 * Webhooks: the credential lifecycle delivered over HTTP to systems that are not on the bus.
 * Endpoints belong to one tenant and are managed on `tokenkeeper.admin.webhook.<op>.<tenant>`.
 */

/** What an endpoint may subscribe to; each is the audit record type of the same name. */
export const WEBHOOK_EVENT_TYPES = [
  'registered',
  'refreshed',
  'failed',
  'reauth_required',
  'recovered',
  'revoked',
  'expiring',
  'connected',
  'connect_failed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const WEBHOOK_OPERATIONS = ['set', 'delete', 'list'] as const;
export type WebhookOperation = (typeof WEBHOOK_OPERATIONS)[number];

/** The header that carries `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const WEBHOOK_SIGNATURE_HEADER = 'Tokenkeeper-Webhook-Signature';
export const WEBHOOK_SECRET_MIN_LENGTH = 32;

/** `tokenkeeper.admin.webhook.<op>.*`: what the refresher subscribes to. */
export const webhookSubscription = (operation: WebhookOperation) => `${ADMIN_PREFIX}.webhook.${operation}.*`;

export function webhookSubject(operation: WebhookOperation, tenant: string): string {
  if (!isValidName(tenant)) throw new ContractError('bad_request', `tenant must match ${NAME_PATTERN.source}`);
  return `${ADMIN_PREFIX}.webhook.${operation}.${tenant}`;
}

/** The tenant of `tokenkeeper.admin.webhook.<op>.<tenant>`, or `bad_request`. */
export function parseWebhookSubject(subject: string): string {
  const parts = subject.split('.');
  if (parts.length !== 5 || `${parts[0]}.${parts[1]}.${parts[2]}` !== `${ADMIN_PREFIX}.webhook`) {
    throw new ContractError('bad_request', 'subject does not name a tenant as tokenkeeper.admin.webhook.<op>.<tenant>');
  }
  if (!isValidName(parts[4])) throw new ContractError('bad_request', `tenant must match ${NAME_PATTERN.source}`);
  return parts[4];
}

const endpointId = z.string({ error: 'id must be a string' }).regex(NAME_PATTERN, `id must match ${NAME_RULE}`);

export const WebhookSetRequestSchema = z.strictObject({
  id: endpointId,
  url: z
    .url({ protocol: /^https?$/, error: 'url must be an http(s) URL' })
    .max(2_048)
    .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), 'url must not carry credentials'),
  secret: z
    .string({ error: 'secret must be a string' })
    .min(WEBHOOK_SECRET_MIN_LENGTH, `secret must be at least ${WEBHOOK_SECRET_MIN_LENGTH} characters`)
    .max(1_024),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1).max(WEBHOOK_EVENT_TYPES.length),
});
export type WebhookSetRequest = z.infer<typeof WebhookSetRequestSchema>;

export const WebhookDeleteRequestSchema = z.strictObject({ id: endpointId });
export type WebhookDeleteRequest = z.infer<typeof WebhookDeleteRequestSchema>;

export const WebhookListRequestSchema = z.strictObject({});

/** The last attempt of an endpoint's most recent delivery: what the endpoint answered, and when. */
export const WebhookLastDeliverySchema = z.object({
  deliveryId: z.uuid(),
  state: z.enum(['pending', 'delivered', 'parked']),
  attempts: z.number().int().min(0),
  status: z.number().int().optional(),
  error: z.string().optional(),
  at: z.iso.datetime({ offset: true }),
});

export const WebhookListItemSchema = z.object({
  id: endpointId,
  url: z.string(),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES)),
  lastDelivery: WebhookLastDeliverySchema.optional(),
});
export type WebhookListItem = z.infer<typeof WebhookListItemSchema>;

export const WebhookListReplySchema = z.object({ ok: z.literal(true), items: z.array(WebhookListItemSchema) });

/** The JSON body of one delivery. Never a token: the fields are listed one by one. */
export const WebhookBodySchema = z.object({
  id: z.uuid(),
  type: z.enum(WEBHOOK_EVENT_TYPES),
  tenant: z.string(),
  connection: z.string(),
  provider: z.string(),
  version: z.number().int(),
  status: z.string(),
  code: z.string().optional(),
  message: z.string().optional(),
  at: z.iso.datetime({ offset: true }),
  metadata: z.record(z.string(), z.string()).optional(),
});
export type WebhookBody = z.infer<typeof WebhookBodySchema>;

export const WebhookOkReplySchema = z.object({ ok: z.literal(true) });
