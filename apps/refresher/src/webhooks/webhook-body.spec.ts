import { WebhookBodySchema } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import type { OutboxRecordForWebhooks, WebhookEndpoint } from '../persistence/webhook.repository.js';
import { planDeliveries, webhookBody } from './webhook-body.js';

const record = (over: Partial<OutboxRecordForWebhooks> = {}): OutboxRecordForWebhooks => ({
  id: '7',
  tenant: 'acme',
  connection: 'crm',
  type: 'refreshed',
  payload: { provider: 'sandbox', version: 3, at: '2026-12-07T02:50:00.000Z', code: 'x', replica: 'r1' },
  metadata: null,
  ...over,
});

describe('webhookBody', () => {
  it("carries the credential's metadata, and only the listed fields of the record", () => {
    const body = webhookBody(
      record({
        metadata: { customer: 'cus_42' },
        // A field a future record might carry: it must not reach a body by being spread.
        payload: { provider: 'sandbox', version: 3, at: '2026-12-07T02:50:00.000Z', accessToken: 'at-secret' },
      }),
      'refreshed',
    );
    expect(WebhookBodySchema.strict().parse(body)).toMatchObject({
      type: 'refreshed',
      tenant: 'acme',
      connection: 'crm',
      provider: 'sandbox',
      version: 3,
      status: 'active',
      metadata: { customer: 'cus_42' },
    });
    expect(JSON.stringify(body)).not.toContain('at-secret');
  });

  it('leaves metadata out when the credential has none, or when it is not a map of strings', () => {
    expect(webhookBody(record(), 'refreshed')).not.toHaveProperty('metadata');
    const odd = record({ metadata: { n: 1 } as unknown as Record<string, string> });
    expect(webhookBody(odd, 'refreshed')).not.toHaveProperty('metadata');
  });
});

describe('planDeliveries', () => {
  const endpoints: WebhookEndpoint[] = [
    { tenant: 'acme', id: 'a', url: 'https://a.example/', events: ['refreshed'] },
    { tenant: 'acme', id: 'b', url: 'https://b.example/', events: ['failed'] },
  ];

  it('makes one delivery per endpoint that asked for the type, each with its own id stored in its body', () => {
    const planned = planDeliveries(record(), endpoints);
    expect(planned.map((d) => d.endpointId)).toEqual(['a']);
    expect(JSON.parse(planned[0].body)).toMatchObject({ id: planned[0].id });
  });

  it('makes none for a record type that is not a webhook event', () => {
    expect(planDeliveries(record({ type: 'refresh_started' }), endpoints)).toEqual([]);
  });
});
