import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { Msg } from '@nats-io/transport-node';
import {
  CredentialPayloadSchema,
  parseCredentialRequest,
  parseListRequest,
  parseTokenGetRequest,
  TokenRegisterPayloadSchema,
  WireSubscription,
} from '@tokenkeeper/contracts';
import { CredentialListPager } from './credential-list.pager.js';
import { TokenService } from './token.service.js';

/**
 * The request-reply subjects of the wire contract. The subject names the
 * credential; each handler reads it from the NATS message (`@Ctx()`: Nest passes only the
 * payload to a handler without parameter decorators), validates the payload with the
 * contract's schema (payload names, if any, must equal the subject's) and returns the
 * reply body. Errors are thrown as ContractError and turned into replies by the
 * transport, in one place.
 */
@Controller()
export class TokenController {
  constructor(
    private readonly tokens: TokenService,
    private readonly pager: CredentialListPager,
  ) {}

  /** Registered for routing; refresher.app.ts serves the subject through `getDirect`. */
  @MessagePattern(WireSubscription.tokenGet)
  get(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.getDirect(data, msg.subject);
  }

  /** The hot path, a NatsRpcServer direct handler: no Nest pipeline. */
  getDirect(data: unknown, subject: string) {
    return this.tokens.get(parseTokenGetRequest(data, subject));
  }

  @MessagePattern(WireSubscription.admin('register'))
  async register(@Payload() data: unknown, @Ctx() msg: Msg) {
    return {
      ok: true,
      credential: await this.tokens.register(parseCredentialRequest(TokenRegisterPayloadSchema, data, msg.subject)),
    };
  }

  @MessagePattern(WireSubscription.admin('refresh'))
  async refresh(@Payload() data: unknown, @Ctx() msg: Msg) {
    return {
      ok: true,
      credential: await this.tokens.refreshNow(parseCredentialRequest(CredentialPayloadSchema, data, msg.subject)),
    };
  }

  @MessagePattern(WireSubscription.admin('revoke'))
  async revoke(@Payload() data: unknown, @Ctx() msg: Msg) {
    return {
      ok: true,
      ...(await this.tokens.revoke(parseCredentialRequest(CredentialPayloadSchema, data, msg.subject))),
    };
  }

  @MessagePattern(WireSubscription.admin('describe'))
  async describe(@Payload() data: unknown, @Ctx() msg: Msg) {
    return {
      ok: true,
      credential: await this.tokens.describe(parseCredentialRequest(CredentialPayloadSchema, data, msg.subject)),
    };
  }

  /** Across tenants; a payload `tenant` filters. */
  @MessagePattern(WireSubscription.adminList)
  listAll(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.list(data, msg.subject);
  }

  /** One tenant, named by the subject. */
  @MessagePattern(WireSubscription.adminListOfTenant)
  listTenant(@Payload() data: unknown, @Ctx() msg: Msg) {
    return this.list(data, msg.subject);
  }

  private async list(data: unknown, subject: string) {
    return { ok: true, ...(await this.pager.list(parseListRequest(data, subject))) };
  }
}
