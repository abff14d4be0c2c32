import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * Audit records waiting to be published to JetStream. Rows are written in the same
 * statement as the change they describe, so a record exists exactly when the change
 * was committed. Payloads are secret-free by construction (see AuditRecord).
 */
@Entity({ name: 'outbox' })
@Index('outbox_pending_idx', ['id'], { where: 'published_at IS NULL' })
export class OutboxEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' }) id!: string;
  @Column({ name: 'event_id', type: 'uuid', unique: true }) eventId!: string;
  /** The record's JetStream message id and audit key; unlike eventId, never on a core event. */
  @Column({ name: 'record_id', type: 'uuid', default: () => 'gen_random_uuid()' }) recordId!: string;
  @Column({ type: 'text' }) tenant!: string;
  @Column({ type: 'text' }) connection!: string;
  @Column({ type: 'text' }) type!: string;
  @Column({ type: 'text' }) subject!: string;
  @Column({ type: 'jsonb' }) payload!: Record<string, unknown>;
  @Column({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column({ name: 'published_at', type: 'timestamptz', nullable: true }) publishedAt!: Date | null;
  /** When the record's webhook deliveries were derived; retention keeps the row until then. */
  @Column({ name: 'webhooks_at', type: 'timestamptz', nullable: true }) webhooksAt!: Date | null;
}
