/**
 * The baseline responder for token.get: raw nats.js, a bare queue subscription that
 * answers every request with a fixed reply of the same size as the refresher's. What
 * a NATS request-reply service costs when it does nothing at all.
 *
 * BENCH_NATS_URL, BENCH_ECHO_SUBJECT, BENCH_ECHO_REPLY_BYTES.
 */
import { connect } from '@nats-io/transport-node';
import { reportFatal, reportReady, serveParent } from './children.js';

try {
  const nc = await connect({ servers: process.env.BENCH_NATS_URL, noAsyncTraces: true, name: 'bench-echo' });
  const subject = process.env.BENCH_ECHO_SUBJECT ?? 'bench.echo';
  const size = Number(process.env.BENCH_ECHO_REPLY_BYTES ?? 400);
  const reply = new TextEncoder().encode(JSON.stringify({ ok: true, pad: 'x'.repeat(Math.max(0, size - 20)) }));
  nc.subscribe(subject, {
    queue: 'bench-echo',
    callback: (err, msg) => {
      if (!err) msg.respond(reply);
    },
  });
  await nc.flush();
  serveParent({ ping: () => true }, () => nc.drain());
  reportReady({ replyBytes: reply.length });
} catch (error) {
  reportFatal(error);
}
