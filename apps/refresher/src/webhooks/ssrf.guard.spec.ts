import { describe, expect, it } from 'vitest';
import { parseCidr, SsrfGuard } from './ssrf.guard.js';

describe('SsrfGuard', () => {
  const guard = new SsrfGuard([]);

  it('refuses private, loopback, link-local and mapped forms of them', () => {
    for (const address of [
      '127.0.0.1',
      '127.255.0.9',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
      '::ffff:169.254.169.254',
      '::ffff:7f00:1',
      'not-an-ip',
    ]) {
      expect(guard.permits(address), address).toBe(false);
    }
  });

  it('permits public addresses', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) {
      expect(guard.permits(address), address).toBe(true);
    }
  });

  it('permits what WEBHOOK_ALLOWED_NETWORKS lists, and only that', () => {
    const loopback = new SsrfGuard(['127.0.0.0/8']);
    expect(loopback.permits('127.0.0.1')).toBe(true);
    expect(loopback.permits('::ffff:127.0.0.1')).toBe(true);
    expect(loopback.permits('10.0.0.1')).toBe(false);
    expect(loopback.permits('::1')).toBe(false);
    expect(new SsrfGuard(['10.1.0.0/16']).permits('10.1.9.9')).toBe(true);
    expect(new SsrfGuard(['10.1.0.0/16']).permits('10.2.0.1')).toBe(false);
  });

  it('parses CIDRs strictly', () => {
    expect(parseCidr('127.0.0.0/8')).toEqual(['127.0.0.0', 8, 'ipv4']);
    expect(parseCidr('fd00::/8')).toEqual(['fd00::', 8, 'ipv6']);
    for (const bad of ['127.0.0.1', '127.0.0.0/33', 'example.com/8', '10.0.0.0/8/1', '::/129', '10.0.0.0/x']) {
      expect(() => parseCidr(bad), bad).toThrow();
    }
  });
});
