// Setup file of the unit tier (vitest.config.ts): a `*.spec.ts` runs without PostgreSQL, NATS,
// a browser or a child process, so that the tier stays quick and runs anywhere. This makes the
// rule hold rather than hope: starting a process (nats-server, chromium, an app's main.ts) or
// opening a connection to PostgreSQL's or NATS's port fails the test with the way out.
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';

const RENAME = 'rename the file to *.e2e-spec.ts (the e2e tier), or test the logic without it';

const SPAWNING = ['spawn', 'spawnSync', 'fork', 'exec', 'execSync', 'execFile', 'execFileSync'] as const;
for (const name of SPAWNING) {
  Object.defineProperty(childProcess, name, {
    configurable: true,
    writable: true,
    value: () => {
      throw new Error(`unit tier: child_process.${name} is not available here; ${RENAME}`);
    },
  });
}

const SERVER_PORTS = new Map([
  [5432, 'PostgreSQL'],
  [4222, 'NATS'],
]);
type Connect = (this: net.Socket, ...args: unknown[]) => net.Socket;
// Called with the socket as `this` below.
// eslint-disable-next-line @typescript-eslint/unbound-method
const connect = net.Socket.prototype.connect as Connect;
net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
  const first: unknown = Array.isArray(args[0]) ? args[0][0] : args[0];
  const port = Number(typeof first === 'object' && first !== null ? (first as { port?: unknown }).port : first);
  const server = SERVER_PORTS.get(port);
  if (server) throw new Error(`unit tier: no connection to ${server} (port ${port}); ${RENAME}`);
  return connect.apply(this, args);
};

// Named imports of a builtin (`import { spawn } from 'node:child_process'`) are bound to the
// module's exports at load; this carries the replacements over to them.
syncBuiltinESMExports();
