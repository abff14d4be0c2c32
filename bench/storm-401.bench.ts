/**
 * Scenario 5: the client's 401 path. Many TokenClients (spread over a few NATS
 * connections, as in a fleet of services) call the sandbox's protected API with the same
 * token; the provider revokes it, so every one of them gets a 401 at about the same
 * moment and reports the rejected version. Counted at the provider: refreshes caused per
 * rejected version (target exactly 1; the baseline is one per client, what each client
 * refreshing on its own would cause).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import type { BenchContext } from './support/context.js';
import { connectCaller, register } from './support/env.js';
import { median } from './support/stats.js';

const KEY = { tenant: 'bench', connection: 'storm-401' };

export async function storm401Bench(ctx: BenchContext): Promise<void> {
  const { caller, report, env } = ctx;
  const clientCount = ctx.options.quick ? 50 : 200;
  const rounds = ctx.options.quick ? 3 : 10;
  const connectionCount = 10;

  const tokens = await env.sandbox.call<{ accessToken: string; refreshToken: string }>('issueTokens');
  const registered = await register(caller, KEY, { provider: 'sandbox', ...tokens, expiresIn: 3600 });
  if (!registered.ok) throw new Error(`register failed: ${JSON.stringify(registered.error)}`);

  const connections: NatsConnection[] = await Promise.all(
    Array.from({ length: connectionCount }, (_, i) => connectCaller(env.natsUrl, `bench-storm-${i}`)),
  );
  const clients = Array.from(
    { length: clientCount },
    (_, i) =>
      new TokenClient({ nc: connections[i % connectionCount], connections: [KEY], logger: { warn: () => undefined } }),
  );
  try {
    await Promise.all(clients.map((c) => c.start()));
    await Promise.all(clients.map((c) => c.getToken(KEY)));
    const perRound: number[] = [];
    const tokenGets: number[] = [];
    const stormMs: number[] = [];
    let failures = 0;
    for (let round = 0; round < rounds; round++) {
      const current = await clients[0]!.getToken(KEY);
      const before = await env.sandbox.call<{ refreshGrants: number }>('stats');
      const fallbacksBefore = clients.reduce((sum, c) => sum + c.stats.fallbacks, 0);
      await env.sandbox.call('revokeAccessToken', { token: current.accessToken });
      const t0 = performance.now();
      const responses = await Promise.all(
        clients.map(async (client) => {
          const res = await client.fetch(env.sandboxInfo.apiUrl, { method: 'GET' }, KEY);
          await res.body.dump();
          return res;
        }),
      );
      stormMs.push(performance.now() - t0);
      failures += responses.filter((r) => r.status !== 200 || r.tokenVersion !== current.version + 1).length;
      const after = await env.sandbox.call<{ refreshGrants: number }>('stats');
      perRound.push(after.refreshGrants - before.refreshGrants);
      tokenGets.push(clients.reduce((sum, c) => sum + c.stats.fallbacks, 0) - fallbacksBefore);
    }
    if (failures > 0) report.note(`401 storm: ${failures} API calls did not end in a 200 with the next version`);
    report.note(
      `401 storm: ${clientCount} clients on ${connectionCount} connections, ${rounds} revocations; refreshes per round ${perRound.join(',')}; ` +
        `token.get sent per round (median) ${median(tokenGets)}; all ${clientCount} calls answered 200 after a median ${median(stormMs).toFixed(1)} ms`,
    );
    report.add({
      scenario: 5,
      name: 'storm_401.refreshes_per_rejected_version',
      value: Math.max(...perRound),
      baseline: clientCount,
      unit: '',
      lowerIsBetter: true,
      target: { on: 'value', op: '==', limit: 1 },
      note: failures ? `${failures} calls failed` : `worst of ${rounds} rounds; baseline = one refresh per client`,
    });
    report.series.storm = { clientCount, rounds, perRound, tokenGets, stormMs };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(connections.map((nc) => nc.close()));
  }
}
