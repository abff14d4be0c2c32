import { createTestDatabase, startNatsServer, startSandboxProvider } from '@tokenkeeper/testing';
import pg from 'pg';
import { expect, it } from 'vitest';
import { MIGRATIONS } from '../src/refresher.module.js';
import { sandboxProviders, startTestRefresher, testEnv, testKeys } from './refresher.harness.js';

/** Replicas rolled out together on a fresh database: migrations run once, every replica starts. */
it('three replicas starting at once on a fresh database all come up', async () => {
  const [nats, db, sandbox] = await Promise.all([
    startNatsServer(),
    createTestDatabase('tk_start'),
    startSandboxProvider(),
  ]);
  const keys = testKeys();
  // Point at a database that does not exist yet, so creation and migration race too.
  const fresh = `${db.url}_new`;
  try {
    const replicas = await Promise.all(
      ['r1', 'r2', 'r3'].map((id) =>
        startTestRefresher(
          testEnv({ natsUrl: nats.url, databaseUrl: fresh, keys }, { REPLICA_ID: id }),
          sandboxProviders(sandbox),
        ),
      ),
    );
    const client = new pg.Client({ connectionString: fresh });
    await client.connect();
    const applied = await client.query(`SELECT name FROM migrations`);
    await client.end();
    // Each migration once (names as declared by the module, so that a new migration needs no edit here).
    expect(applied.rows.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => new m().name));
    await Promise.all(replicas.map((r) => r.close()));
  } finally {
    const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${new URL(fresh).pathname.slice(1)}" WITH (FORCE)`);
    await admin.end();
    await Promise.all([sandbox.close(), nats.stop()]);
    await db.drop();
  }
});
