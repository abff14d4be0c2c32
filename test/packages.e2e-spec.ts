/**
 * The packages as a user gets them: `@tokenkeeper/contracts` and `@tokenkeeper/client` are
 * packed with `npm pack` and installed from the tarballs into a scratch project outside
 * the repository (its own package.json, a plain `npm install`, no path alias, no
 * workspace link), which then gets a verified token from a running refresher and follows
 * a pushed refresh: once in plain JavaScript, once in TypeScript compiled with
 * `moduleResolution: nodenext`, and once through the NestJS module on its subpath.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { adminSubject, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { packLibs } from '../tools/pack-libs.js';
import { REPO_ROOT } from '../tools/compile.js';

const INSTALL_MS = 240_000;

function npm(args: string[], cwd: string): void {
  const result = spawnSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd,
    encoding: 'utf8',
    timeout: INSTALL_MS,
  });
  if (result.status !== 0) throw new Error(`npm ${args.join(' ')}: ${result.stdout}${result.stderr}`);
}

/** A scratch project: nothing but a package.json and the tarballs installed into it. */
function scratchProject(tarballs: string[], extra: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'tk-consumer-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch-consumer', private: true, type: 'module' }));
  npm(['install', ...tarballs, ...extra], dir);
  return dir;
}

/** The consumer program both variants run: first token, then the pushed refresh. */
const CONSUMER_JS = `
import { TokenClient } from '@tokenkeeper/client';
import { tokenGetSubject } from '@tokenkeeper/contracts';
const [servers, signer] = process.argv.slice(2);
const key = { tenant: 'acme', connection: 'github' };
const client = new TokenClient({ servers, tenants: ['acme'], trustedSigners: [signer], inboxPrefix: '_INBOX_scratch' });
await client.start();
const first = await client.getToken(key);
console.log(JSON.stringify({ step: 'first', subject: tokenGetSubject('acme', 'github'), version: first.version }));
while (client.peekAccessToken(key) === first.accessToken) await new Promise((r) => setTimeout(r, 50));
const second = await client.getToken(key);
console.log(JSON.stringify({ step: 'pushed', version: second.version, stats: client.stats }));
await client.close();
`;

const CONSUMER_TS = `
import { TokenClient, TokenClientError, type TokenClientOptions } from '@tokenkeeper/client';
import { tokenGetSubject, type TokenView } from '@tokenkeeper/contracts';
const [servers, signer] = process.argv.slice(2) as [string, string];
const options: TokenClientOptions = { servers, tenants: ['acme'], trustedSigners: [signer], inboxPrefix: '_INBOX_scratch_ts' };
const client = new TokenClient(options);
await client.start();
const key = { tenant: 'acme', connection: 'github' };
const first: TokenView = await client.getToken(key);
console.log(JSON.stringify({ step: 'first', subject: tokenGetSubject('acme', 'github'), version: first.version }));
while (client.peekAccessToken(key) === first.accessToken) await new Promise((r) => setTimeout(r, 50));
const second = await client.getToken(key);
const missing = await client.getToken({ tenant: 'acme', connection: 'nope' }).catch((e: unknown) => (e instanceof TokenClientError ? e.code : 'other'));
console.log(JSON.stringify({ step: 'pushed', version: second.version, stats: client.stats, missing }));
await client.close();
`;

const CONSUMER_NEST = `
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { TokenClientModule } from '@tokenkeeper/client/nest';
const [servers, signer] = process.argv.slice(2) as [string, string];
@Module({ imports: [TokenClientModule.forRoot({ servers, tenants: ['acme'], trustedSigners: [signer], inboxPrefix: '_INBOX_scratch_nest' })] })
export class AppModule {}
`;

describe('the packed libraries, installed outside the repository', () => {
  let tarballs: string[];
  let plain: string;
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let operator: NatsConnection;
  const scratch: string[] = [];

  beforeAll(async () => {
    tarballs = packLibs(mkdtempSync(join(tmpdir(), 'tk-packs-')));
    plain = scratchProject(tarballs);
    scratch.push(plain);
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_packages'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    operator = await connect({ servers: nats.url });
    const registered = await operator.request(
      adminSubject('register', 'acme', 'github'),
      encodeJson({ provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 }),
      { timeout: 10_000 },
    );
    expect(registered.json()).toMatchObject({ ok: true });
  }, INSTALL_MS + 60_000);

  afterAll(async () => {
    await operator?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });

  /** A child Node process, awaited without blocking: the refresher runs in this process. */
  function runNode(cwd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, args, { cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    return new Promise((resolve) => child.once('exit', (status) => resolve({ status, stdout, stderr })));
  }

  /** Runs a consumer file of the scratch project; refreshes the credential once it has its first token. */
  async function runConsumer(dir: string, file: string): Promise<Array<Record<string, any>>> {
    const child = spawn(process.execPath, [file, nats.url, refresher.signerPublicKey], { cwd: dir });
    const lines: Array<Record<string, any>> = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await waitFor(() => lines.length >= 1 || child.exitCode !== null, {
      timeoutMs: 20_000,
      message: 'the first token',
    });
    expect(lines[0], stderr).toMatchObject({ step: 'first', subject: 'token.get.acme.github' });
    const refreshed = await operator.request(adminSubject('refresh', 'acme', 'github'), encodeJson({}), {
      timeout: 10_000,
    });
    expect(refreshed.json()).toMatchObject({ ok: true });
    expect(await exited, stderr).toBe(0);
    return lines;
  }

  it('installs with its declared dependencies only: no framework, no test harness, the project version', () => {
    const installed = (name: string) =>
      JSON.parse(readFileSync(join(plain, 'node_modules', name, 'package.json'), 'utf8'));
    const project = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(installed('@tokenkeeper/client').version).toBe(project.version);
    expect(installed('@tokenkeeper/contracts').version).toBe(project.version);
    expect(existsSync(join(plain, 'node_modules/@nestjs'))).toBe(false);
    for (const absent of ['vitest', 'typeorm', 'pg', '@tokenkeeper/testing', 'oidc-provider'])
      expect(existsSync(join(plain, 'node_modules', absent)), absent).toBe(false);
    const listing = spawnSync('tar', ['tzf', tarballs[1]!], { encoding: 'utf8' }).stdout;
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing).toContain('package/dist/nest.js');
    expect(listing).not.toMatch(/\.spec\.|fixture|\.ts\b(?<!\.d\.ts)/);
  });

  it('plain JavaScript gets a verified token and follows a pushed refresh', async () => {
    writeFileSync(join(plain, 'consumer.mjs'), CONSUMER_JS);
    const version = (await operator.request(adminSubject('describe', 'acme', 'github'), encodeJson({}))).json<any>()
      .credential.version;
    const lines = await runConsumer(plain, 'consumer.mjs');
    expect(lines[0]).toMatchObject({ version });
    expect(lines[1]).toMatchObject({
      step: 'pushed',
      version: version + 1,
      stats: { rejectedEvents: 0, rejectedReplies: 0 },
    });
  }, 60_000);

  it('TypeScript with moduleResolution nodenext compiles against the declarations and runs', async () => {
    writeFileSync(join(plain, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(
      join(plain, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          outDir: 'out',
          types: ['node'],
          typeRoots: [join(REPO_ROOT, 'node_modules/@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'],
      { cwd: plain, encoding: 'utf8' },
    );
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    const version = (await operator.request(adminSubject('describe', 'acme', 'github'), encodeJson({}))).json<any>()
      .credential.version;
    const lines = await runConsumer(plain, 'out/consumer.js');
    expect(lines[1]).toMatchObject({ step: 'pushed', version: version + 1, missing: 'not_found' });
  }, 90_000);

  it(
    'the Nest module lives on its own subpath, with @nestjs/common as a peer',
    async () => {
      const withoutNest = spawnSync(
        process.execPath,
        ['--input-type=module', '-e', "await import('@tokenkeeper/client/nest')"],
        { cwd: plain, encoding: 'utf8' },
      );
      expect(withoutNest.status).not.toBe(0);
      expect(withoutNest.stderr).toMatch(/Cannot find package '@nestjs\/common'/);

      const nestProject = scratchProject(tarballs, [
        '@nestjs/common@12',
        '@nestjs/core@12',
        'reflect-metadata',
        'rxjs',
      ]);
      scratch.push(nestProject);
      writeFileSync(join(nestProject, 'app.ts'), CONSUMER_NEST);
      // The decorators need compiling: the repository's tsc, nothing of its config.
      const tsc = spawnSync(
        process.execPath,
        [
          join(REPO_ROOT, 'node_modules/typescript/bin/tsc'),
          '--target',
          'ES2022',
          '--module',
          'nodenext',
          '--moduleResolution',
          'nodenext',
          '--experimentalDecorators',
          '--emitDecoratorMetadata',
          '--skipLibCheck',
          '--types',
          'node',
          '--typeRoots',
          join(REPO_ROOT, 'node_modules/@types'),
          '--outDir',
          'out',
          'app.ts',
        ],
        { cwd: nestProject, encoding: 'utf8' },
      );
      expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
      writeFileSync(
        join(nestProject, 'main.mjs'),
        `import { NestFactory } from '@nestjs/core';
import { TokenClient } from '@tokenkeeper/client';
const { AppModule } = await import('./out/app.js');
const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const token = await app.get(TokenClient).getToken({ tenant: 'acme', connection: 'github' });
console.log(JSON.stringify({ version: token.version, tokenType: token.tokenType }));
await app.close();
`,
      );
      const run = await runNode(nestProject, ['main.mjs', nats.url, refresher.signerPublicKey]);
      expect(run.status, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout.trim())).toMatchObject({
        tokenType: expect.any(String),
        version: expect.any(Number),
      });
    },
    INSTALL_MS + 60_000,
  );
});
