import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** Aggregates over the credentials table for metrics; nothing on the request or refresh paths. */
@Injectable()
export class CredentialStatsRepository {
  constructor(private readonly db: DataSource) {}

  /** Stored credentials by status; statuses without rows are absent. */
  async countByStatus(): Promise<Map<string, number>> {
    if (!this.db.isInitialized) throw new Error('connection pool closed');
    const rows: { status: string; n: number }[] = await this.db.query(
      `SELECT status, count(*)::int AS n FROM credentials GROUP BY status`,
    );
    return new Map(rows.map((row) => [row.status, Number(row.n)]));
  }
}
