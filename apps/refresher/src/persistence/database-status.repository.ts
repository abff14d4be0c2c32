import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** What readiness asks the database: is the pool open, does it answer, are the migrations applied. */
@Injectable()
export class DatabaseStatusRepository {
  constructor(private readonly db: DataSource) {}

  get isOpen(): boolean {
    return this.db.isInitialized;
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  /** Names of the migrations this build knows that the database has not applied. */
  async pendingMigrations(): Promise<string[]> {
    const table = this.db.options.migrationsTableName ?? 'migrations';
    const rows: { name: string }[] = await this.db.query(`SELECT name FROM "${table}"`);
    const applied = new Set(rows.map((row) => row.name));
    return this.db.migrations.map((m) => m.name ?? m.constructor.name).filter((name) => !applied.has(name));
  }
}
