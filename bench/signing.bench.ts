/**
 * Scenario 6: Ed25519 sign and verify of a token event, Node's native crypto (what
 * libs/contracts signing.ts uses) against @nats-io/nkeys, whose Ed25519 is tweetnacl in
 * pure JS. Two nkeys figures: its KeyPair API as an application would call it (it
 * re-derives the key pair from the seed on every sign), and tweetnacl itself with the
 * secret key derived once, the best that library can do.
 *
 * Standalone: `node --import @swc-node/register/esm-register bench/signing.bench.ts [--quick]`
 * In the suite: `npm run bench -- --only 6`.
 */
import { fromPublic, fromSeed } from '@nats-io/nkeys';
// tweetnacl as nkeys loads it (not on the package's main entry). A CommonJS module with
// `exports.default`: seen from ESM the library sits one `default` deeper.
import * as naclModule from '@nats-io/nkeys/lib/nacl.js';
import { pathToFileURL } from 'node:url';
import {
  decodeUserPublicKey,
  decodeUserSeed,
  EventSigner,
  generateSigningSeed,
  SIGNATURE_HEADER,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  signedBytes,
  SIGNER_HEADER,
} from '@tokenkeeper/contracts';
import type { BenchContext, BenchOptions } from './support/context.js';
import { timing } from './support/context.js';
import { median } from './support/stats.js';

/** A token.refreshed event of typical size (about 400 bytes). */
const PAYLOAD = new TextEncoder().encode(
  JSON.stringify({
    eventId: '0b6f3c2e-9a8d-4d71-8f0e-2c7f5b1d9e43',
    tenant: 'acme',
    connection: 'github',
    provider: 'github',
    accessToken: `gho_${'x'.repeat(160)}`,
    tokenType: 'Bearer',
    expiresAt: '2026-12-01T23:00:00.000Z',
    scope: 'repo read:org',
    version: 42,
    refreshedAt: '2026-12-01T22:00:00.000Z',
  }),
);

interface Implementation {
  name: string;
  sign: () => unknown;
  verify: () => boolean;
}

type Nacl = typeof naclModule.default.default;
const loaded = naclModule as unknown as { default: Nacl & { default?: Nacl } };
const nacl: Nacl = loaded.default.default ?? loaded.default;

const SUBJECT = 'token.refreshed.acme.github';

function implementations(): Implementation[] {
  const seed = generateSigningSeed();
  const signer = EventSigner.fromSeed(seed);
  const verifier = new SignatureVerifier([signer.publicKey]);
  // Scheme 2 as the services run it: the signed bytes (scheme, subject, signing time,
  // payload) built on every sign and verify, the age window checked before the Ed25519 check.
  const at = Date.now();
  const nativeSignature = signer.sign(SUBJECT, PAYLOAD, at);
  const headers = new Map([
    [SIGNATURE_HEADER, nativeSignature],
    [SIGNER_HEADER, signer.publicKey],
    [SIGNED_AT_HEADER, String(at)],
  ]);
  const reader = { get: (name: string) => headers.get(name) ?? '' };

  const kp = fromSeed(new TextEncoder().encode(seed));
  const pub = fromPublic(signer.publicKey);
  const rawSignature = Buffer.from(nativeSignature.slice(3), 'base64url');
  const bytes = () => signedBytes(SUBJECT, String(at), PAYLOAD);

  const secretKey = nacl.sign.keyPair.fromSeed(decodeUserSeed(seed)).secretKey;
  const publicKey = decodeUserPublicKey(signer.publicKey)!;

  return [
    {
      name: 'native',
      sign: () => signer.sign(SUBJECT, PAYLOAD, at),
      verify: () => verifier.verify(SUBJECT, PAYLOAD, reader, at) === 'ok',
    },
    // base64url as the header needs it, so the comparison is like for like.
    {
      name: 'nkeys',
      sign: () => Buffer.from(kp.sign(bytes())).toString('base64url'),
      verify: () => pub.verify(bytes(), rawSignature),
    },
    {
      name: 'tweetnacl',
      sign: () => Buffer.from(nacl.sign.detached(bytes(), secretKey)).toString('base64url'),
      verify: () => nacl.sign.detached.verify(bytes(), rawSignature, publicKey),
    },
  ];
}

/** Operations per second of `op` over about `ms` milliseconds. */
function rate(op: () => unknown, ms: number): number {
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(ms * 1_000_000));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 50; i++) op();
    n += 50;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

export interface SigningFigures {
  /** ops/s by implementation and operation, median of the rounds. */
  sign: Record<string, number>;
  verify: Record<string, number>;
}

export function measureSigning(options: Pick<BenchOptions, 'quick'>): SigningFigures {
  const impls = implementations();
  for (const impl of impls) {
    if (!impl.verify()) throw new Error(`${impl.name}: the signature does not verify`);
  }
  const { measureMs, rounds, warmupMs } = timing(options as BenchOptions);
  for (const impl of impls) {
    rate(impl.sign, warmupMs / impls.length / 2);
    rate(impl.verify, warmupMs / impls.length / 2);
  }
  const samples = { sign: new Map<string, number[]>(), verify: new Map<string, number[]>() };
  // Rounds alternate between implementations, so drift in machine load hits all alike.
  for (let r = 0; r < rounds; r++) {
    for (const impl of impls) {
      for (const op of ['sign', 'verify'] as const) {
        const list = samples[op].get(impl.name) ?? [];
        list.push(rate(impl[op], measureMs / 2));
        samples[op].set(impl.name, list);
      }
    }
  }
  const medians = (m: Map<string, number[]>) => Object.fromEntries([...m].map(([k, v]) => [k, median(v)]));
  return { sign: medians(samples.sign), verify: medians(samples.verify) };
}

const us = (opsPerSecond: number) => (1e6 / opsPerSecond).toFixed(1);

export function describeFigures(f: SigningFigures): string[] {
  const lines: string[] = [];
  for (const op of ['sign', 'verify'] as const) {
    for (const [name, ops] of Object.entries(f[op])) {
      lines.push(`signing.${op}.${name}: ${Math.round(ops).toLocaleString('en')} ops/s, ${us(ops)} µs/op`);
    }
  }
  return lines;
}

export async function signingBench(ctx: BenchContext): Promise<void> {
  const f = measureSigning(ctx.options);
  for (const line of describeFigures(f)) ctx.report.note(line);
  for (const op of ['sign', 'verify'] as const) {
    ctx.report.add({
      scenario: 6,
      name: `signing.${op}.native_vs_nkeys`,
      value: f[op].native!,
      baseline: f[op].nkeys!,
      unit: '/s',
      note: `native ${us(f[op].native!)} µs, nkeys ${us(f[op].nkeys!)} µs, tweetnacl (key derived once) ${us(f[op].tweetnacl!)} µs`,
    });
  }
  ctx.report.series.signing = f;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  console.log(`# Ed25519 over a ${PAYLOAD.length}-byte token event, node ${process.version}${quick ? ' (quick)' : ''}`);
  for (const line of describeFigures(measureSigning({ quick }))) console.log(line);
}
