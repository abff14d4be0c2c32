import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';

/** Every database wait is bounded, by default and by setting. */
describe('database timeouts (DATABASE_*_TIMEOUT_MS)', () => {
  it('has defaults below the default lease, so a hung statement fails while the lease can be extended', () => {
    const config = loadConfig({});
    expect(config.database).toMatchObject({
      connectTimeoutMs: 5_000,
      statementTimeoutMs: 15_000,
      idleInTransactionTimeoutMs: 15_000,
    });
    expect(config.database.statementTimeoutMs).toBeLessThan(config.refresh.leaseSeconds * 1000);
  });

  it('reads and validates the variables', () => {
    const config = loadConfig({
      DATABASE_CONNECT_TIMEOUT_MS: '1000',
      DATABASE_STATEMENT_TIMEOUT_MS: '2000',
      DATABASE_IDLE_IN_TX_TIMEOUT_MS: '3000',
    });
    expect(config.database).toMatchObject({
      connectTimeoutMs: 1_000,
      statementTimeoutMs: 2_000,
      idleInTransactionTimeoutMs: 3_000,
    });
    expect(() => loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '0' })).toThrow(/DATABASE_STATEMENT_TIMEOUT_MS/);
  });

  it('no longer requires the lease to outlast a request (the lease is extended while it runs)', () => {
    expect(loadConfig({ LEASE_SECONDS: '5', REFRESH_TIMEOUT_MS: '8000' }).refresh.leaseSeconds).toBe(5);
  });
});
