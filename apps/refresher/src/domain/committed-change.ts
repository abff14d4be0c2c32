import type { Credential } from './credential.js';

/**
 * A change the database has committed, as the repository returns it: the credential as
 * stored now, and the id of the audit record (outbox row) written in the same statement,
 * which the core event carries too. Everything that follows a commit (reply cache, core
 * event) is derived from this one value, in one place (TokenChangeNotifier).
 */
export interface CommittedChange {
  kind: 'registered' | 'refreshed' | 'failed' | 'revoked';
  credential: Credential;
  eventId: string;
}
