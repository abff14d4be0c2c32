import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { Msg } from '@nats-io/transport-node';
import { type AuditQueryReply, parseAuditQueryRequest, WireSubscription } from '@tokenkeeper/contracts';
import { AuditRecordRepository } from '../persistence/audit-record.repository.js';

export const DEFAULT_QUERY_LIMIT = 100;

/**
 * `audit.query.<tenant>` (one tenant; a payload `tenant` must equal the subject's) and the
 * cross-tenant `audit.query` (a payload `tenant` filters): `{connection?, type?, since?,
 * limit?, cursor?}` → `{ok, items, nextCursor?}`, newest first. Paging is by keyset on
 * (at, id): pass the reply's `nextCursor` as `cursor` for the next page, which stays
 * stable while new records arrive.
 */
@Controller()
export class AuditQueryController {
  constructor(private readonly records: AuditRecordRepository) {}

  @MessagePattern(WireSubscription.auditQuery)
  queryAll(@Payload() data: unknown, @Ctx() msg: Msg): Promise<AuditQueryReply> {
    return this.query(data, msg.subject);
  }

  @MessagePattern(WireSubscription.auditQueryOfTenant)
  queryTenant(@Payload() data: unknown, @Ctx() msg: Msg): Promise<AuditQueryReply> {
    return this.query(data, msg.subject);
  }

  private async query(data: unknown, subject: string): Promise<AuditQueryReply> {
    const request = parseAuditQueryRequest(data, subject);
    const page = await this.records.query({ ...request, limit: request.limit ?? DEFAULT_QUERY_LIMIT });
    return { ok: true, ...page };
  }
}
