import { execFileSync, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';

// The unit tier's guard (tools/unit-tier.setup.ts) is what keeps servers and processes out.
describe('the unit tier', () => {
  it('refuses child processes, named imports included', () => {
    expect(() => spawn('true')).toThrow(/unit tier: child_process.spawn .*e2e-spec/);
    expect(() => execFileSync('true')).toThrow(/unit tier: child_process.execFileSync/);
  });

  it("refuses connections to PostgreSQL's and NATS's ports", () => {
    expect(() => createConnection({ host: '127.0.0.1', port: 5432 })).toThrow(/no connection to PostgreSQL/);
    expect(() => createConnection(4222, '127.0.0.1')).toThrow(/no connection to NATS/);
  });
});
