import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsClusterHandle } from './nats-cluster.harness.js';

describe('startNatsCluster', () => {
  let cluster: NatsClusterHandle;

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3, jetstream: true });
  }, 30_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('routes three JetStream nodes, survives the loss of the meta leader and takes the node back', async () => {
    expect(cluster.nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    expect(new Set(cluster.urls).size).toBe(3);
    expect(cluster.serversFor(2)).toEqual([cluster.urls[2], cluster.urls[0], cluster.urls[1]]);

    // A message published on one node reaches a subscriber on another: the routes work.
    const [a, b] = await Promise.all([connect({ servers: cluster.urls[0] }), connect({ servers: cluster.urls[1] })]);
    const sub = b.subscribe('cluster.ping', { max: 1 });
    await b.flush();
    await new Promise((resolve) => setTimeout(resolve, 200)); // interest propagates over the route
    a.publish('cluster.ping', 'hi');
    for await (const msg of sub) expect(msg.string()).toBe('hi');

    // A stream at replicas 3 is placed on all three nodes.
    const jsm = await jetstreamManager(a);
    const info = await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
    expect(1 + (info.cluster?.replicas?.length ?? 0)).toBe(3);
    await Promise.all([a.close(), b.close()]);

    const leader = await cluster.metaLeader();
    expect(leader).toBeDefined();
    const index = cluster.indexOf(leader!);
    await cluster.kill(index);
    expect(cluster.nodes[index]!.running).toBe(false);
    await cluster.waitForReady();
    const next = await cluster.metaLeader();
    expect(next).toBeDefined();
    expect(next).not.toBe(leader);

    await cluster.restart(index);
    expect(cluster.nodes[index]!.running).toBe(true);
    expect(await cluster.metaLeader()).toBeDefined();
  }, 60_000);
});
