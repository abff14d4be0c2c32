export { TokenClient } from './token.client.js';
export { TokenClientError } from './token-client.error.js';
export { DEFAULT_MAX_ENTRIES } from './token-client.options.js';
export type {
  ExpiringNotice,
  RecoveredNotice,
  RejectionReason,
  TokenClientLogger,
  TokenClientOptions,
  TokenClientStats,
  TokenEventSubscription,
  TokenRequestOptions,
} from './token-client.options.js';
export type { TokenFetchInit, TokenFetchResponse, TokenFetchTarget, TokenSource } from './token-fetch.helper.js';
export { tokenFetch } from './token-fetch.helper.js';
