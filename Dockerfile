# syntax=docker/dockerfile:1
# One image for every Tokenkeeper app: the refresher (default command), the audit app
# (`npm run start:audit`) and the sandbox provider (`npm run sandbox`).
#
# No build step: the apps run from TypeScript source through @swc-node/register, exactly
# as `npm run start:*` does. `tsc` alone cannot produce something runnable here: it
# leaves the `@tokenkeeper/*` path aliases unresolved in the emitted ESM, and Node's
# resolver does not read tsconfig paths. SWC transpiles the few hundred source files at
# start in well under a second. The price is that the transpiler (a devDependency) ships
# in the image, so the dependency stage installs everything.

ARG NODE_IMAGE=node:22-slim

# --- dependencies: npm ci from the lockfile, in its own stage so that source changes do not reinstall
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund \
 && npm cache clean --force

# --- runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HTTP_PORT=8080 \
    TOKEN_ENCRYPTION_KEY_FILE=/var/lib/tokenkeeper/encryption.key \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
# Code and dependencies belong to root and are read-only for the app user.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY config ./config
COPY libs ./libs
COPY apps ./apps
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
# The only writable place: a generated development key (when TOKEN_ENCRYPTION_KEYS is unset
# outside production); mount a volume here to keep it.
RUN mkdir -p /var/lib/tokenkeeper && chown node:node /var/lib/tokenkeeper
# `node` (uid 1000) is the unprivileged user of the official Node.js images.
USER node
EXPOSE 8080
# Liveness only (/healthz). Readiness (/readyz: PostgreSQL, NATS, migrations) is for orchestrators' readiness probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "deploy/healthcheck.mjs", "http", "/healthz"]
# node is PID 1's child under `docker run --init` / compose `init: true`; either way it handles
# SIGTERM itself (graceful shutdown, SHUTDOWN_GRACE_MS): give it a stop timeout longer than that.
STOPSIGNAL SIGTERM
CMD ["node", "--import", "@swc-node/register/esm-register", "apps/refresher/src/main.ts"]
