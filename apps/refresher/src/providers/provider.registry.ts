import type { ProviderConfig } from './provider.types.js';

/** The validated providers file, by id. */
export class ProviderRegistry {
  constructor(private readonly providers: ReadonlyMap<string, ProviderConfig>) {}

  get(id: string): ProviderConfig | undefined {
    return this.providers.get(id);
  }

  all(): ProviderConfig[] {
    return [...this.providers.values()];
  }
}
