import { DiscardPolicy, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { AUDIT_SUBJECT_FILTER } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import { natsStreamEditCommand, streamDifferences } from './audit-stream.service.js';

const desired: Partial<StreamConfig> = {
  subjects: [AUDIT_SUBJECT_FILTER],
  max_age: nanos(720 * 3600 * 1000),
  max_bytes: 1024 ** 3,
  duplicate_window: nanos(120_000),
  num_replicas: 3,
  discard: DiscardPolicy.Old,
};

describe('audit stream settings check', () => {
  it('finds nothing to report on a stream with the configured settings', () => {
    expect(streamDifferences({ ...desired } as StreamConfig, desired)).toEqual([]);
  });

  it('names each difference with its setting and the nats stream edit flag that applies the configuration', () => {
    const current = {
      ...desired,
      max_age: nanos(1_000),
      max_bytes: 1,
      num_replicas: 1,
      subjects: ['other.>'],
    } as StreamConfig;
    const found = streamDifferences(current, desired);
    expect(found.map((d) => d.setting)).toEqual([
      'max_age (AUDIT_STREAM_MAX_AGE_HOURS)',
      'max_bytes (AUDIT_STREAM_MAX_BYTES)',
      'num_replicas (AUDIT_STREAM_REPLICAS)',
      'subjects',
    ]);
    expect(found[0]).toMatchObject({ current: '1s', configured: '2592000s' });
    expect(natsStreamEditCommand(found)).toBe(
      `nats stream edit TOKEN_AUDIT --max-age=2592000s --max-bytes=1073741824 --replicas=3 --subjects='other.>,${AUDIT_SUBJECT_FILTER}' --force`,
    );
  });
});
