import { createHmac } from 'node:crypto';
import type { Secret } from '@tokenkeeper/common';

/**
 * The signature header's value, in Stripe's layout: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>">`. The time is inside the MAC, so a receiver can refuse a replayed old delivery.
 */
export function signWebhook(secret: Secret, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret.reveal()).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}
