import { Logger } from '@nestjs/common';
import { EncryptionKeyRepository, type SealedSample } from './encryption-key.repository.js';
import { EncryptionKeyError, tokenAad, TokenCipher } from '../crypto/token-cipher.js';

/** Rows tried for a key id not recorded yet; enough that a few corrupt ones cannot outvote the rest. */
const SAMPLED_ROWS = 16;

/**
 * Refuses to start with a key that differs from the one the database knows under the same
 * id (a mistyped or truncated key would seal rows that the other replicas cannot open).
 *
 * Runs as an async provider factory (`EncryptionKeyCheck.run`), which NestFactory.create
 * awaits while it builds the module: before any lifecycle hook (scheduler, re-encryption
 * sweep) and before the NATS handlers subscribe (they go live in startAllMicroservices,
 * ahead of onModuleInit), so nothing is sealed with an unchecked key. Ids not recorded yet are recorded;
 * when rows sealed under such an id already exist (a database older than the check), the
 * configured key must open one of them first.
 *
 * Of those rows it tries up to SAMPLED_ROWS and accepts the key if any one opens. A GCM tag
 * that verifies is proof of the key (a wrong key passes with odds of 2^-128), whereas a
 * row that does not open proves little: a corrupt blob, one copied from another row, or
 * one cut short fails with the right key too. So a single bad row, which the re-encryption
 * sweep and the claim path already park and report, must not stop every replica from
 * starting; the rows that did not open are named in a warning. A wrong key opens none of
 * them, and is refused.
 */
export class EncryptionKeyCheck {
  private readonly logger = new Logger(EncryptionKeyCheck.name);

  private constructor(
    private readonly cipher: TokenCipher,
    private readonly repository: EncryptionKeyRepository,
  ) {}

  /** The provider factory: resolves once every configured key matches, else throws. */
  static async run(this: void, cipher: TokenCipher, repository: EncryptionKeyRepository): Promise<EncryptionKeyCheck> {
    const check = new EncryptionKeyCheck(cipher, repository);
    await check.verify();
    return check;
  }

  async verify(): Promise<void> {
    const configured = this.cipher.keyCheckValues();
    const stored = new Map((await this.repository.find(configured.map((c) => c.keyId))).map((s) => [s.keyId, s]));
    const unknown = configured.filter((c) => !stored.has(c.keyId));
    for (const { keyId } of unknown) await this.tryExistingRows(keyId);
    await this.repository.insertMissing(unknown);
    const after = new Map((await this.repository.find(configured.map((c) => c.keyId))).map((s) => [s.keyId, s]));
    const mismatched = configured
      .filter((c) => !after.get(c.keyId)?.checkValue.equals(c.checkValue))
      .map((c) => c.keyId);
    if (mismatched.length > 0) throw mismatch(mismatched);
    if (unknown.length > 0)
      this.logger.log({ msg: 'encryption key ids recorded', keyIds: unknown.map((c) => c.keyId) });
  }

  private async tryExistingRows(keyId: string): Promise<void> {
    const samples = (await this.repository.samplesSealedWith(keyId, SAMPLED_ROWS)).filter(
      (s) => this.cipher.keyIdOf(s.blob) === keyId,
    );
    if (samples.length === 0) return;
    const unopened = samples.filter((s) => !this.opens(s));
    if (unopened.length === samples.length) throw mismatch([keyId], samples.length);
    if (unopened.length > 0) {
      this.logger.warn({
        msg: 'key check: some rows sealed under this key id do not decrypt with it (corrupt or copied?); the key opened the others',
        keyId,
        tried: samples.length,
        credentials: unopened.map((s) => `${s.tenant}/${s.connection}`),
      });
    }
  }

  private opens(sample: SealedSample): boolean {
    try {
      this.cipher.decrypt(sample.blob, tokenAad(sample.tenant, sample.connection, sample.field));
      return true;
    } catch {
      return false;
    }
  }
}

function mismatch(keyIds: string[], rowsTried?: number): EncryptionKeyError {
  const names = keyIds.map((id) => `"${id}"`).join(', ');
  const evidence =
    rowsTried === undefined ? '' : ` (none of the ${rowsTried} rows sealed under it that were tried decrypts)`;
  return new EncryptionKeyError(
    `TOKEN_ENCRYPTION_KEYS: key ${names} is not the key this database knows under that id${evidence} ` +
      '(mistyped, truncated or replaced?). Configure the original key, or give a new key a new id.',
  );
}
