import {
  AUDIT_RECORD_FIELDS,
  AuditRecordSchema,
  decodeJsonObject,
  parseAuditSubject,
  type AuditRecord,
} from '@tokenkeeper/contracts';

/** Longest message stored; the refresher already cuts its messages at 300 characters. */
export const MESSAGE_MAX = 300;

const REDACTED = '[redacted]';

/**
 * Patterns of secret-looking text. The refresher never writes a secret into a message
 * (it builds them from codes and drops provider text that echoes a secret); this is the
 * second line, for a record written by something else or a bug.
 */
const SECRET_PATTERNS: ReadonlyArray<[RegExp, string]> = [
  // An authorization header value: "Bearer abc", "Basic abc".
  [/\b(bearer|basic)\s+[^\s,;"']+/gi, `$1 ${REDACTED}`],
  // key=value or "key": "value" pairs of OAuth secrets.
  [
    /\b(access_?token|refresh_?token|id_?token|client_?secret|password|passwd|assertion|authorization|api_?key|secret)(["']?\s*[:=]\s*["']?)(?!(?:bearer|basic)\s|\[redacted\])[^\s"'&,;}]+/gi,
    `$1$2${REDACTED}`,
  ],
  // A JWT.
  [/\beyJ[\w-]*\.[\w-]*\.[\w-]*/g, REDACTED],
  // Any long opaque run (tokens are long random strings; prose has no 32-character words).
  [/[A-Za-z0-9+/_~.=-]{32,}/g, REDACTED],
];

export function redactMessage(message: string): string {
  let text = message;
  for (const [pattern, replacement] of SECRET_PATTERNS) text = text.replace(pattern, replacement);
  // Control characters have no business in a log-like field.
  // eslint-disable-next-line no-control-regex
  text = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return text.length > MESSAGE_MAX ? `${text.slice(0, MESSAGE_MAX - 1)}…` : text;
}

export type SanitizeResult = { ok: true; record: AuditRecord; dropped: string[] } | { ok: false; reason: string };

/**
 * Turns a message from the stream into a record fit to store: only the allow-listed
 * fields (AuditRecord), each checked, the message redacted, and the subject in
 * agreement with the record. Anything else is dropped (unknown fields) or refused.
 * A refusal names fields and rules, never a value, since a value may be a secret.
 */
export function sanitizeAuditRecord(subject: string, data: Uint8Array): SanitizeResult {
  let raw: Record<string, unknown>;
  try {
    raw = decodeJsonObject(data);
  } catch {
    return { ok: false, reason: 'payload is not a JSON object' };
  }
  const allowed = new Set<string>(AUDIT_RECORD_FIELDS);
  const dropped = Object.keys(raw).filter((key) => !allowed.has(key));
  const parsed = AuditRecordSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(record)'))];
    return { ok: false, reason: `invalid fields: ${fields.slice(0, 10).join(', ')}` };
  }
  const value = parsed.data;
  const from = parseAuditSubject(subject);
  if (!from || from.type !== value.type || from.tenant !== value.tenant || from.connection !== value.connection) {
    return { ok: false, reason: 'subject does not match the record' };
  }
  const record: AuditRecord = {
    // A record of an older refresher has no recordId; its event id was its message id then.
    recordId: value.recordId ?? value.eventId,
    eventId: value.eventId,
    type: value.type,
    tenant: value.tenant,
    connection: value.connection,
    provider: value.provider,
    version: value.version,
    at: new Date(value.at).toISOString(),
    replica: value.replica,
  };
  if (value.outcome !== undefined) record.outcome = value.outcome;
  if (value.code !== undefined) record.code = value.code;
  if (value.message !== undefined) record.message = redactMessage(value.message);
  return { ok: true, record, dropped };
}
