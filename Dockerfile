# syntax=docker/dockerfile:1
# One image for every Tokenkeeper app: the refresher (default command), the audit app
# (`node dist/apps/audit/src/main.js`) and the sandbox provider (`node dist/apps/sandbox-provider/src/main.js`).
#
# The apps are compiled (`npm run build`: `nest build` with the Nest CLI's SWC builder, see
# nest-cli.json and tools/build.ts) in a build stage, and the
# runtime stage runs plain JavaScript with production dependencies only: no TypeScript
# loader and no compiler in the process (that would cost about 140 MiB of RSS, measured in
# docs/benchmarks.md), and no devDependencies in the image.

# Node 24, the newest LTS line CI runs the whole suite on (.ci/run: 22 and 24, the unit tier on 20 too); supported
# until April 2028, where 22 ends in April 2027. Debian pinned too (trixie, the current stable):
# a plain -slim tag moves to the next Debian release under the same name.
ARG NODE_IMAGE=node:24-trixie-slim

# --- build: all dependencies, compile to dist/
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json swcrc.build.json ./
COPY tools ./tools
COPY libs ./libs
COPY apps ./apps
RUN npm run build

# --- production dependencies only, in their own stage so that source changes do not reinstall
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
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
COPY package.json package-lock.json ./
# The build output only: tsconfig.build.json leaves specs, fixtures, libs/testing and the demo
# out of it (test/image-contents.e2e-spec.ts checks the output and these COPY lines).
COPY --from=build /app/dist ./dist
COPY config ./config
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
CMD ["node", "dist/apps/refresher/src/main.js"]
