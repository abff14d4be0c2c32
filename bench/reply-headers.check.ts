/**
 * Micro-check: the CPU cost of answering with the three signature headers, per publish,
 * against a real nats-server. Variants: no headers; nats.js `headers()` (encoded on every
 * publish); fixedHeaders (encoded once, what the reply cache holds). Not part of `npm run
 * bench`: run with `node --import @swc-node/register/esm-register bench/reply-headers.check.ts`.
 */
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { encodeJson, EventSigner, generateSigningSeed } from '@tokenkeeper/contracts';
import { fixedHeaders } from '@tokenkeeper/nats';
import { startNatsServer } from '@tokenkeeper/testing';

const N = 200_000;
const ROUNDS = 5;
const server = await startNatsServer();
const nc = await connect({ servers: server.url, noAsyncTraces: true });
// No subscriber: the server discards the messages, so only the publishing side is measured.

const signer = EventSigner.fromSeed(generateSigningSeed());
const data = encodeJson({
  ok: true,
  token: {
    tenant: 'acme',
    connection: 'github',
    provider: 'sandbox',
    accessToken: 'x'.repeat(40),
    tokenType: 'Bearer',
    expiresAt: new Date().toISOString(),
    version: 7,
  },
});
const SUBJECT = 'token.get.acme.github';
const signed = signer.headersFor(SUBJECT, data, Date.now());
const plain = natsHeaders();
for (const [k, v] of Object.entries(signed)) plain.set(k, v);
const fixed = fixedHeaders(signed);

const variants: Record<string, () => void> = {
  'no headers': () => nc.publish('check.reply', data),
  'headers() (encoded per publish)': () => nc.publish('check.reply', data, { headers: plain }),
  'fixedHeaders (encoded once)': () => nc.publish('check.reply', data, { headers: fixed }),
};

const results: Record<string, number[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, publish] of Object.entries(variants)) {
    const started = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      publish();
      if ((i & 1023) === 0) await nc.flush();
    }
    await nc.flush();
    const used = process.cpuUsage(started);
    (results[name] ??= []).push(((used.user + used.system) * 1000) / N);
  }
}
for (const [name, ns] of Object.entries(results)) {
  ns.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(34)} median ${ns[Math.floor(ns.length / 2)].toFixed(0)} ns CPU/publish (min ${ns[0].toFixed(0)})`,
  );
}
let signs = process.cpuUsage();
for (let i = 0; i < 20_000; i++) signer.sign(SUBJECT, data, Date.now());
signs = process.cpuUsage(signs);
console.log(`EventSigner.sign of the reply: ${(((signs.user + signs.system) * 1000) / 20_000).toFixed(0)} ns`);
await nc.close();
await server.stop();
