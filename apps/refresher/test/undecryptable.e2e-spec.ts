import pg from 'pg';
import { createTestDatabase, startNatsServer, startSandboxProvider, waitFor } from '@tokenkeeper/testing';
import { expect, it } from 'vitest';
import { RawCaller, sandboxProviders, startTestRefresher, testEnv, testKeys } from './refresher.harness.js';

/** A row sealed under a key the refresher no longer has must not block the rest of its claim batch. */
it('parks an undecryptable credential and keeps refreshing its neighbours', async () => {
  const [nats, db, sandbox] = await Promise.all([startNatsServer(), createTestDatabase('tk_undec'), startSandboxProvider()]);
  const refresher = await startTestRefresher(testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }), sandboxProviders(sandbox));
  const caller = await RawCaller.connect(nats.url);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  try {
    // Both in tenant "acme", hence one bucket and one claim batch; both due in about 1.5 s,
    // after the corruption below.
    for (const connection of ['good', 'broken']) {
      await caller.admin('register', { tenant: 'acme', connection, provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3 });
    }
    await sql.query(`UPDATE credentials SET refresh_token_enc = decode('01056f6c646b6579' || repeat('00', 40), 'hex'), key_id = 'oldkey' WHERE connection = 'broken'`);
    const good = await waitFor(async () => {
      const d = await caller.admin('describe', { tenant: 'acme', connection: 'good' });
      return d.credential.version > 1 ? d.credential : null;
    });
    expect(good.status).toBe('active');
    const broken = await waitFor(async () => {
      const { rows } = await sql.query(`SELECT status, last_error_code, lease_id, next_refresh_at > now() + interval '30 minutes' AS parked FROM credentials WHERE connection = 'broken'`);
      return rows[0].status === 'failing' ? rows[0] : null;
    });
    expect(broken).toMatchObject({ last_error_code: 'internal', lease_id: null, parked: true });
    expect(refresher.logs.text()).toContain('stored token cannot be decrypted');
  } finally {
    await sql.end();
    await caller.close();
    await refresher.close();
    await Promise.all([sandbox.close(), nats.stop()]);
    await db.drop();
  }
});
