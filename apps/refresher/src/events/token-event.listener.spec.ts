import { Logger } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeJson, type TokenView } from '@tokenkeeper/contracts';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeReply, FakeClock, T0 } from '../../test/unit/core-fakes.js';
import { ReplyCache } from './reply-cache.js';
import { TokenEventListener } from './token-event.listener.js';

const view = (over: Partial<TokenView> = {}): TokenView => ({
  tenant: 'acme',
  connection: 'github',
  provider: 'sandbox',
  accessToken: 'at_real',
  tokenType: 'Bearer',
  expiresAt: new Date(T0 + 3_600_000).toISOString(),
  version: 1,
  ...over,
});
const event = (over: Partial<TokenView>) => encodeJson({ eventId: 'e', ...view(over), refreshedAt: new Date(T0).toISOString() });

describe('TokenEventListener: the subject names the credential', () => {
  beforeAll(() => Logger.overrideLogger(false));

  const setup = () => {
    const cache = new ReplyCache(10);
    cache.put(view(), T0);
    const listener = new TokenEventListener({} as NatsConnection, cache, new FakeClock());
    return { cache, listener, served: () => decodeReply(cache.get('acme/github')!.reply).token };
  };

  it('drops an event whose body names another credential than its subject', () => {
    const { cache, listener, served } = setup();
    listener.apply('token.refreshed.evil.x', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    listener.apply('token.registered.acme.other', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    listener.apply('token.revoked.evil.x', encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 99 }));
    expect(served()).toMatchObject({ accessToken: 'at_real', version: 1 });
    expect(cache.get('evil/x')).toBeUndefined();

    // A real later version still replaces the entry.
    listener.apply('token.refreshed.acme.github', event({ accessToken: 'at_v2', version: 2 }));
    expect(served()).toMatchObject({ accessToken: 'at_v2', version: 2 });
  });

  it('drops malformed bodies and applies a revoke by version', () => {
    const { cache, listener, served } = setup();
    listener.apply('token.refreshed.acme.github', new TextEncoder().encode('{not json'));
    listener.apply('token.refreshed.acme.github', event({ version: -1 }));
    listener.apply('token.refreshed.acme.github', encodeJson({ tenant: 'acme', connection: 'github', version: 5 }));
    expect(served().version).toBe(1);
    listener.apply('token.revoked.acme.github', encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 1 }));
    expect(cache.get('acme/github')).toBeUndefined();
  });
});
