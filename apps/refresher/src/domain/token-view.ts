import type { CredentialView, TokenView } from '@tokenkeeper/contracts';
import type { Credential } from './credential.js';

/** The served token. The one place where a stored access token is revealed for the wire. */
export function toTokenView(credential: Credential): TokenView {
  const view: TokenView = {
    tenant: credential.tenant,
    connection: credential.connection,
    provider: credential.provider,
    accessToken: credential.accessToken!.reveal(),
    tokenType: credential.tokenType,
    expiresAt: credential.expiresAt?.toISOString() ?? null,
    version: credential.version,
  };
  if (credential.scope !== undefined) view.scope = credential.scope;
  if (credential.extras !== undefined) view.extras = credential.extras;
  return view;
}

/** Metadata only, field by field, so that no secret can ride along. */
export function toCredentialView(credential: Credential): CredentialView {
  const view: CredentialView = {
    tenant: credential.tenant,
    connection: credential.connection,
    provider: credential.provider,
    status: credential.status,
    tokenType: credential.tokenType,
    version: credential.version,
    hasAccessToken: credential.accessToken !== undefined,
    hasRefreshToken: credential.refreshToken !== undefined,
    expiresAt: credential.expiresAt?.toISOString() ?? null,
    nextRefreshAt: credential.nextRefreshAt?.toISOString() ?? null,
    lastRefreshedAt: credential.lastRefreshedAt?.toISOString() ?? null,
    failures: credential.failures,
    lastError: credential.lastError,
    createdAt: credential.createdAt.toISOString(),
    updatedAt: credential.updatedAt.toISOString(),
  };
  if (credential.scope !== undefined) view.scope = credential.scope;
  if (credential.refreshTokenExpiresAt) view.refreshTokenExpiresAt = credential.refreshTokenExpiresAt.toISOString();
  if (credential.metadata !== undefined) view.metadata = credential.metadata;
  if (credential.connectionConfig !== undefined) view.connectionConfig = credential.connectionConfig;
  return view;
}
