import { freePorts } from './free-port.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.harness.js';
import { sleep } from './wait.js';

export interface NatsClusterOptions {
  /** Number of nodes; default 3 (JetStream needs a majority: 3 nodes survive the loss of one). */
  size?: number;
  /** JetStream on every node, each with its own store directory and `server_name`. */
  jetstream?: boolean;
  /** Cluster name; default `tk-test`. */
  name?: string;
  /** Extra nats-server configuration text appended to every node's file (e.g. an authorization block). */
  config?: string;
  /** How long start(), restart() and waitForReady() wait for routes and a meta leader; default 20 s. */
  readyTimeoutMs?: number;
}

export interface NatsClusterNode {
  /** `server_name`: what JetStream names as leader or replica. */
  readonly name: string;
  /** Client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  readonly clusterPort: number;
  /** Monitoring endpoint, `http://127.0.0.1:<port>` (`/varz`, `/routez`, `/jsz`, `/connz`, `/healthz`). */
  readonly monitorUrl: string;
  readonly server: NatsServerHandle;
  /** Whether the process is running (it was not killed or stopped since its last start). */
  readonly running: boolean;
}

export interface NatsClusterHandle {
  readonly nodes: readonly NatsClusterNode[];
  /** Every node's client URL, in node order. */
  readonly urls: string[];
  /** Every client URL with node `index` first (for `NATS_URL`, with noRandomize clients). */
  serversFor(index: number): string[];
  /** Node index by `server_name`, or -1. */
  indexOf(serverName: string): number;
  /** SIGKILL one node, as a crash; the others keep the cluster (and JetStream quorum) going. */
  kill(index: number): Promise<void>;
  /** Starts a killed or stopped node again (same ports, same store) and waits until the cluster has re-formed. */
  restart(index: number): Promise<void>;
  /**
   * Waits until every running node has routes to every other running node and, with
   * JetStream, they all name the same meta leader among the running nodes.
   */
  waitForReady(timeoutMs?: number): Promise<void>;
  /** The JetStream meta leader's `server_name`, as the running nodes see it (undefined while there is none). */
  metaLeader(): Promise<string | undefined>;
  /** Stops every node (SIGTERM). */
  stop(): Promise<void>;
}

interface Ports {
  client: number;
  cluster: number;
  monitor: number;
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    return response.ok ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

interface Routez {
  num_routes: number;
  routes?: { remote_id: string; remote_name?: string }[];
}
interface Varz {
  server_id: string;
}
interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number };
}

class NatsClusterNodeImpl implements NatsClusterNode {
  running = true;
  constructor(
    readonly name: string,
    readonly ports: Ports,
    readonly server: NatsServerHandle,
  ) {}
  get url(): string {
    return this.server.url;
  }
  get port(): number {
    return this.ports.client;
  }
  get clusterPort(): number {
    return this.ports.cluster;
  }
  get monitorUrl(): string {
    return `http://127.0.0.1:${this.ports.monitor}`;
  }
}

class NatsClusterHarness implements NatsClusterHandle {
  constructor(
    readonly nodes: NatsClusterNodeImpl[],
    private readonly jetstream: boolean,
    private readonly readyTimeoutMs: number,
  ) {}

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  serversFor(index: number): string[] {
    const node = this.node(index);
    return [node.url, ...this.nodes.filter((n) => n !== node).map((n) => n.url)];
  }

  indexOf(serverName: string): number {
    return this.nodes.findIndex((n) => n.name === serverName);
  }

  async kill(index: number): Promise<void> {
    const node = this.node(index);
    node.running = false;
    await node.server.kill();
  }

  async restart(index: number): Promise<void> {
    const node = this.node(index);
    await node.server.restart();
    node.running = true;
    await this.waitForReady();
  }

  async metaLeader(): Promise<string | undefined> {
    const leaders = await Promise.all(
      this.live().map((n) => getJson<Jsz>(`${n.monitorUrl}/jsz`).then((j) => j?.meta_cluster?.leader)),
    );
    const first = leaders[0];
    return first && leaders.every((l) => l === first) ? first : undefined;
  }

  async waitForReady(timeoutMs = this.readyTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const why = await this.notReady();
      if (why === undefined) return;
      last = why;
      if (Date.now() > deadline) throw new Error(`NATS cluster not ready after ${timeoutMs} ms: ${last}`);
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) node.running = false;
    await Promise.all(this.nodes.map((n) => n.server.stop()));
  }

  /** Undefined when ready, else what is missing. */
  private async notReady(): Promise<string | undefined> {
    const live = this.live();
    const ids = await Promise.all(live.map((n) => getJson<Varz>(`${n.monitorUrl}/varz`).then((v) => v?.server_id)));
    if (ids.some((id) => id === undefined)) return 'a node does not answer /varz';
    for (const [i, node] of live.entries()) {
      const routez = await getJson<Routez>(`${node.monitorUrl}/routez`);
      const remotes = new Set((routez?.routes ?? []).map((r) => r.remote_id));
      const missing = ids.filter((id, j) => j !== i && !remotes.has(id!));
      if (missing.length > 0) return `${node.name} has no route to ${missing.length} node(s)`;
    }
    if (!this.jetstream) return undefined;
    const leader = await this.metaLeader();
    if (leader === undefined) return 'no JetStream meta leader agreed on by every running node';
    if (!live.some((n) => n.name === leader)) return `meta leader ${leader} is not a running node`;
    // /healthz is ok once the node's JetStream (meta and its assets) is current.
    for (const node of live) {
      const health = await getJson<{ status: string }>(`${node.monitorUrl}/healthz`);
      if (health?.status !== 'ok') return `${node.name} /healthz is not ok`;
    }
    return undefined;
  }

  private live(): NatsClusterNodeImpl[] {
    return this.nodes.filter((n) => n.running);
  }

  private node(index: number): NatsClusterNodeImpl {
    const node = this.nodes[index];
    if (!node) throw new Error(`no cluster node ${index} (size ${this.nodes.length})`);
    return node;
  }
}

function nodeConfig(name: string, clusterName: string, own: Ports, all: Ports[], extra?: string): string {
  const routes = all.filter((p) => p !== own).map((p) => `    "nats-route://127.0.0.1:${p.cluster}"`);
  return [
    `server_name: "${name}"`,
    `http: "127.0.0.1:${own.monitor}"`,
    'cluster {',
    `  name: "${clusterName}"`,
    `  listen: "127.0.0.1:${own.cluster}"`,
    '  routes: [',
    routes.join('\n'),
    '  ]',
    '}',
    extra ?? '',
  ].join('\n');
}

/**
 * A cluster of real nats-server processes on 127.0.0.1, routed to each other, optionally
 * with clustered JetStream. Resolves once every route is up and JetStream has a meta
 * leader, so a stream with replicas = size can be created at once.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsClusterHandle> {
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error('cluster size must be a positive integer');
  const clusterName = options.name ?? 'tk-test';
  const flat = await freePorts(size * 3);
  const ports: Ports[] = Array.from({ length: size }, (_, i) => ({
    client: flat[3 * i]!,
    cluster: flat[3 * i + 1]!,
    monitor: flat[3 * i + 2]!,
  }));
  const names = ports.map((_, i) => `n${i + 1}`);
  const started = await Promise.allSettled(
    ports.map((own, i) =>
      startNatsServer({
        port: own.client,
        jetstream: options.jetstream,
        config: nodeConfig(names[i]!, clusterName, own, ports, options.config),
      }),
    ),
  );
  const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure) {
    await Promise.all(servers.map((s) => s.kill()));
    throw failure.reason;
  }
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  const cluster = new NatsClusterHarness(
    servers.map((server, i) => new NatsClusterNodeImpl(names[i]!, ports[i]!, server)),
    options.jetstream ?? false,
    readyTimeoutMs,
  );
  try {
    await cluster.waitForReady();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
