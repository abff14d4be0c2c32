import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseEnv, postgresUrl, serviceConfigFrom, serviceEnvShape } from './env-config.js';

const schema = z.object({ ...serviceEnvShape, DB: postgresUrl('postgres://localhost/x') });
const fail = (message: string) => new Error(message);

describe('the shared service settings', () => {
  it('default to development, info and a replica named after host and pid', () => {
    const e = parseEnv(schema, { REPLICA_ID: '  ' }, fail);
    expect(serviceConfigFrom(e)).toEqual({
      env: 'development',
      logLevel: 'info',
      replicaId: `${hostname()}-${process.pid}`,
    });
    expect(e.DB).toBe('postgres://localhost/x');
  });

  it('take what is set', () => {
    const e = parseEnv(
      schema,
      { NODE_ENV: 'production', LOG_LEVEL: 'warn', REPLICA_ID: 'r-1', DB: 'postgresql://db/y' },
      fail,
    );
    expect(serviceConfigFrom(e)).toEqual({ env: 'production', logLevel: 'warn', replicaId: 'r-1' });
    expect(e.DB).toBe('postgresql://db/y');
  });

  it('name every bad variable at once, never its value', () => {
    const attempt = () => parseEnv(schema, { NODE_ENV: 'prod', LOG_LEVEL: 'loud', DB: 'mysql://secret-host/db' }, fail);
    expect(attempt).toThrow(/NODE_ENV[\s\S]*LOG_LEVEL[\s\S]*DB: must be a postgres:\/\/ URL/);
    expect(attempt).not.toThrow(/secret-host/);
  });
});
