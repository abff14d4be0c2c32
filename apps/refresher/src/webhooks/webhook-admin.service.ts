import { Injectable } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import {
  ContractError,
  parseRequest,
  parseWebhookSubject,
  WebhookDeleteRequestSchema,
  WebhookListRequestSchema,
  WebhookSetRequestSchema,
  type WebhookListItem,
} from '@tokenkeeper/contracts';
import { WebhookRepository } from '../persistence/webhook.repository.js';

/**
 * The admin plane of webhook endpoints. The tenant is always the subject's, which NATS
 * permissions grant per tenant; the secret is stored encrypted and never answered.
 */
@Injectable()
export class WebhookAdminService {
  constructor(private readonly repository: WebhookRepository) {}

  async set(data: unknown, subject: string): Promise<{ ok: true }> {
    const tenant = parseWebhookSubject(subject);
    const request = parseRequest(WebhookSetRequestSchema, data);
    await this.repository.setEndpoint(
      { tenant, id: request.id, url: request.url, events: [...new Set(request.events)] },
      new Secret(request.secret),
    );
    return { ok: true };
  }

  async delete(data: unknown, subject: string): Promise<{ ok: true }> {
    const tenant = parseWebhookSubject(subject);
    const { id } = parseRequest(WebhookDeleteRequestSchema, data);
    if (!(await this.repository.deleteEndpoint(tenant, id))) {
      throw new ContractError('not_found', `no webhook endpoint ${id} in tenant ${tenant}`);
    }
    return { ok: true };
  }

  async list(data: unknown, subject: string): Promise<{ ok: true; items: WebhookListItem[] }> {
    const tenant = parseWebhookSubject(subject);
    parseRequest(WebhookListRequestSchema, data ?? {});
    return { ok: true, items: await this.repository.listEndpoints(tenant) };
  }
}
