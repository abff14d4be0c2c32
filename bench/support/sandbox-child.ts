/**
 * The sandbox OAuth2 provider in its own process, so that neither the refresher nor a
 * baseline HTTP loop shares an event loop with the token endpoint it calls.
 *
 * BENCH_SANDBOX_TTL_SECONDS: lifetime of the access tokens it issues.
 */
import { startSandboxProvider } from '@tokenkeeper/sandbox';
import { reportFatal, reportReady, serveParent } from './children.js';

try {
  const sandbox = await startSandboxProvider({
    accessTokenTtlSeconds: Number(process.env.BENCH_SANDBOX_TTL_SECONDS ?? 3600),
  });
  serveParent(
    {
      /** `count` new refresh-token families. */
      issueRefreshTokens: ({ count }: { count: number }) =>
        Array.from({ length: count }, () => sandbox.issueRefreshToken()),
      issueTokens: () => sandbox.issueTokens(),
      revokeAccessToken: ({ token }: { token: string }) => sandbox.revokeAccessToken(token),
      setTtl: ({ seconds }: { seconds: number }) => sandbox.setAccessTokenTtl(seconds),
      stats: () => ({ ...sandbox.stats, reusedTokens: sandbox.everPresentedTwice().length }),
      resetStats: () => sandbox.resetStats(),
    },
    () => sandbox.close(),
  );
  reportReady({
    url: sandbox.url,
    tokenUrl: sandbox.tokenUrl,
    revocationUrl: sandbox.revocationUrl,
    apiUrl: sandbox.apiUrl,
  });
} catch (error) {
  reportFatal(error);
}
