import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { AUDIT_ENV_VARIABLES, loadAuditConfig } from '../../audit/src/config/audit-config.js';
import { ENV_VARIABLES, loadConfig } from '../src/config/app-config.js';
import { REPO_ROOT } from './ops-support.js';

/**
 * docker-compose.cluster.yml and deploy/nats-cluster/, checked without a Docker engine: the
 * three nodes share one valid nats-server configuration with routes to each other, every app
 * lists all three nodes, and the refresher asks for TOKEN_AUDIT at replicas 3.
 */

const file = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const compose = parse(file('docker-compose.cluster.yml'), { merge: true });
const run = promisify(execFile);
const NODES = ['nats-1', 'nats-2', 'nats-3'];
const SERVER_BINARY = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';

function envOf(service: string): Record<string, string> {
  const env = compose.services[service].environment ?? {};
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      String(v).replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, _n, d) => d ?? ''),
    ]),
  );
}

/** The host path of the file mounted at `target` in a service. */
function mountedFile(service: string, target: string): string {
  const mount = (compose.services[service].volumes as string[]).map((v) => v.split(':')).find(([, t]) => t === target);
  expect(mount, `${service} mounts ${target}`).toBeDefined();
  return mount![0]!.replace(/^\.\//, '');
}

describe('ops: docker-compose.cluster.yml', () => {
  it('runs three NATS nodes on one configuration, each with its own name, store volume and published ports', () => {
    const { services, volumes } = compose;
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['postgres', ...NODES, 'refresher-1', 'refresher-2', 'audit']),
    );
    const conf = file(mountedFile('nats-1', '/etc/nats/nats.conf'));
    for (const [route] of conf.matchAll(/nats-route:\/\/[a-z0-9-]+:\d+/g))
      expect(NODES.map((n) => `nats-route://${n}:6222`)).toContain(route);
    expect([...conf.matchAll(/nats-route:\/\//g)]).toHaveLength(3);
    expect(conf).toMatch(/^\s*store_dir: \/data\/jetstream$/m);
    const names = new Set<string>();
    const published = new Set<string>();
    for (const node of NODES) {
      expect(services[node].image).toMatch(/^nats:2\.10(\b|$)/);
      expect(services[node].command).toEqual(['-c', '/etc/nats/nats.conf']);
      expect(mountedFile(node, '/etc/nats/nats.conf')).toBe('deploy/nats-cluster/nats.conf');
      names.add(services[node].environment.NATS_SERVER_NAME);
      const store = (services[node].volumes as string[]).find((v) => v.endsWith(':/data'))!.split(':')[0]!;
      expect(Object.keys(volumes)).toContain(store);
      for (const port of services[node].ports as string[]) published.add(port.split(':').slice(0, 2).join(':'));
    }
    expect(names).toEqual(new Set(NODES));
    expect(
      new Set(NODES.map((n) => (services[n].volumes as string[]).find((v) => v.endsWith(':/data')))),
    ).toHaveProperty('size', 3);
    // Clients only: monitoring (it lists inbox subjects) stays on each node's loopback.
    expect(published.size).toBe(3);
    for (const port of published) expect(port.split(':')[0]).toBe('127.0.0.1');
    for (const node of NODES)
      expect((services[node].ports as string[]).map((p) => p.split(':').at(-1))).toEqual(['4222']);
    expect(conf).toMatch(/^http: 127\.0\.0\.1:8222$/m);
    expect(conf).not.toMatch(/^\s*(http_port|https|https_port|monitor_port)\s*[:=]/m);
    for (const node of NODES)
      expect(services[node].healthcheck.test.join(' ')).toContain('http://127.0.0.1:8222/healthz');
  });

  it('has a nats-server configuration the server accepts for every node', async () => {
    for (const node of NODES) {
      const { stdout, stderr } = await run(SERVER_BINARY, ['-c', 'deploy/nats-cluster/nats.conf', '-t'], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', ...compose.services[node].environment },
      });
      expect(`${stdout}${stderr}`, node).toMatch(/is valid/);
    }
  });

  it('connects every app to all three nodes and replicates the audit stream three times', () => {
    for (const service of ['refresher-1', 'refresher-2']) {
      const env = envOf(service);
      // Its own variables, plus the ${VAR}s of the providers file it names.
      const known = [
        ...ENV_VARIABLES,
        ...[...file(env.PROVIDERS_FILE!).matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]),
      ];
      for (const name of Object.keys(env)) expect(known, `${service}: ${name}`).toContain(name);
      const config = loadConfig(env);
      expect(config.nats.servers).toEqual(NODES.map((n) => `nats://${n}:4222`));
      expect(config.audit.stream.replicas).toBe(3);
      expect(config.replicaId).toBe(service);
      for (const node of NODES)
        expect(compose.services[service].depends_on[node]).toEqual({ condition: 'service_healthy' });
    }
    // The second replica starts after the first has written the development key both read.
    expect(compose.services['refresher-2'].depends_on['refresher-1']).toEqual({ condition: 'service_healthy' });
    const env = envOf('audit');
    for (const name of Object.keys(env)) expect(AUDIT_ENV_VARIABLES, `audit: ${name}`).toContain(name);
    expect(loadAuditConfig(env).nats.servers).toEqual(NODES.map((n) => `nats://${n}:4222`));
  });
});
