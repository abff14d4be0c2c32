import { describe, expect, it } from 'vitest';
import { AuditConfigError, loadAuditConfig } from './audit-config.js';

describe('audit config: the monitoring port', () => {
  it('defaults to loopback, port 8081', () => {
    expect(loadAuditConfig({}).monitoring).toEqual({ host: '127.0.0.1', port: 8081 });
  });

  it('takes an IP address and a port, 0 meaning a free one', () => {
    const env = { AUDIT_MONITORING_HOST: '0.0.0.0', AUDIT_MONITORING_PORT: '0' };
    expect(loadAuditConfig(env).monitoring).toEqual({ host: '0.0.0.0', port: 0 });
    expect(loadAuditConfig({ AUDIT_MONITORING_HOST: '::1' }).monitoring.host).toBe('::1');
  });

  it('refuses a host name or a port out of range, naming each variable', () => {
    const load = () => loadAuditConfig({ AUDIT_MONITORING_HOST: 'localhost', AUDIT_MONITORING_PORT: '70000' });
    expect(load).toThrow(AuditConfigError);
    expect(load).toThrow(/AUDIT_MONITORING_HOST: must be an IP address/);
    expect(load).toThrow(/AUDIT_MONITORING_PORT/);
  });
});
