import { Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { CredentialKey } from '@tokenkeeper/contracts';
import { CredentialRepository } from '../persistence/credential.repository.js';

const BATCH = 500;
/** Undecryptable rows named in the sweep's report (the count covers them all up to this). */
const MAX_REPORTED = 100;
const PAUSE_BETWEEN_BATCHES_MS = 200;
/**
 * Every write seals with the current key, so once a sweep has finished no old-key row can
 * appear again (short of a replica still running an older key list during a rolling
 * deploy). Hence one sweep at start and a rare safety sweep: a sweep reads the whole
 * table, about 2–3 % of a core for a minute at 1M rows (docs/benchmarks.md).
 */
const SWEEP_EVERY_MS = 6 * 60 * 60_000;

/**
 * After a key rotation (a new first key in TOKEN_ENCRYPTION_KEYS), rows sealed under an
 * older key are re-sealed in the background, in small batches along the primary key,
 * so that the old key can eventually be retired. Every refresh re-seals its row anyway.
 */
@Injectable()
export class ReencryptionService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReencryptionService.name);
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly repository: CredentialRepository) {}

  onApplicationBootstrap(): void {
    this.timer = setTimeout(() => void this.sweep(), 5_000);
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async sweep(): Promise<number> {
    let cursor: CredentialKey | null = null;
    let total = 0;
    let unparked = 0;
    let skipped = 0;
    const unreadable: CredentialKey[] = [];
    try {
      do {
        const batch = await this.repository.reencryptBatch(cursor, BATCH);
        total += batch.rewritten;
        unparked += batch.unparked;
        skipped += batch.unreadable.length;
        unreadable.push(...batch.unreadable.slice(0, MAX_REPORTED - unreadable.length));
        cursor = batch.next;
        if (cursor) await new Promise((resolve) => setTimeout(resolve, PAUSE_BETWEEN_BATCHES_MS));
      } while (cursor && !this.stopped);
      if (total > 0) this.logger.log({ msg: 're-encrypted credentials under the current key', count: total });
      if (unparked > 0) this.logger.log({ msg: 'parked credentials are readable again and due now', count: unparked });
      if (skipped > 0) {
        this.logger.error({
          msg: 're-encryption skipped credentials it cannot decrypt (check TOKEN_ENCRYPTION_KEYS)',
          count: skipped,
          credentials: unreadable.map((k) => `${k.tenant}/${k.connection}`),
        });
      }
    } catch (error) {
      this.logger.warn({ msg: 're-encryption sweep failed; will try again', error: (error as Error).message });
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.sweep(), SWEEP_EVERY_MS);
    return total;
  }
}
