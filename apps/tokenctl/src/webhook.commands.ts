import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  NAME_RULE,
  WEBHOOK_EVENT_TYPES,
  WebhookDeleteRequestSchema,
  webhookSubject,
  WebhookSetRequestSchema,
  type WebhookListItem,
} from '@tokenkeeper/contracts';
import { UsageError, validateRequest, type ExitCode } from './cli.errors.js';
import type { CommandContext } from './nats.session.js';
import { printJson, renderTable } from './output.format.js';

type Action = <A extends unknown[]>(
  handler: (ctx: CommandContext, ...args: A) => Promise<ExitCode>,
) => (...args: unknown[]) => Promise<void>;

interface SetFlags {
  url: string;
  secretFile: string;
  events: string;
}

/** `tokenctl webhook set|delete|list`: a tenant's webhook endpoints. */
export function registerWebhookCommands(program: Command, action: Action): void {
  const webhook = program
    .command('webhook')
    .description("a tenant's webhook endpoints (HTTP deliveries of token events)");
  webhook
    .command('set')
    .description('create or replace an endpoint; the secret is read from a file and never shown again')
    .argument('<tenant>')
    .argument('<id>')
    .requiredOption('--url <url>', 'where deliveries are POSTed (http or https)')
    .requiredOption('--secret-file <path>', 'file holding the signing secret, at least 32 characters')
    .requiredOption('--events <list>', `comma-separated, of: ${WEBHOOK_EVENT_TYPES.join(', ')}`)
    .action(action((ctx, tenant: string, id: string, flags: SetFlags) => setCommand(tenant, id, flags, ctx)));
  webhook
    .command('delete')
    .description('remove an endpoint (its pending deliveries go with it)')
    .argument('<tenant>')
    .argument('<id>')
    .action(action((ctx, tenant: string, id: string) => deleteCommand(tenant, id, ctx)));
  webhook
    .command('list')
    .description("the tenant's endpoints and what each last answered")
    .argument('<tenant>')
    .action(action((ctx, tenant: string) => listCommand(tenant, ctx)));
}

async function setCommand(tenant: string, id: string, flags: SetFlags, ctx: CommandContext): Promise<ExitCode> {
  const subject = subjectOf('set', tenant);
  const secret = await readSecret(flags.secretFile);
  const events = flags.events
    .split(/[\s,]+/)
    .map((e) => e.trim())
    .filter(Boolean);
  const request = validateRequest(WebhookSetRequestSchema, { id, url: flags.url, secret, events }, 'webhook');
  const session = await ctx.session();
  const reply = await session.request(subject, request, { tenant });
  if (ctx.out.json) printJson(ctx.out, reply);
  else ctx.out.stdout.write(`webhook ${id} of ${tenant} set (${events.join(', ')})\n`);
  return 0;
}

async function deleteCommand(tenant: string, id: string, ctx: CommandContext): Promise<ExitCode> {
  const subject = subjectOf('delete', tenant);
  const request = validateRequest(WebhookDeleteRequestSchema, { id }, 'webhook id');
  const reply = await (await ctx.session()).request(subject, request, { tenant });
  if (ctx.out.json) printJson(ctx.out, reply);
  else ctx.out.stdout.write(`webhook ${id} of ${tenant} deleted\n`);
  return 0;
}

async function listCommand(tenant: string, ctx: CommandContext): Promise<ExitCode> {
  const subject = subjectOf('list', tenant);
  const reply = await (await ctx.session()).request<{ items: WebhookListItem[] }>(subject, {}, { tenant });
  if (ctx.out.json) {
    printJson(ctx.out, reply);
    return 0;
  }
  const rows = reply.items.map((item) => {
    const last = item.lastDelivery;
    const answer = last
      ? `${last.state} ${last.status ?? last.error ?? ''} at ${last.at} (${last.attempts} tries)`
      : '-';
    return [item.id, item.url, item.events.join(','), answer];
  });
  ctx.out.stdout.write(renderTable(['ID', 'URL', 'EVENTS', 'LAST DELIVERY'], rows, ctx.out.color));
  return 0;
}

function subjectOf(operation: 'set' | 'delete' | 'list', tenant: string): string {
  try {
    return webhookSubject(operation, tenant);
  } catch {
    throw new UsageError(`invalid tenant: ${tenant}`, `names match ${NAME_RULE}`);
  }
}

async function readSecret(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--secret-file: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return text.trim();
}
