import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * One stored audit record: who (tenant, connection, provider), what (type,
 * version, outcome, code, redacted message), when (`at`, and `received_at` here) and
 * which refresher replica. There is no column that could hold a token or a secret.
 * `record_id` (the record's JetStream message id, never on a core event) is unique, so a
 * redelivered record is stored once; `event_id` correlates with the core event and is
 * not unique, so a record forged under a seen event id cannot displace the genuine one.
 */
@Entity({ name: 'audit_records' })
@Index('audit_records_credential_idx', ['tenant', 'connection', 'at', 'id'])
@Index('audit_records_tenant_idx', ['tenant', 'at', 'id'])
@Index('audit_records_at_idx', ['at', 'id'])
export class AuditRecordEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' }) id!: string;
  @Column({ name: 'record_id', type: 'uuid', unique: true }) recordId!: string;
  @Index('audit_records_event_idx')
  @Column({ name: 'event_id', type: 'uuid' })
  eventId!: string;
  @Column({ type: 'text' }) tenant!: string;
  @Column({ type: 'text' }) connection!: string;
  @Column({ type: 'text' }) provider!: string;
  @Column({ type: 'text' }) type!: string;
  @Column({ type: 'integer' }) version!: number;
  @Column({ type: 'text', nullable: true }) outcome!: string | null;
  @Column({ type: 'text', nullable: true }) code!: string | null;
  @Column({ type: 'text', nullable: true }) message!: string | null;
  @Column({ type: 'timestamptz' }) at!: Date;
  @Column({ type: 'text' }) replica!: string;
  @Column({ name: 'received_at', type: 'timestamptz' }) receivedAt!: Date;
}
