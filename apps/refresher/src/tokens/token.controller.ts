import { Controller } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import {
  CredentialKeyRequestSchema,
  parseRequest,
  parseTokenGetRequest,
  RpcSubject,
  TokenListRequestSchema,
  TokenRegisterRequestSchema,
} from '@tokenkeeper/contracts';
import { CredentialListPager } from './credential-list.pager.js';
import { TokenService } from './token.service.js';

/**
 * The request-reply subjects of the wire contract. Each handler validates its payload
 * with the contract's schema and returns the reply body; errors are thrown as
 * ContractError and turned into replies by the transport, in one place.
 */
@Controller()
export class TokenController {
  constructor(
    private readonly tokens: TokenService,
    private readonly pager: CredentialListPager,
  ) {}

  /** The hot path: refresher.app.ts also hands this to NatsRpcServer as a direct handler. */
  @MessagePattern(RpcSubject.get)
  get(data: unknown) {
    return this.tokens.get(parseTokenGetRequest(data));
  }

  @MessagePattern(RpcSubject.register)
  async register(data: unknown) {
    return { ok: true, credential: await this.tokens.register(parseRequest(TokenRegisterRequestSchema, data)) };
  }

  @MessagePattern(RpcSubject.refresh)
  async refresh(data: unknown) {
    return { ok: true, credential: await this.tokens.refreshNow(parseRequest(CredentialKeyRequestSchema, data)) };
  }

  @MessagePattern(RpcSubject.revoke)
  async revoke(data: unknown) {
    return { ok: true, ...(await this.tokens.revoke(parseRequest(CredentialKeyRequestSchema, data))) };
  }

  @MessagePattern(RpcSubject.describe)
  async describe(data: unknown) {
    return { ok: true, credential: await this.tokens.describe(parseRequest(CredentialKeyRequestSchema, data)) };
  }

  @MessagePattern(RpcSubject.list)
  async list(data: unknown) {
    return { ok: true, ...(await this.pager.list(parseRequest(TokenListRequestSchema, data))) };
  }
}
