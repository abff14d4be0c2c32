import { Injectable } from '@nestjs/common';
import { ContractError, type CredentialKey, type CredentialView, type TokenListRequest } from '@tokenkeeper/contracts';
import { toCredentialView } from '../domain/token-view.js';
import { CredentialRepository } from '../persistence/credential.repository.js';

const DEFAULT_LIMIT = 100;

/**
 * `tokenkeeper.admin.list`: keyset paging over (tenant, connection). The cursor is opaque to
 * callers (base64url of the last key), so the order can change without breaking them.
 */
@Injectable()
export class CredentialListPager {
  constructor(private readonly repository: CredentialRepository) {}

  async list(request: TokenListRequest): Promise<{ items: CredentialView[]; nextCursor?: string }> {
    const limit = request.limit ?? DEFAULT_LIMIT;
    const after = request.cursor ? decodeCursor(request.cursor) : undefined;
    // One more than asked: whether a next page exists, without a count.
    const rows = await this.repository.list({
      tenant: request.tenant,
      status: request.status,
      expiringWithinDays: request.expiringWithinDays,
      after,
      limit: limit + 1,
    });
    const items = rows.slice(0, limit).map(toCredentialView);
    const last = items.at(-1);
    return rows.length > limit && last ? { items, nextCursor: encodeCursor(last) } : { items };
  }
}

export function encodeCursor(key: CredentialKey): string {
  return Buffer.from(JSON.stringify([key.tenant, key.connection])).toString('base64url');
}

export function decodeCursor(cursor: string): CredentialKey {
  try {
    const [tenant, connection] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof tenant === 'string' && typeof connection === 'string') return { tenant, connection };
  } catch {
    // fall through
  }
  throw new ContractError('bad_request', 'cursor is not one this service issued');
}
