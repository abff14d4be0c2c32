import { Logger } from '@nestjs/common';
import { EncryptionKeyRepository } from './encryption-key.repository.js';
import { EncryptionKeyError, tokenAad, TokenCipher } from '../crypto/token-cipher.js';

/**
 * Refuses to start with a key that differs from the one the database knows under the same
 * id (a mistyped or truncated key would seal rows that the other replicas cannot open).
 *
 * Runs as an async provider factory (`EncryptionKeyCheck.run`), which NestFactory.create
 * awaits while it builds the module: before any lifecycle hook (scheduler, re-encryption
 * sweep) and before the NATS handlers subscribe (they go live in startAllMicroservices,
 * ahead of onModuleInit), so nothing is sealed with an unchecked key. Ids not recorded yet are recorded;
 * when rows sealed under such an id already exist (a database older than the check), one
 * of them must open with the configured key first.
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
    const sample = await this.repository.sampleSealedWith(keyId);
    if (!sample || this.cipher.keyIdOf(sample.blob) !== keyId) return;
    try {
      this.cipher.decrypt(sample.blob, tokenAad(sample.tenant, sample.connection, sample.field));
    } catch {
      throw mismatch([keyId]);
    }
  }
}

function mismatch(keyIds: string[]): EncryptionKeyError {
  const names = keyIds.map((id) => `"${id}"`).join(', ');
  return new EncryptionKeyError(
    `TOKEN_ENCRYPTION_KEYS: key ${names} is not the key this database knows under that id ` +
      '(mistyped, truncated or replaced?). Configure the original key, or give a new key a new id.',
  );
}
