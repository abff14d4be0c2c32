import { ContractError } from '@tokenkeeper/contracts';
import type { ProviderConfig } from './provider.types.js';

/**
 * `{name}` placeholders in a provider's URLs, filled per credential from its
 * `connectionConfig` (a shop, an instance host). A value must never move a request to
 * another host or path: a placeholder may stand only for a whole host label
 * (`https://{shop}.myshopify.com`) or a whole path segment (`/tenants/{tenant}/token`), and
 * its value must fit that place: a host label is 1-63 letters, digits and inner hyphens; a
 * path segment is 1-128 letters, digits, `_` and `-`. Dots, slashes, `@`, `:`, `?`, `#`,
 * `%` and whitespace are refused, so `evil.com/`, `..` or `user@host` can never reach a URL.
 */

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9_]{0,31})\}/g;
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const PATH_SEGMENT = /^[A-Za-z0-9_-]{1,128}$/;
const URL_FIELDS = ['tokenUrl', 'authorizationUrl', 'revocationUrl'] as const;

export type PlaceholderPlace = 'host' | 'path';

/** Placeholders of one URL with their place; a problem text when one sits anywhere else. */
export function placeholdersOfUrl(url: string): { places: Map<string, PlaceholderPlace> } | { problem: string } {
  const places = new Map<string, PlaceholderPlace>();
  const scheme = /^https?:\/\//i.exec(url);
  if (!scheme) return url.includes('{') ? { problem: 'placeholders need an http(s) URL' } : { places };
  const rest = url.slice(scheme[0].length);
  const cut = rest.search(/[/?#]/);
  const authority = cut < 0 ? rest : rest.slice(0, cut);
  const tail = cut < 0 ? '' : rest.slice(cut);
  const [host, ...port] = authority.split(':');
  if (port.join(':').includes('{')) return { problem: 'a placeholder cannot stand for a port' };
  for (const label of host.split('.')) {
    if (!label.includes('{')) continue;
    const whole = /^\{([A-Za-z][A-Za-z0-9_]{0,31})\}$/.exec(label);
    if (!whole) return { problem: `placeholder in "${label}" must be a whole host label` };
    places.set(whole[1], 'host');
  }
  const queryAt = tail.search(/[?#]/);
  const path = queryAt < 0 ? tail : tail.slice(0, queryAt);
  if (queryAt >= 0 && tail.slice(queryAt).includes('{')) return { problem: 'placeholders may not be in the query' };
  for (const segment of path.split('/')) {
    if (!segment.includes('{')) continue;
    const whole = /^\{([A-Za-z][A-Za-z0-9_]{0,31})\}$/.exec(segment);
    if (!whole) return { problem: `placeholder in "${segment}" must be a whole path segment` };
    if (places.get(whole[1]) === 'host')
      return { problem: `placeholder {${whole[1]}} is both a host label and a path segment` };
    places.set(whole[1], 'path');
  }
  return { places };
}

/** Every placeholder of a provider's URLs and its place (the loader has checked the URLs). */
export function placeholdersOf(
  provider: Pick<ProviderConfig, (typeof URL_FIELDS)[number]>,
): Map<string, PlaceholderPlace> {
  const all = new Map<string, PlaceholderPlace>();
  for (const field of URL_FIELDS) {
    const url = provider[field];
    if (url === undefined) continue;
    const found = placeholdersOfUrl(url);
    if ('places' in found) for (const [name, place] of found.places) all.set(name, place);
  }
  return all;
}

/**
 * Checks a register's or connect's `connectionConfig` against the provider: every placeholder
 * has a value that fits its place, and no key names a placeholder the provider does not have.
 * `bad_request` names the key and the rule, never the value.
 */
export function assertConnectionConfig(provider: ProviderConfig, config: Record<string, string> | undefined): void {
  const places = placeholdersOf(provider);
  const given = config ?? {};
  for (const key of Object.keys(given)) {
    if (!places.has(key))
      throw new ContractError(
        'bad_request',
        `connectionConfig.${key}: provider "${provider.id}" has no {${key}} placeholder`,
      );
  }
  for (const [name, place] of places) {
    const value = given[name];
    if (value === undefined)
      throw new ContractError('bad_request', `connectionConfig.${name}: required by provider "${provider.id}"`);
    const fits = place === 'host' ? HOST_LABEL.test(value) : PATH_SEGMENT.test(value);
    if (!fits)
      throw new ContractError(
        'bad_request',
        place === 'host'
          ? `connectionConfig.${name}: must be one host label (1-63 of A-Z a-z 0-9 and inner -)`
          : `connectionConfig.${name}: must be one path segment (1-128 of A-Z a-z 0-9 _ -)`,
      );
  }
}

/**
 * The provider as one credential sees it: its URLs with the placeholders filled. Checked
 * again here, so that a value stored before a providers-file change is never sent unchecked.
 */
export function bindProvider(provider: ProviderConfig, config: Record<string, string> | undefined): ProviderConfig {
  if (placeholdersOf(provider).size === 0) return provider;
  assertConnectionConfig(provider, config);
  const fill = (url: string) => url.replace(PLACEHOLDER, (_, name: string) => config![name]);
  const bound: ProviderConfig = { ...provider, tokenUrl: fill(provider.tokenUrl) };
  if (provider.authorizationUrl !== undefined) bound.authorizationUrl = fill(provider.authorizationUrl);
  if (provider.revocationUrl !== undefined) bound.revocationUrl = fill(provider.revocationUrl);
  return bound;
}
