import { ContractError, type ErrorCode } from './errors.js';

/** Requests larger than this are refused before parsing; a token request is a few hundred bytes. */
export const MAX_REQUEST_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Decodes a request payload; anything but a UTF-8 JSON object is a `bad_request`. */
export function decodeJsonObject(data: Uint8Array, maxBytes = MAX_REQUEST_BYTES): Record<string, unknown> {
  if (data.length > maxBytes) throw new ContractError('bad_request', `payload larger than ${maxBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(data.length === 0 ? '' : decoder.decode(data));
  } catch {
    throw new ContractError('bad_request', 'payload is not UTF-8 JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ContractError('bad_request', 'payload must be a JSON object');
  }
  return value as Record<string, unknown>;
}

export function errorReply(code: ErrorCode, message: string, retryAfterSeconds?: number) {
  const error = retryAfterSeconds === undefined ? { code, message } : { code, message, retryAfterSeconds };
  return { ok: false as const, error };
}
