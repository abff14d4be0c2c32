import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Secret } from '@tokenkeeper/common';
import { createTestDatabase, startNatsServer, startSandboxProvider, waitFor } from '@tokenkeeper/testing';
import { expect, it } from 'vitest';
import { ReencryptionService } from '../src/refresh/reencryption.service.js';
import { openRepository } from './cluster.fixtures.js';
import { RawCaller, sandboxProviders, startTestRefresher, testEnv, testKeys } from './refresher.harness.js';

/** A row sealed under a key the refresher no longer has must not block the rest of its claim batch. */
it('parks an undecryptable credential and keeps refreshing its neighbours', async () => {
  const [nats, db, sandbox] = await Promise.all([
    startNatsServer(),
    createTestDatabase('tk_undec'),
    startSandboxProvider(),
  ]);
  const refresher = await startTestRefresher(
    testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
    sandboxProviders(sandbox),
  );
  const caller = await RawCaller.connect(nats.url);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  try {
    // Both in tenant "acme", hence one bucket and one claim batch; both due in about 1.5 s,
    // after the corruption below.
    for (const connection of ['good', 'broken']) {
      await caller.admin('register', {
        tenant: 'acme',
        connection,
        provider: 'sandbox',
        ...sandbox.issueTokens(),
        expiresIn: 3,
      });
    }
    await sql.query(
      `UPDATE credentials SET refresh_token_enc = decode('01056f6c646b6579' || repeat('00', 40), 'hex'), key_id = 'oldkey' WHERE connection = 'broken'`,
    );
    const good = await waitFor(async () => {
      const d = await caller.admin('describe', { tenant: 'acme', connection: 'good' });
      return d.credential.version > 1 ? d.credential : null;
    });
    expect(good.status).toBe('active');
    const broken = await waitFor(async () => {
      const { rows } = await sql.query(
        `SELECT status, last_error_code, lease_id, next_refresh_at > now() + interval '30 minutes' AS parked FROM credentials WHERE connection = 'broken'`,
      );
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

/**
 * An undecryptable row is parked with an audit record, does not
 * break describe, list, revoke or the re-encryption sweep, and once its key is back an
 * on-demand refresh is no longer blocked by the parking.
 */
it('an undecryptable row leaves metadata calls, the sweep and later on-demand refreshes working', async () => {
  const [nats, db, sandbox] = await Promise.all([
    startNatsServer(),
    createTestDatabase('tk_undec'),
    startSandboxProvider(),
  ]);
  const oldKey = `k1:${randomBytes(32).toString('base64')}`;
  const keys = `k2:${randomBytes(32).toString('base64')},${oldKey}`;
  const refresher = await startTestRefresher(
    testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys }),
    sandboxProviders(sandbox),
  );
  const caller = await RawCaller.connect(nats.url);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  const legacy = await openRepository(db.url, oldKey);
  try {
    for (const connection of ['broken', 'good']) {
      await caller.admin('register', {
        tenant: 'acme',
        connection,
        provider: 'sandbox',
        ...sandbox.issueTokens(),
        expiresIn: 3,
      });
    }
    // A row still sealed under the older key, behind the broken one in primary-key order.
    const tokens = sandbox.issueTokens();
    await legacy.repository.register(
      {
        tenant: 'acme',
        connection: 'old',
        provider: 'sandbox',
        tokenType: 'Bearer',
        accessToken: new Secret(tokens.accessToken),
        refreshToken: new Secret(tokens.refreshToken),
        issuedAt: new Date(),
        expiresAt: new Date(Date.now() + 3_600_000),
        nextRefreshAt: new Date(Date.now() + 3_000_000),
      },
      [],
    );
    const {
      rows: [saved],
    } = await sql.query(`SELECT refresh_token_enc, key_id FROM credentials WHERE connection = 'broken'`);
    await sql.query(
      `UPDATE credentials SET refresh_token_enc = decode('01056f6c646b6579' || repeat('00', 40), 'hex'), key_id = 'oldkey' WHERE connection = 'broken'`,
    );
    await waitFor(
      async () => {
        const { rows } = await sql.query(`SELECT status FROM credentials WHERE connection = 'broken'`);
        return rows[0].status === 'failing';
      },
      { message: 'broken row parked' },
    );

    // Item 11: the parking has its audit record, after the claim's refresh_started.
    const { rows: records } = await sql.query(
      `SELECT type, payload FROM outbox WHERE connection = 'broken' ORDER BY id`,
    );
    expect(records.map((r) => r.type).slice(-2)).toEqual(['refresh_started', 'failed']);
    expect(records.at(-1).payload).toMatchObject({ code: 'undecryptable' });

    // Item 13: metadata calls work without the token.
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'broken' });
    expect(described).toMatchObject({ ok: true, credential: { status: 'failing', hasRefreshToken: true } });
    const page = await caller.list({ tenant: 'acme' });
    expect(page.ok, JSON.stringify(page.error)).toBe(true);
    expect(page.items.map((c: any) => c.connection)).toEqual(['broken', 'good', 'old']);

    // The sweep skips the bad row, re-seals the one behind it and reports the skip.
    const sweep = refresher.app.get(ReencryptionService);
    await sweep.sweep();
    const {
      rows: [old],
    } = await sql.query(`SELECT key_id FROM credentials WHERE connection = 'old'`);
    expect(old.key_id).toBe('k2');
    expect(refresher.logs.text()).toContain('re-encryption skipped credentials it cannot decrypt');

    // The key is back (here: the original blob): an expired token is refreshed on demand at once,
    // the parking does not hold it for an hour.
    await sql.query(`UPDATE credentials SET refresh_token_enc = $1, key_id = $2 WHERE connection = 'broken'`, [
      saved.refresh_token_enc,
      saved.key_id,
    ]);
    await waitFor(
      async () => {
        const { rows } = await sql.query(
          `SELECT expires_at < now() AS expired FROM credentials WHERE connection = 'broken'`,
        );
        return rows[0].expired;
      },
      { message: 'broken token expired' },
    );
    const got = await caller.get({ tenant: 'acme', connection: 'broken' });
    expect(got.ok, JSON.stringify(got.error)).toBe(true);
    expect(got.token.version).toBeGreaterThan(1);

    // Revoke works on an unreadable row too.
    await sql.query(
      `UPDATE credentials SET access_token_enc = decode('01056f6c646b6579' || repeat('00', 40), 'hex'), key_id = 'oldkey' WHERE connection = 'good'`,
    );
    const revoked = await caller.admin('revoke', { tenant: 'acme', connection: 'good' });
    expect(revoked.ok, JSON.stringify(revoked.error)).toBe(true);
    const {
      rows: [good],
    } = await sql.query(`SELECT status FROM credentials WHERE connection = 'good'`);
    expect(good.status).toBe('revoked');
  } finally {
    await legacy.close();
    await sql.end();
    await caller.close();
    await refresher.close();
    await Promise.all([sandbox.close(), nats.stop()]);
    await db.drop();
  }
}, 40_000);
