import { Counter, type Registry } from 'prom-client';
import type { RpcDropReason } from './nats-rpc.server.js';

export const RPC_DROPPED_METRIC = 'tokenkeeper_rpc_dropped_total';

/**
 * `tokenkeeper_rpc_dropped_total{reason}` on the given registry, and the callback to hand
 * to NatsRpcServer's `onDrop`. The only label is the reason: never a subject, a tenant or
 * a payload. The series exists from the start (at 0), so an alert can watch its rate.
 */
export function rpcDropCounter(registry: Registry): (reason: RpcDropReason) => void {
  const counter = new Counter({
    name: RPC_DROPPED_METRIC,
    help: "Requests dropped unanswered, by reason (reply_subject: reply subject outside REPLY_SUBJECT_PREFIXES; own_inbox: reply subject in the service's own inbox)",
    labelNames: ['reason'],
    registers: [registry],
  });
  counter.inc({ reason: 'reply_subject' }, 0);
  counter.inc({ reason: 'own_inbox' }, 0);
  return (reason) => counter.inc({ reason });
}
