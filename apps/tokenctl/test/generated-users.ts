import type { GeneratedUser } from '../src/authz.render.js';

/** The password of a generated user; the tests that start apps under the authorization model generate password users. */
export function credentialsOf(user: GeneratedUser): { user: string; pass: string } {
  if (user.credential.kind !== 'password') throw new Error('this test generates password users');
  return { user: user.user.name, pass: user.credential.password };
}

/** The environment a service or tokenctl gets for one generated user (what `tokenctl authz`'s secret section lists, the configuration rules). */
export function natsEnvOf(user: GeneratedUser): Record<string, string> {
  const { user: name, pass } = credentialsOf(user);
  return { NATS_USER: name, NATS_PASS: pass, NATS_INBOX_PREFIX: user.user.inboxPrefix };
}

/**
 * A test-only user allowed everything, to add to a generated configuration: it plays the
 * operator's own JetStream tooling or watches subjects no generated role may read.
 */
export function allAccessUser(name: string): GeneratedUser {
  return {
    user: {
      name,
      role: { kind: 'operator' },
      inboxPrefix: `_INBOX_${name}`,
      permissions: { publish: ['>'], subscribe: ['>'], allowResponses: false },
    },
    credential: { kind: 'password', password: `${name}-only-in-this-test` },
  };
}
