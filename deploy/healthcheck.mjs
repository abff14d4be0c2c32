// Container health probe for the Tokenkeeper image: plain JavaScript (no transpiler, no
// shell tools: the slim image has no curl or wget), run from /app by Docker.
//
//   node deploy/healthcheck.mjs http <path> [expected-status] [port]   GET http://127.0.0.1:<port or $HTTP_PORT><path>
//   node deploy/healthcheck.mjs nats <subject>                  any reply to a request on <subject>
//     (as NATS_USER/NATS_PASS/NATS_INBOX_PREFIX, or HEALTHCHECK_NATS_USER/_PASS/_INBOX_PREFIX when set;
//     a password may come from a file instead: NATS_PASS_FILE, HEALTHCHECK_NATS_PASS_FILE)
//
// Exits 0 when healthy, 1 otherwise, within about 3 seconds.
const TIMEOUT_MS = 3_000;
const [kind, target, expected, portArg] = process.argv.slice(2);

async function http(path, status) {
  const port = portArg || process.env.HTTP_PORT || '8080';
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  await response.arrayBuffer();
  return status ? response.status === Number(status) : response.ok;
}

/** A secret from the file a `<NAME>_FILE` variable names (a mounted container secret). */
async function fromFile(path) {
  if (!path) return undefined;
  const { readFileSync } = await import('node:fs');
  return readFileSync(path, 'utf8').trim() || undefined;
}

// For apps without HTTP (the audit app): it is healthy when a replica answers its subject;
// any reply counts, an error reply included. Supports user/password and token auth, and an
// inbox prefix (a least-privilege user may only receive replies under its own). The
// HEALTHCHECK_NATS_* variables, when set, take the place of the service's own NATS_*: a
// service user may not be allowed to send the request its health is judged by.
async function nats(subject) {
  const { connect } = await import('@nats-io/transport-node');
  const env = process.env;
  const probeUser = env.HEALTHCHECK_NATS_USER || undefined;
  const nc = await connect({
    servers: (env.NATS_URL || 'nats://127.0.0.1:4222').split(','),
    user: probeUser ?? (env.NATS_USER || undefined),
    pass:
      (probeUser ? env.HEALTHCHECK_NATS_PASS : env.NATS_PASS) ||
      (await fromFile(probeUser ? env.HEALTHCHECK_NATS_PASS_FILE : env.NATS_PASS_FILE)),
    token: probeUser ? undefined : env.NATS_TOKEN || undefined,
    inboxPrefix: (probeUser ? env.HEALTHCHECK_NATS_INBOX_PREFIX : env.NATS_INBOX_PREFIX) || undefined,
    timeout: TIMEOUT_MS,
  });
  try {
    await nc.request(subject, '{}', { timeout: TIMEOUT_MS });
    return true;
  } finally {
    await nc.close();
  }
}

try {
  const healthy =
    kind === 'http' ? await http(target || '/healthz', expected) : kind === 'nats' ? await nats(target) : false;
  process.exit(healthy ? 0 : 1);
} catch {
  process.exit(1);
}
