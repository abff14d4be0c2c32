import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { ConnectionOptions } from '@nats-io/transport-node';
import { buildAuthz } from '../../tokenctl/src/authz.command.js';
import type { GeneratedUser } from '../../tokenctl/src/authz.render.js';
// The one harness the demo needs, by path: the @tokenkeeper/testing barrel would load the
// database, cluster and proxy harnesses too. The demo is a development tool, not in the image.
import { startNatsServer, type NatsServerHandle } from '../../../libs/testing/src/nats-server.harness.js';

/** Who connects to the bus in the demo. */
export type DemoRole = 'refresher' | 'audit' | 'operator' | `consumer:${string}`;

export interface DemoConsumerSpec {
  tenant: string;
  service: string;
}

/**
 * The demo's NATS: in `secure` mode its own nats-server running the configuration
 * `tokenctl authz` generates, every part of the demo under its own user and
 * inbox prefix, each consumer a service of its own tenant only; in `open` mode whatever
 * NATS_URL points at, without permissions (where no nats-server binary is at hand).
 */
export class DemoBus {
  private constructor(
    readonly mode: 'secure' | 'open',
    readonly url: string,
    private readonly users: Map<string, GeneratedUser>,
    private readonly server?: NatsServerHandle,
  ) {}

  static async start(options: {
    mode: 'secure' | 'open';
    openUrl: string;
    auditConsumer: string;
    consumers: DemoConsumerSpec[];
  }): Promise<DemoBus> {
    if (options.mode === 'open') return new DemoBus('open', options.openUrl, new Map());
    const { config, users } = buildAuthz({
      refresher: true,
      audit: true,
      auditConsumer: options.auditConsumer,
      operator: true,
      consumer: options.consumers.map((c) => `${c.tenant}:${c.service}`),
    });
    const server = await startNatsServer({ jetstream: true, config });
    const byRole = new Map<string, GeneratedUser>();
    for (const generated of users) {
      const { role } = generated.user;
      byRole.set(role.kind === 'consumer' ? `consumer:${role.service}` : role.kind, generated);
    }
    return new DemoBus('secure', server.url, byRole, server);
  }

  /** The NATS_* environment of a role (empty on the open bus), as its service would be given it. */
  env(role: DemoRole): Record<string, string> {
    const generated = this.users.get(role);
    if (!generated || generated.credential.kind !== 'password') return {};
    return {
      NATS_USER: generated.user.name,
      NATS_PASS: generated.credential.password,
      NATS_INBOX_PREFIX: generated.user.inboxPrefix,
    };
  }

  /** nats.js connection options of a role. */
  connectOptions(role: DemoRole): ConnectionOptions {
    const env = this.env(role);
    return env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASS, inboxPrefix: env.NATS_INBOX_PREFIX } : {};
  }

  /** The user name a role runs as, for the story. */
  userOf(role: DemoRole): string {
    return this.users.get(role)?.user.name ?? 'anonymous';
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

/** Whether a nats-server binary is at hand: where libs/testing looks (/usr/sbin, then PATH). */
export function natsServerAvailable(env: NodeJS.ProcessEnv): boolean {
  if (existsSync('/usr/sbin/nats-server')) return true;
  return (env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, 'nats-server'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
