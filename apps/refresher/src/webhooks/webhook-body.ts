import { WEBHOOK_EVENT_TYPES, type WebhookBody, type WebhookEventType } from '@tokenkeeper/contracts';
import { randomUUID } from 'node:crypto';
import type { NewDelivery, OutboxRecordForWebhooks, WebhookEndpoint } from '../persistence/webhook.repository.js';

/** The credential's status right after a change of each type. */
const STATUS_AFTER: Record<WebhookEventType, string> = {
  registered: 'active',
  refreshed: 'active',
  recovered: 'active',
  expiring: 'active',
  connected: 'active',
  failed: 'failing',
  reauth_required: 'reauth_required',
  revoked: 'revoked',
  connect_failed: 'connect_failed',
};

const isEventType = (type: string): type is WebhookEventType =>
  (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/**
 * The body of a record's delivery to one endpoint. The fields are picked one by one from the
 * audit record, which is itself secret-free, and from the credential's metadata (the caller's
 * non-secret labels), so no token can reach a body. The id is made here, once: it is stored
 * with the body and sent unchanged on every retry.
 */
export function webhookBody(record: OutboxRecordForWebhooks, type: WebhookEventType): WebhookBody {
  const p = record.payload;
  const code = text(p.code);
  const message = text(p.message);
  const metadata = record.metadata;
  return {
    id: randomUUID(),
    type,
    tenant: record.tenant,
    connection: record.connection,
    provider: text(p.provider) ?? '',
    version: typeof p.version === 'number' ? p.version : 0,
    status: STATUS_AFTER[type],
    ...(code !== undefined ? { code } : {}),
    ...(message !== undefined ? { message } : {}),
    at: text(p.at) ?? new Date().toISOString(),
    ...(isStringMap(metadata) ? { metadata } : {}),
  };
}

function isStringMap(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

/** One delivery per endpoint of the record's tenant that asked for its type. */
export function planDeliveries(record: OutboxRecordForWebhooks, endpoints: readonly WebhookEndpoint[]): NewDelivery[] {
  if (!isEventType(record.type)) return [];
  const type = record.type;
  return endpoints
    .filter((e) => e.events.includes(type))
    .map((e) => {
      const body = webhookBody(record, type);
      return { id: body.id, endpointId: e.id, body: JSON.stringify(body) };
    });
}
