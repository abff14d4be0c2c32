import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { Msg } from '@nats-io/transport-node';
import { webhookSubscription } from '@tokenkeeper/contracts';
import { WebhookAdminService } from './webhook-admin.service.js';

/** `tokenkeeper.admin.webhook.{set,delete,list}.<tenant>`. */
@Controller()
export class WebhookAdminController {
  constructor(private readonly webhooks: WebhookAdminService) {}

  @MessagePattern(webhookSubscription('set'))
  set(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.webhooks.set(data, msg.subject);
  }

  @MessagePattern(webhookSubscription('delete'))
  delete(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.webhooks.delete(data, msg.subject);
  }

  @MessagePattern(webhookSubscription('list'))
  list(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.webhooks.list(data, msg.subject);
  }
}
