import { encodeJson, EventSigner, generateSigningSeed, SIGNED_AT_HEADER, SIGNER_HEADER } from '@tokenkeeper/contracts';
import { fixedHeaders } from '@tokenkeeper/nats';
import { describe, expect, it } from 'vitest';
import { testSigner } from '../../test/unit/core-fakes.js';
import { OwnEvents } from './own-events.js';

const SUBJECT = 'token.refreshed.acme.github';
const AT = 1_900_000_000_000;
const sent = (own: OwnEvents, body: object) => {
  const data = encodeJson(body);
  const signed = testSigner.headersFor(SUBJECT, data, AT);
  own.remember(signed, SUBJECT, data);
  return { data, signed, headers: fixedHeaders(signed) };
};

describe('OwnEvents: an echo of our own event is recognised only byte for byte', () => {
  it('recognises the exact bytes and headers it published, once', () => {
    const own = new OwnEvents(testSigner);
    const { data, headers } = sent(own, { version: 1 });
    // The echo arrives as a view into NATS's inbound buffer, not the buffer we sent.
    const echo = new Uint8Array([0, ...data, 0]).subarray(1, data.length + 1);
    expect(own.recognise(SUBJECT, echo, headers)).toBe(true);
    expect(own.recognise(SUBJECT, echo, headers)).toBe(false);
  });

  it('does not recognise other bytes under our signature, another subject, another signer, an unknown signature or no headers', () => {
    const own = new OwnEvents(testSigner);
    const { data, signed, headers } = sent(own, { version: 1 });
    expect(own.recognise(SUBJECT, encodeJson({ version: 2 }), headers)).toBe(false);
    const stranger = EventSigner.fromSeed(generateSigningSeed());
    expect(own.recognise(SUBJECT, data, fixedHeaders({ ...signed, [SIGNER_HEADER]: stranger.publicKey }))).toBe(false);
    expect(own.recognise(SUBJECT, data, fixedHeaders(stranger.headersFor(SUBJECT, data, AT)))).toBe(false);
    expect(own.recognise(SUBJECT, data, undefined)).toBe(false);
    // Our very event re-published on another subject, or with another signing time, is not ours.
    expect(own.recognise('token.revoked.acme.github', data, headers)).toBe(false);
    expect(own.recognise(SUBJECT, data, fixedHeaders({ ...signed, [SIGNED_AT_HEADER]: String(AT + 1) }))).toBe(false);
    // Still remembered after the misses: the real echo is recognised.
    expect(own.recognise(SUBJECT, data, headers)).toBe(true);
  });

  it('forgets the oldest events past its bound', () => {
    const own = new OwnEvents(testSigner);
    const first = sent(own, { n: -1 });
    for (let n = 0; n < 4_096; n++) sent(own, { n });
    expect(own.recognise(SUBJECT, first.data, first.headers)).toBe(false);
  });
});
