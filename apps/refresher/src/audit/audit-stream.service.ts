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
 * The `TOKEN_AUDIT` stream: creates it at start when it is missing, with the configured
 * age and size limits, dedupe window and replicas. An existing stream's settings belong to
 * the operator: a difference is logged as a warning with the `nats stream edit` command
 * that would apply the configuration, never applied by the refresher.
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
      this.logger.warn({
        msg: 'audit stream not ready yet; the relay will retry',
        stream: AUDIT_STREAM,
        error: error.message,
      });
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

  /** Creates the stream when missing, else checks its settings; resolves at once when that was already done. */
  ensure(): Promise<void> {
    if (this.ready) return Promise.resolve();
    this.pending ??= this.createOrCheck().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async createOrCheck(): Promise<void> {
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
        // Another replica created it at the same moment: fall through to the settings check.
        if (!(error instanceof JetStreamApiError && error.code === STREAM_NAME_IN_USE)) throw error;
        current = (await jsm.streams.info(AUDIT_STREAM)).config;
      }
    }
    if (current) this.reportDrift(current, desired);
    this.ready = true;
  }

  /**
   * An existing stream is the operator's: the refresher may not update it (its NATS user has
   * no STREAM.UPDATE, which could shrink the limits to nothing), so it names what differs
   * and the command that would apply this configuration, and publishes into it as it is.
   */
  private reportDrift(current: StreamConfig, desired: Partial<StreamConfig>): void {
    if (current.storage !== StorageType.File) {
      this.logger.warn({
        msg: 'audit stream uses memory storage; records can be lost on a NATS restart',
        stream: AUDIT_STREAM,
      });
    }
    const differences = streamDifferences(current, desired);
    if (differences.length === 0) return;
    this.logger.warn({
      msg: 'audit stream settings differ from this configuration; the refresher does not change them, an operator does',
      stream: AUDIT_STREAM,
      differences: differences.map((d) => `${d.setting}: ${d.current} (configured ${d.configured})`),
      operatorCommand: natsStreamEditCommand(differences),
    });
  }
}

/** One stream setting whose value differs from the configuration, with the `nats stream edit` flag that sets it. */
export interface StreamDifference {
  setting: string;
  current: string;
  configured: string;
  flag: string;
}

const seconds = (ns: number | undefined) => `${Math.round((ns ?? 0) / 1e9)}s`;

/** What differs between an existing stream and the settings this configuration asks for. */
export function streamDifferences(current: StreamConfig, desired: Partial<StreamConfig>): StreamDifference[] {
  const found: StreamDifference[] = [];
  const add = (setting: string, now: string, wanted: string, flag: string) => {
    if (now !== wanted) found.push({ setting, current: now, configured: wanted, flag });
  };
  add(
    'max_age (AUDIT_STREAM_MAX_AGE_HOURS)',
    seconds(current.max_age),
    seconds(desired.max_age),
    `--max-age=${seconds(desired.max_age)}`,
  );
  add(
    'max_bytes (AUDIT_STREAM_MAX_BYTES)',
    String(current.max_bytes),
    String(desired.max_bytes),
    `--max-bytes=${desired.max_bytes}`,
  );
  add(
    'duplicate_window (AUDIT_DEDUPE_WINDOW_SECONDS)',
    seconds(current.duplicate_window),
    seconds(desired.duplicate_window),
    `--dupe-window=${seconds(desired.duplicate_window)}`,
  );
  add(
    'num_replicas (AUDIT_STREAM_REPLICAS)',
    String(current.num_replicas),
    String(desired.num_replicas),
    `--replicas=${desired.num_replicas}`,
  );
  add('discard', String(current.discard), String(desired.discard), `--discard=${desired.discard}`);
  if (!current.subjects?.includes(AUDIT_SUBJECT_FILTER)) {
    // Without it the relay's publishes find no stream; they are retried until an operator adds it.
    // Quoted: the command is meant to be pasted into a shell, and `>` would redirect.
    const subjects = [...(current.subjects ?? []), AUDIT_SUBJECT_FILTER];
    found.push({
      setting: 'subjects',
      current: (current.subjects ?? []).join(','),
      configured: subjects.join(','),
      flag: `--subjects='${subjects.join(',')}'`,
    });
  }
  return found;
}

/** The command an operator (a NATS user allowed `$JS.API.STREAM.UPDATE.TOKEN_AUDIT`) runs to apply the configuration. */
export function natsStreamEditCommand(differences: readonly StreamDifference[]): string {
  return `nats stream edit ${AUDIT_STREAM} ${differences.map((d) => d.flag).join(' ')} --force`;
}
