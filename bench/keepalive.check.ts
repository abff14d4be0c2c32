/**
 * Checks the refresher's undici Agent against the sandbox token endpoint: how many TCP
 * connections a run of refresh grants opens (keep-alive reuse), and whether a socket left
 * idle past the server's keep-alive timeout is retired by the client first (no request
 * sent on a socket the server is closing: an ECONNRESET on a POST that is not retried).
 *
 *   node --import @swc-node/register/esm-register bench/keepalive.check.ts
 */
import { Secret, sleep } from '@tokenkeeper/common';
import { startSandboxProvider } from '@tokenkeeper/sandbox';
import { UndiciTokenEndpoint } from '../apps/refresher/src/providers/token-endpoint.client.js';

const CONCURRENCY = 32;
const ROUNDS = 20;

async function main(): Promise<void> {
  const sandbox = await startSandboxProvider();
  const server = (sandbox as unknown as { server: import('node:http').Server }).server;
  let connections = 0;
  server.on('connection', () => connections++);
  const endpoint = new UndiciTokenEndpoint({ timeoutMs: 5_000 });
  const settings = sandbox.providerSettings() as { clientSecret: string };
  const provider = {
    ...settings,
    clientSecret: new Secret(settings.clientSecret),
    id: 'sandbox',
    extraParams: {},
    maxConcurrency: CONCURRENCY,
    threshold: 0.8,
  } as never;
  const tokens = Array.from({ length: CONCURRENCY }, () => new Secret(sandbox.issueRefreshToken()));
  let failures = 0;
  const round = () =>
    Promise.all(
      tokens.map(async (token, i) => {
        const result = await endpoint.requestToken({
          provider,
          refreshToken: token,
          signal: AbortSignal.timeout(5_000),
        });
        if (!result.ok) failures++;
        else if (result.token.refreshToken) tokens[i] = result.token.refreshToken;
      }),
    );
  const perRound: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = connections;
    await round();
    perRound.push(connections - c0);
  }
  console.log(`new connections per round: ${perRound.join(' ')}`);
  console.log(
    `${ROUNDS * CONCURRENCY} grants at ${CONCURRENCY} in flight: ${connections} TCP connections, ${failures} failures; server keepAliveTimeout ${server.keepAliveTimeout} ms`,
  );
  const before = connections;
  // Idle past the server's keep-alive timeout: the client must have dropped its sockets first.
  await sleep(server.keepAliveTimeout + 1_000);
  await round();
  console.log(
    `after ${server.keepAliveTimeout + 1_000} ms idle: ${connections - before} new connections, ${failures} failures in all`,
  );
  await sandbox.close?.();
  process.exit(failures ? 1 : 0);
}

void main();
