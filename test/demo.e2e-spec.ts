import { spawn } from 'node:child_process';
import {
  ConnectPerson,
  createTestDatabase,
  startNatsServer,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { expect, it } from 'vitest';

/**
 * The README's first command, shortened: it must tell the story and report zero failed
 * calls, on the secure bus (its own nats-server with the generated permissions, what it
 * runs wherever a nats-server binary is at hand, as here) and on an open one.
 */
it.each(['secure', 'open'] as const)(
  'npm run demo completes with zero failed API calls (%s bus)',
  async (mode) => {
    const [nats, db] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase(`tk_demo_${mode}`)]);
    try {
      const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', 'apps/demo/src/main.ts'], {
        env: {
          ...process.env,
          DEMO_BUS: mode,
          DEMO_SECONDS: '16',
          DEMO_TOKEN_TTL_SECONDS: '12',
          REFRESH_MIN_MARGIN_SECONDS: '6',
          NATS_URL: nats.url,
          DATABASE_URL: db.url,
          AUDIT_DATABASE_URL: `${db.url}_audit`,
          TOKEN_ENCRYPTION_KEYS: `demo:${Buffer.alloc(32, 7).toString('base64')}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(out, out).toContain('API calls failed:    0');
      expect(code, out).toBe(0);
      expect(out).toMatch(/token refreshed → v\d/);
      expect(out).toMatch(/billing +now using token v\d+ \(pushed by the refresher\)/);
      expect(out).toMatch(/401 for the old token; reported it/);
      expect(out).toMatch(/audit records: +.*\d+ refreshed/);
      const made = Number(/API calls made: +(\d+)/.exec(out)?.[1]);
      expect(made).toBeGreaterThanOrEqual(20);
      // Both tenants' consumers got their own tenant's pushed tokens.
      expect(out).toMatch(/reports +now using token v\d+ \(pushed by the refresher\)/);
      if (mode === 'secure') {
        expect(out).toContain('secure bus: per-tenant permissions');
        // The proof for a new user: one tenant's service cannot get another tenant's token.
        expect(out).toMatch(
          /tenant isolation: +billing \(tenant acme\) asked for globex\/sandbox-api: refused by NATS: no permission to publish token\.get\.globex\.sandbox-api\n/,
        );
      } else {
        expect(out).toContain('open bus: no permissions');
        expect(out).toMatch(/tenant isolation: +none on an open bus/);
      }
    } finally {
      await cleanUp(db, nats);
    }
  },
  90_000,
);

/**
 * DEMO_CONNECT=1: the first tenant's credential comes through the connect flow. The test is
 * the person: it takes the printed link, presses the button on its page, follows it to the
 * sandbox's consent page, presses Allow and brings the answer back to the refresher's
 * callback in the same browser (its cookies), all over plain HTTP.
 */
it('DEMO_CONNECT=1 npm run demo prints a link, connects through the consent page and completes', async () => {
  const [nats, db] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_demo_connect')]);
  try {
    const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', 'apps/demo/src/main.ts'], {
      env: {
        ...process.env,
        DEMO_CONNECT: '1',
        DEMO_SECONDS: '14',
        DEMO_TOKEN_TTL_SECONDS: '12',
        REFRESH_MIN_MARGIN_SECONDS: '6',
        NATS_URL: nats.url,
        DATABASE_URL: db.url,
        AUDIT_DATABASE_URL: `${db.url}_audit`,
        TOKEN_ENCRYPTION_KEYS: `demo:${Buffer.alloc(32, 7).toString('base64')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let person: Promise<void> | undefined;
    child.stdout.on('data', (d) => {
      out += d;
      const link = /open this in a browser[^\n]*\n\n +(http:\/\/\S+\/connect\/\S+)/.exec(out)?.[1];
      if (link && !person) person = allowInTheBrowser(link);
    });
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    await person;
    expect(out, out).toMatch(/Connect acme\/sandbox-api: open this in a browser/);
    expect(out).toMatch(/connected acme\/sandbox-api through the browser .*: v1/);
    expect(out).toContain('API calls failed:    0');
    expect(code, out).toBe(0);
    expect(out).toMatch(/token refreshed → v\d+ of acme\/sandbox-api/);
    expect(out).toMatch(/billing +now using token v\d+ \(pushed by the refresher\)/);
    expect(out).toMatch(/connect: +acme\/sandbox-api connected through the browser/);
  } finally {
    await cleanUp(db, nats);
  }
}, 90_000);

/** What a person's browser does with the link: its button, the redirects by hand, and Allow on the consent form. */
async function allowInTheBrowser(link: string): Promise<void> {
  const person = new ConnectPerson();
  const toProvider = await person.startAt(link);
  const consentPage = await person.get(toProvider);
  expect(consentPage.status, consentPage.text).toBe(200);
  const consent = /name="consent" value="([^"]+)"/.exec(consentPage.text)![1]!;
  const authorizeUrl = new URL(toProvider);
  const allowed = await person.postForm(`${authorizeUrl.origin}${authorizeUrl.pathname}`, {
    consent,
    decision: 'allow',
  });
  expect(allowed.status).toBe(302);
  const callback = await person.get(allowed.location!);
  expect(callback.status, callback.text).toBe(200);
  expect(callback.text).toMatch(/Connected/);
}

/** The demo's audit app made its own database next to the main one; both go, then NATS. */
async function cleanUp(db: TestDatabase, nats: NatsServerHandle): Promise<void> {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]+$/, '/postgres') });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${db.name}_audit" WITH (FORCE)`);
  await admin.end();
  await nats.stop();
  await db.drop();
}
