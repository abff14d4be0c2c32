import { Controller } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { AUDIT_QUERY_SUBJECT, AuditQueryRequestSchema, type AuditQueryReply, parseRequest } from '@tokenkeeper/contracts';
import { AuditRecordRepository } from '../persistence/audit-record.repository.js';

export const DEFAULT_QUERY_LIMIT = 100;

/**
 * `audit.query`: `{tenant?, connection?, type?, since?, limit?, cursor?}` →
 * `{ok, items, nextCursor?}`, newest first. Paging is by keyset on (at, id): pass the
 * reply's `nextCursor` as `cursor` for the next page, which stays stable while new
 * records arrive.
 */
@Controller()
export class AuditQueryController {
  constructor(private readonly records: AuditRecordRepository) {}

  @MessagePattern(AUDIT_QUERY_SUBJECT)
  async query(data: unknown): Promise<AuditQueryReply> {
    const request = parseRequest(AuditQueryRequestSchema, data);
    const page = await this.records.query({ ...request, limit: request.limit ?? DEFAULT_QUERY_LIMIT });
    return { ok: true, ...page };
  }
}
