/**
 * Scenario 7: what signature verification costs the client (the target: verifying a
 * signed event costs the client no more than one Ed25519 verify), and that the cache
 * hit does not pay for it (verification runs on arrival, never on read).
 *
 * - CPU per pushed event through the client's own event handler (guard + parse +
 *   cache update), for a client with `trustedSigners` and one without, on the same
 *   signed `token.refreshed` events (~400 bytes, increasing versions so each one is
 *   applied). The difference is set against a bare `SignatureVerifier.verify` (scheme 2:
 *   signed bytes built from subject, signing time and payload, then one Ed25519 check).
 * - cache hit of the verifying client (filled by those signed events) vs `Map.get` +
 *   expiry check, with the helpers of scenario 2.
 *
 * No refresher is needed: events are handed to the handler in-process, so the figure
 * is the client's CPU alone, without NATS I/O or the publisher's cost in the same process.
 *
 * Standalone: `node --import @swc-node/register/esm-register bench/client-verify.bench.ts [--quick]`
 * In the suite: `npm run bench -- --only 7`.
 */
import { headers, type Msg } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import {
  type CredentialKey,
  credentialId,
  EventSigner,
  generateSigningSeed,
  SignatureVerifier,
  tokenEventSubject,
} from '@tokenkeeper/contracts';
import { startNatsServer } from '@tokenkeeper/testing';
import { pathToFileURL } from 'node:url';
import { type BareEntry, bareSync, clientSync, compare } from './cache-hit.bench.js';
import type { BenchContext } from './support/context.js';
import { median } from './support/stats.js';

const quiet = { warn: () => undefined };

interface Figures {
  /** CPU µs per event, median of the rounds. */
  verifiedUs: number;
  unverifiedUs: number;
  bareVerifyUs: number;
  events: number;
  hit: { bare: number; client: number };
  hitUnverified: { bare: number; client: number };
  /** Hits/s: `client` the verifying client, `bare` the non-verifying one. */
  verifyingVsNot: { bare: number; client: number };
  /** Hits/s: `client` the default (10,000-bounded) client, `bare` one with `maxEntries: Infinity`. */
  boundedVsUnbounded: { bare: number; client: number };
}

function buildEvents(signer: EventSigner, keys: CredentialKey[], fromVersion: number, perKey: number): Msg[] {
  const msgs: Msg[] = [];
  const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
  for (let v = fromVersion; v < fromVersion + perKey; v++) {
    for (const key of keys) {
      const data = new TextEncoder().encode(
        JSON.stringify({
          eventId: '0b6f3c2e-9a8d-4d71-8f0e-2c7f5b1d9e43',
          tenant: key.tenant,
          connection: key.connection,
          provider: 'github',
          accessToken: `gho_${'x'.repeat(160)}_${v}`,
          tokenType: 'Bearer',
          expiresAt,
          scope: 'repo read:org',
          version: v,
          refreshedAt: new Date().toISOString(),
        }),
      );
      const subject = tokenEventSubject('refreshed', key.tenant, key.connection);
      const h = headers();
      for (const [name, value] of Object.entries(signer.headersFor(subject, data, Date.now()))) h.set(name, value);
      msgs.push({ subject, data, headers: h } as unknown as Msg);
    }
  }
  return msgs;
}

/** CPU microseconds per call of `handle` over `msgs`. */
function cpuPerEvent(msgs: Msg[], handle: (msg: Msg) => unknown): number {
  const start = process.cpuUsage();
  for (const msg of msgs) handle(msg);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / msgs.length;
}

function handlerOf(client: TokenClient): (msg: Msg) => void {
  // The subscription callback's own target; private, reached here on purpose.
  const onEvent = (client as unknown as { onEvent: (msg: Msg) => void }).onEvent.bind(client);
  return onEvent;
}

export async function measureClientVerify(natsUrl: string, quick: boolean): Promise<Figures> {
  const signer = EventSigner.fromSeed(generateSigningSeed());
  const keys: CredentialKey[] = Array.from({ length: quick ? 200 : 1_000 }, (_, i) => ({
    tenant: `bench-v${i % 10}`,
    connection: `c${i}`,
  }));
  const tenants = [...new Set(keys.map((k) => k.tenant))];
  const verified = new TokenClient({
    servers: natsUrl,
    tenants,
    trustedSigners: [signer.publicKey],
    logger: quiet,
    connectOptions: { noAsyncTraces: true },
  });
  const unverified = new TokenClient({
    servers: natsUrl,
    tenants,
    logger: quiet,
    connectOptions: { noAsyncTraces: true },
  });
  // The pre-issue-11 default (no bound), to show what the 10,000 default costs a hit.
  const unbounded = new TokenClient({
    servers: natsUrl,
    tenants,
    trustedSigners: [signer.publicKey],
    maxEntries: Infinity,
    logger: quiet,
    connectOptions: { noAsyncTraces: true },
  });
  await Promise.all([verified.start(), unverified.start(), unbounded.start()]);
  try {
    const rounds = quick ? 3 : 5;
    const perKey = quick ? 10 : 20;
    const verifier = new SignatureVerifier([signer.publicKey]);
    const samples = { verified: [] as number[], unverified: [] as number[], bare: [] as number[] };
    // Warm-up round (version 1..perKey), then measured rounds with ever higher versions.
    for (let r = 0; r <= rounds; r++) {
      const msgs = buildEvents(signer, keys, 1 + r * perKey, perKey);
      const order = r % 2 === 0 ? (['verified', 'unverified'] as const) : (['unverified', 'verified'] as const);
      const results: Record<string, number> = {};
      for (const which of order)
        results[which] = cpuPerEvent(msgs, handlerOf(which === 'verified' ? verified : unverified));
      results.bare = cpuPerEvent(msgs, (msg) => verifier.verify(msg.subject, msg.data, msg.headers, Date.now()));
      if (r === 0) continue;
      samples.verified.push(results.verified!);
      samples.unverified.push(results.unverified!);
      samples.bare.push(results.bare!);
    }
    const events = rounds * perKey * keys.length;
    const feedUnbounded = handlerOf(unbounded);
    for (const msg of buildEvents(signer, keys, 1, 1)) feedUnbounded(msg);
    if (verified.stats.pushedUpdates !== (rounds + 1) * perKey * keys.length) {
      throw new Error(
        `verifying client applied ${verified.stats.pushedUpdates} events, rejected ${verified.stats.rejectedEvents}`,
      );
    }

    // Hit path: both clients are now filled with the latest signed tokens.
    const bare = new Map<string, BareEntry>();
    for (const key of keys) {
      const view = await verified.getToken(key);
      bare.set(credentialId(key), { accessToken: view.accessToken, expiresAtMs: Date.parse(view.expiresAt!) });
    }
    if (verified.stats.misses !== 0) throw new Error('cache not filled by the events');
    const clientKeys = keys.map((k) => ({ tenant: `${k.tenant}`, connection: `${k.connection}` }));
    const ids = keys.map(credentialId);
    const totalMs = quick ? 1_200 : 6_000;
    await compare(
      { bare: (n) => bareSync(bare, ids, n), client: (n) => clientSync(verified, clientKeys, n) },
      100_000,
      200,
    );
    const hit = await compare(
      { bare: (n) => bareSync(bare, ids, n), client: (n) => clientSync(verified, clientKeys, n) },
      200_000,
      totalMs,
    );
    const hitUnverified = await compare(
      { bare: (n) => bareSync(bare, ids, n), client: (n) => clientSync(unverified, clientKeys, n) },
      200_000,
      totalMs,
    );
    // Head to head: the same hit path, so the ratio should sit at 1 within noise.
    const clients = await compare(
      { bare: (n) => clientSync(unverified, clientKeys, n), client: (n) => clientSync(verified, clientKeys, n) },
      200_000,
      totalMs,
    );
    const bound = await compare(
      { bare: (n) => clientSync(unbounded, clientKeys, n), client: (n) => clientSync(verified, clientKeys, n) },
      200_000,
      totalMs,
    );
    return {
      verifiedUs: median(samples.verified),
      unverifiedUs: median(samples.unverified),
      bareVerifyUs: median(samples.bare),
      events,
      hit: { bare: hit.bare, client: hit.client },
      hitUnverified: { bare: hitUnverified.bare, client: hitUnverified.client },
      verifyingVsNot: { bare: clients.bare, client: clients.client },
      boundedVsUnbounded: { bare: bound.bare, client: bound.client },
    };
  } finally {
    await Promise.all([verified.close(), unverified.close(), unbounded.close()]);
  }
}

export function describeFigures(f: Figures): string[] {
  const us = (x: number) => `${x.toFixed(1)} µs`;
  return [
    `client.event: ${f.events.toLocaleString('en')} signed token.refreshed events (~400 B) per client, CPU per event: verifying ${us(f.verifiedUs)}, not verifying ${us(f.unverifiedUs)}, difference ${us(f.verifiedUs - f.unverifiedUs)} vs one bare scheme-2 verify ${us(f.bareVerifyUs)}`,
    `client.cache_hit: verifying client ${Math.round(f.hit.client).toLocaleString('en')}/s vs Map.get ${Math.round(f.hit.bare).toLocaleString('en')}/s (ratio ${(f.hit.client / f.hit.bare).toFixed(2)}); non-verifying client ratio ${(f.hitUnverified.client / f.hitUnverified.bare).toFixed(2)}; verifying vs non-verifying client ${(f.verifyingVsNot.client / f.verifyingVsNot.bare).toFixed(2)}; bounded (default 10,000) vs unbounded ${(f.boundedVsUnbounded.client / f.boundedVsUnbounded.bare).toFixed(2)}`,
  ];
}

export async function clientVerifyBench(ctx: BenchContext): Promise<void> {
  const f = await measureClientVerify(ctx.env.natsUrl, ctx.options.quick);
  for (const line of describeFigures(f)) ctx.report.note(line);
  ctx.report.add({
    scenario: 7,
    name: 'client.event.verify_cost_vs_one_verify',
    value: f.verifiedUs - f.unverifiedUs,
    baseline: f.bareVerifyUs,
    unit: 'µs',
    lowerIsBetter: true,
    // The speed targets: at most one Ed25519 verify per event. The margin is reading the two headers
    // (nats.js decodes the header block on first access), which a bare verify does not do.
    target: { on: 'ratio', op: '<=', limit: 1.3 },
    note: `per event: verifying ${f.verifiedUs.toFixed(1)} µs, not verifying ${f.unverifiedUs.toFixed(1)} µs`,
  });
  ctx.report.add({
    scenario: 7,
    name: 'client.cache_hit.verifying_client',
    value: f.hit.client,
    baseline: f.hit.bare,
    unit: '/s',
    target: { on: 'ratio', op: '>=', limit: 0.7 },
  });
  ctx.report.add({
    scenario: 7,
    name: 'client.cache_hit.verifying_vs_not',
    value: f.verifyingVsNot.client,
    baseline: f.verifyingVsNot.bare,
    unit: '/s',
    note: 'same hit path: expect ~1',
  });
  ctx.report.add({
    scenario: 7,
    name: 'client.cache_hit.bounded_vs_unbounded',
    value: f.boundedVsUnbounded.client,
    baseline: f.boundedVsUnbounded.bare,
    unit: '/s',
    note: 'maxEntries 10,000 (default) vs Infinity',
  });
  ctx.report.series.clientVerify = f;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const nats = await startNatsServer();
  try {
    console.log(`# client verification, node ${process.version}${quick ? ' (quick)' : ''}`);
    for (const line of describeFigures(await measureClientVerify(nats.url, quick))) console.log(line);
  } finally {
    await nats.stop();
  }
  process.exit(0);
}
