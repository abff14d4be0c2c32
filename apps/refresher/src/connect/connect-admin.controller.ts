import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { Msg } from '@nats-io/transport-node';
import { ConnectPayloadSchema, parseCredentialRequest, WireSubscription } from '@tokenkeeper/contracts';
import { ConnectService } from './connect.service.js';

/** `tokenkeeper.admin.connect.<tenant>.<connection>`: the credential is the subject's, as on every admin subject. */
@Controller()
export class ConnectAdminController {
  constructor(private readonly connect: ConnectService) {}

  @MessagePattern(WireSubscription.admin('connect'))
  async start(@Payload() data: unknown, @Ctx() msg: Msg) {
    return { ok: true, ...(await this.connect.start(parseCredentialRequest(ConnectPayloadSchema, data, msg.subject))) };
  }
}
