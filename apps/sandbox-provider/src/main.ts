import { startSandboxProvider } from '@tokenkeeper/sandbox';

/**
 * The sandbox provider on its own, for the demo and for trying the refresher by
 * hand. It prints one refresh token on purpose: a dev tool needs a credential to
 * register, and this one is worthless outside this process.
 */
function numberFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return value;
}

async function main(): Promise<void> {
  const provider = await startSandboxProvider({
    port: numberFromEnv('SANDBOX_PORT', 8089),
    host: process.env.SANDBOX_HOST || '127.0.0.1',
    accessTokenTtlSeconds: numberFromEnv('SANDBOX_TTL_SECONDS', 20),
  });
  const lines = [
    `sandbox provider listening on ${provider.url}`,
    `  token endpoint:      ${provider.tokenUrl}`,
    `  revocation endpoint: ${provider.revocationUrl}`,
    `  protected API:       ${provider.apiUrl}`,
    `  authorization:       ${provider.authorizationUrl} (consent page; code with PKCE S256)`,
    `  client:              sandbox-client / sandbox-secret (client_secret_basic or client_secret_post)`,
    `  refresh token:       ${provider.issueRefreshToken()}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: shutting down\n`);
    provider.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`sandbox provider failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
