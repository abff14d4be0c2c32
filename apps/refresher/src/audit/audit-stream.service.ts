import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import {
  DiscardPolicy,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER } from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { NATS_CONNECTION } from '../nats/nats-connection.js';

/** JetStream API error code for "stream name already in use with a different configuration". */
const STREAM_NAME_IN_USE = 10058;

/**
 * Owns the `TOKEN_AUDIT` stream: creates it at start, or brings an existing one in
 * line with the configuration (age and size limits, dedupe window, replicas).
 *
 * - File storage, limits retention: records stay for `AUDIT_STREAM_MAX_AGE_HOURS` or
 *   until the stream holds `AUDIT_STREAM_MAX_BYTES`, oldest dropped first. The audit
 *   app keeps its own copy in PostgreSQL, so the stream is a buffer, not the archive.
 * - Dedupe window (`AUDIT_DEDUPE_WINDOW_SECONDS`, default 120 s): a record published
 *   twice with the same `Nats-Msg-Id` (its event id) within the window is stored once.
 *   The relay republishes only rows whose ack it did not record, seconds later, so the
 *   window absorbs those duplicates; older ones are absorbed by the audit table's
 *   unique event id.
 *
 * The stream is ensured lazily as well: if JetStream is not reachable at start, the
 * relay calls `ensure()` again before publishing, so start-up never waits for it.
 */
@Injectable()
export class AuditStreamService implements OnApplicationBootstrap {
  private readonly logger = new Logger(AuditStreamService.name);
  private ready = false;
  private pending?: Promise<void>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
  ) {}

  onApplicationBootstrap(): void {
    this.ensure().catch((error: Error) => {
      this.logger.warn({ msg: 'audit stream not ready yet; the relay will retry', stream: AUDIT_STREAM, error: error.message });
    });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** After a publish failure that may mean the stream is gone: check it again before the next one. */
  invalidate(): void {
    this.ready = false;
  }

  /** The stream settings this configuration asks for. */
  desiredConfig(): Partial<StreamConfig> & { name: string } {
    const { maxAgeSeconds, maxBytes, replicas, dedupeWindowSeconds } = this.config.audit.stream;
    return {
      name: AUDIT_STREAM,
      description: 'Tokenkeeper: secret-free audit records of credential lifecycle changes',
      subjects: [AUDIT_SUBJECT_FILTER],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: nanos(maxAgeSeconds * 1000),
      max_bytes: maxBytes,
      duplicate_window: nanos(dedupeWindowSeconds * 1000),
      num_replicas: replicas,
    };
  }

  /** Creates or updates the stream; resolves at once when that was already done. */
  ensure(): Promise<void> {
    if (this.ready) return Promise.resolve();
    this.pending ??= this.createOrUpdate().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async createOrUpdate(): Promise<void> {
    const jsm = await jetstreamManager(this.nc, { timeout: this.config.audit.relay.publishTimeoutMs });
    const desired = this.desiredConfig();
    let current: StreamConfig | undefined;
    try {
      current = (await jsm.streams.info(AUDIT_STREAM)).config;
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
    }
    if (!current) {
      try {
        await jsm.streams.add(desired);
        this.logger.log({ msg: 'audit stream created', stream: AUDIT_STREAM });
      } catch (error) {
        // Another replica created it at the same moment: fall through to an update check.
        if (!(error instanceof JetStreamApiError && error.code === STREAM_NAME_IN_USE)) throw error;
        current = (await jsm.streams.info(AUDIT_STREAM)).config;
      }
    }
    if (current) {
      if (current.storage !== StorageType.File) {
        this.logger.warn({ msg: 'audit stream uses memory storage; records can be lost on a NATS restart', stream: AUDIT_STREAM });
      }
      const changes: Partial<StreamConfig> = {};
      for (const key of ['description', 'max_age', 'max_bytes', 'duplicate_window', 'num_replicas', 'discard'] as const) {
        if (current[key] !== desired[key]) (changes as Record<string, unknown>)[key] = desired[key];
      }
      if (!current.subjects?.includes(AUDIT_SUBJECT_FILTER)) changes.subjects = [...(current.subjects ?? []), AUDIT_SUBJECT_FILTER];
      if (Object.keys(changes).length > 0) {
        await jsm.streams.update(AUDIT_STREAM, changes);
        this.logger.log({ msg: 'audit stream updated', stream: AUDIT_STREAM, changed: Object.keys(changes) });
      }
    }
    this.ready = true;
  }
}
