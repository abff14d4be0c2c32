/**
 * Writes deploy/grafana/tokenkeeper.json, the Grafana dashboard for the refresher's
 * Prometheus series (`npm run dashboard`). Generated so that panel layout and queries
 * stay readable here; a test checks that every series it queries is one the refresher exports.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './compile.js';

interface Panel {
  title: string;
  description: string;
  type: 'timeseries' | 'stat';
  unit: string;
  targets: { expr: string; legend: string }[];
}

const ds = { type: 'prometheus', uid: '${datasource}' };

export const PANELS: Panel[] = [
  {
    title: 'Refresh outcomes',
    description:
      'Refresh attempts per second by provider and outcome (success, retryable, misconfigured, invalid_grant, superseded).',
    type: 'timeseries',
    unit: 'ops',
    targets: [
      {
        expr: 'sum by (provider, outcome) (rate(tokenkeeper_refreshes_total[$__rate_interval]))',
        legend: '{{provider}} {{outcome}}',
      },
    ],
  },
  {
    title: 'Refresh lateness against the due time',
    description: 'How long after its due time a refresh was committed. Target: p99 under 1 s.',
    type: 'timeseries',
    unit: 's',
    targets: [
      {
        expr: 'histogram_quantile(0.5, sum by (le) (rate(tokenkeeper_refresh_lateness_seconds_bucket[$__rate_interval])))',
        legend: 'p50',
      },
      {
        expr: 'histogram_quantile(0.99, sum by (le) (rate(tokenkeeper_refresh_lateness_seconds_bucket[$__rate_interval])))',
        legend: 'p99',
      },
    ],
  },
  {
    title: 'Credentials by status',
    description: 'active, failing (retrying with backoff), reauth_required (a person must re-grant), revoked.',
    type: 'timeseries',
    unit: 'short',
    targets: [{ expr: 'max by (status) (tokenkeeper_credentials)', legend: '{{status}}' }],
  },
  {
    title: 'token.get by outcome',
    description: 'hit = answered from memory; ok = answered after reading or refreshing; error = an error reply.',
    type: 'timeseries',
    unit: 'reqps',
    targets: [
      { expr: 'sum by (outcome) (rate(tokenkeeper_token_get_total[$__rate_interval]))', legend: '{{outcome}}' },
    ],
  },
  {
    title: 'token.get latency (slow path)',
    description: 'Requests not answered from memory: database read, and a refresh when the token was not fresh enough.',
    type: 'timeseries',
    unit: 's',
    targets: [
      {
        expr: 'histogram_quantile(0.5, sum by (le) (rate(tokenkeeper_token_get_seconds_bucket[$__rate_interval])))',
        legend: 'p50',
      },
      {
        expr: 'histogram_quantile(0.99, sum by (le) (rate(tokenkeeper_token_get_seconds_bucket[$__rate_interval])))',
        legend: 'p99',
      },
    ],
  },
  {
    title: 'Provider token request latency',
    description: 'HTTP round trip to each provider token endpoint.',
    type: 'timeseries',
    unit: 's',
    targets: [
      {
        expr: 'histogram_quantile(0.99, sum by (le, provider) (rate(tokenkeeper_refresh_request_seconds_bucket[$__rate_interval])))',
        legend: 'p99 {{provider}}',
      },
    ],
  },
  {
    title: 'Audit outbox backlog',
    description:
      'Audit records committed but not yet acknowledged by JetStream. Grows while NATS is away, then drains.',
    type: 'timeseries',
    unit: 'short',
    targets: [{ expr: 'max(tokenkeeper_outbox_backlog)', legend: 'backlog' }],
  },
  {
    title: 'Audit outbox: oldest unpublished record',
    description: 'Age of the oldest record still waiting for JetStream; 0 when the outbox is drained.',
    type: 'timeseries',
    unit: 's',
    targets: [{ expr: 'max(tokenkeeper_outbox_oldest_pending_seconds)', legend: 'oldest' }],
  },
  {
    title: 'Webhooks: oldest undelivered',
    description:
      'Age of the oldest webhook delivery not yet accepted by its endpoint; parked after the retry budget (a day).',
    type: 'timeseries',
    unit: 's',
    targets: [{ expr: 'max(tokenkeeper_webhook_oldest_undelivered_seconds)', legend: 'oldest' }],
  },
  {
    title: 'Audit ingestion lag',
    description: 'From an event happening to its record being stored by the audit app (its last batch).',
    type: 'timeseries',
    unit: 's',
    targets: [{ expr: 'max(tokenkeeper_audit_ingest_lag_seconds)', legend: 'lag' }],
  },
  {
    title: 'NATS',
    description: 'Connected replicas and reconnects.',
    type: 'timeseries',
    unit: 'short',
    targets: [
      { expr: 'sum(tokenkeeper_nats_connected)', legend: 'connected replicas' },
      { expr: 'sum(increase(tokenkeeper_nats_reconnects_total[$__rate_interval]))', legend: 'reconnects' },
    ],
  },
  {
    title: 'Refreshes in flight',
    description: 'Token requests under a lease right now, across replicas.',
    type: 'stat',
    unit: 'short',
    targets: [{ expr: 'sum(tokenkeeper_refreshes_in_flight)', legend: 'in flight' }],
  },
];

export function dashboard(): object {
  return {
    title: 'Tokenkeeper',
    uid: 'tokenkeeper',
    tags: ['tokenkeeper', 'oauth2'],
    schemaVersion: 39,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [{ name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Prometheus', current: {} }],
    },
    panels: PANELS.map((panel, i) => ({
      id: i + 1,
      title: panel.title,
      description: panel.description,
      type: panel.type,
      datasource: ds,
      gridPos: { x: (i % 2) * 12, y: Math.floor(i / 2) * 8, w: 12, h: 8 },
      fieldConfig: { defaults: { unit: panel.unit }, overrides: [] },
      targets: panel.targets.map((t, j) => ({
        refId: String.fromCharCode(65 + j),
        datasource: ds,
        expr: t.expr,
        legendFormat: t.legend,
      })),
    })),
  };
}

if (process.argv[1]?.endsWith('grafana-dashboard.ts')) {
  writeFileSync(join(REPO_ROOT, 'deploy/grafana/tokenkeeper.json'), `${JSON.stringify(dashboard(), null, 2)}\n`);
  process.stdout.write('wrote deploy/grafana/tokenkeeper.json\n');
}
