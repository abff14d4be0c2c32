import { describe, expect, it } from 'vitest';
import type { DataSource } from 'typeorm';
import { FakeClock, T0 } from '../../test/unit/core-fakes.js';
import type { TokenCipher } from '../crypto/token-cipher.js';
import { CredentialMapper, type CredentialRow } from './credential.mapper.js';
import { CredentialRepository } from './credential.repository.js';

/** A leased row without tokens (nothing to decrypt). */
function leasedRow(): CredentialRow {
  const now = new Date(T0);
  return {
    tenant: 'acme',
    connection: 'github',
    provider: 'sandbox',
    status: 'active',
    version: 3,
    token_type: 'Bearer',
    scope: null,
    access_token_enc: null,
    refresh_token_enc: null,
    key_id: null,
    issued_at: now,
    expires_at: null,
    next_refresh_at: now,
    last_refreshed_at: null,
    failures: 0,
    last_error_code: null,
    last_error_message: null,
    lease_id: 'lease-1',
    created_at: now,
    updated_at: now,
  };
}

/** A database whose statement takes `ms` of the injected clock (lock wait, event-loop lag). */
function slowDb(clock: FakeClock, ms: number): DataSource {
  return {
    query: async () => {
      clock.advance(ms);
      return [leasedRow()];
    },
  } as unknown as DataSource;
}

describe('CredentialRepository lease clock', () => {
  const mapper = new CredentialMapper({} as TokenCipher);

  it('counts a claimed lease from the moment before the statement, not from its answer', async () => {
    const clock = new FakeClock(T0);
    const repository = new CredentialRepository(slowDb(clock, 3_000), mapper, clock);
    const [leased] = await repository.claimDue(0, 10, 'me', 30);
    expect(clock.now()).toBe(T0 + 3_000);
    expect(leased.leaseUntilMs).toBe(T0 + 30_000);
  });

  it('does the same for an on-demand lease and for an extension', async () => {
    const clock = new FakeClock(T0);
    const repository = new CredentialRepository(slowDb(clock, 2_500), mapper, clock);
    const leased = (await repository.tryLease({ tenant: 'acme', connection: 'github' }, 'me', 30))!;
    expect(leased.leaseUntilMs).toBe(T0 + 30_000);
    const extended = await repository.extendLease(leased.credential, leased.lease, 30);
    expect(extended).toBe(T0 + 2_500 + 30_000);
  });
});
