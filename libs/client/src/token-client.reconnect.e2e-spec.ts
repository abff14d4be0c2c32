import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { CredentialKey } from '@tokenkeeper/contracts';
import { type NatsServerHandle, startNatsServer, waitFor } from '@tokenkeeper/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FAST_RECONNECT, FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TokenClient } from './token.client.js';

/**
 * The server is stopped and restarted on the same port while the refresher
 * "refreshes": the client can see no event, so only the reconnect confirmation
 * stands between it and serving a token the refresher has already replaced.
 */
describe('TokenClient after a NATS reconnect', () => {
  let server: NatsServerHandle;
  let refresher: FakeRefresher;
  let client: TokenClient;
  let nc: NatsConnection;

  const changed: CredentialKey = { tenant: 'acme', connection: 'github' };
  const unchanged: CredentialKey = { tenant: 'acme', connection: 'slack' };

  beforeEach(async () => {
    server = await startNatsServer();
    refresher = await FakeRefresher.start(server.url);
    nc = await connect({ servers: server.url, ...FAST_RECONNECT });
    client = new TokenClient({ nc, tenants: ['acme'], trustedSigners: [refresher.signerPublicKey] });
    await client.start();
  });

  afterEach(async () => {
    await client.close();
    await nc.close();
    await refresher.close();
    await server.stop();
  });

  async function bounceServer(duringOutage: () => Promise<void> | void): Promise<void> {
    await server.stop();
    await duringOutage();
    await server.restart();
    // Back means: the client has seen the reconnect, and the refresher answers again.
    await waitFor(() => client.connectionEpoch === 1, { message: 'client reconnected' });
    await waitFor(() => refresher.nc.flush().then(() => true), { message: 'refresher reconnected' });
  }

  it('confirms each cached entry once with token.get, and never serves the replaced token', async () => {
    const v1 = refresher.set(tokenView(changed, 1));
    const other = refresher.set(tokenView(unchanged, 7));
    expect(await client.getAccessToken(changed)).toBe(v1.accessToken);
    expect(await client.getAccessToken(unchanged)).toBe(other.accessToken);

    let servedWhileDown: string | undefined;
    await bounceServer(() => {
      // The refresher refreshed while the client was cut off: the event is lost for it.
      refresher.set(tokenView(changed, 2));
      servedWhileDown = client.peekAccessToken(changed);
    });
    // Nothing better exists while NATS is down, so the still-valid cached token is served.
    expect(servedWhileDown).toBe(v1.accessToken);
    expect(client.peekAccessToken(changed)).toBeUndefined();

    const tokens = await Promise.all(Array.from({ length: 50 }, () => client.getToken(changed)));
    expect(new Set(tokens.map((t) => t.version))).toEqual(new Set([2]));
    expect(refresher.requestsFor(changed)).toHaveLength(2);

    // Confirmed once; trusted again afterwards.
    expect(await client.getAccessToken(changed)).toBe(tokenView(changed, 2).accessToken);
    expect(await client.getAccessToken(unchanged)).toBe(other.accessToken);
    expect(await client.getAccessToken(unchanged)).toBe(other.accessToken);
    expect(refresher.requestsFor(changed)).toHaveLength(2);
    expect(refresher.requestsFor(unchanged)).toHaveLength(2);
    expect(client.stats.confirmationsAfterReconnect).toBe(2);
  });

  it('keeps receiving pushed events after the reconnect', async () => {
    refresher.set(tokenView(changed, 1));
    await client.getAccessToken(changed);
    await bounceServer(() => undefined);

    const v5 = tokenView(changed, 5);
    await refresher.publishRefreshed(v5);
    await waitFor(() => client.stats.pushedUpdates === 1, { message: 'event after reconnect' });
    // A pushed token arrived over the current connection: no confirmation needed.
    expect(await client.getAccessToken(changed)).toBe(v5.accessToken);
    expect(refresher.requestsFor(changed)).toHaveLength(1);
    expect(client.stats.confirmationsAfterReconnect).toBe(0);
  });

  it('does not close a connection it did not create', async () => {
    await client.close();
    expect(nc.isClosed()).toBe(false);
    await expect(client.getAccessToken(changed)).rejects.toMatchObject({ code: 'unavailable' });
  });
});
