import { BlockList, isIP } from 'node:net';

/**
 * Which addresses a webhook may connect to. Private, loopback, link-local and other
 * non-public ranges are refused unless an operator lists them (WEBHOOK_ALLOWED_NETWORKS): a
 * tenant admin chooses the URL, and must not reach the refresher's own neighbourhood with it.
 * The check runs on the resolved address that is connected to (see the delivery client).
 */
const DENIED_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
const DENIED_V6 = ['::/127', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8', '64:ff9b::/96', '2001:db8::/32'];

export class CidrError extends Error {}

/** `a.b.c.d/n` or `x:y::/n` → [address, prefix, family]; throws CidrError. */
export function parseCidr(cidr: string): [string, number, 'ipv4' | 'ipv6'] {
  const [address, prefixText, extra] = cidr.trim().split('/');
  const family = isIP(address ?? '');
  const max = family === 4 ? 32 : 128;
  const prefix = Number(prefixText);
  if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(prefixText ?? '') || prefix > max) {
    throw new CidrError(`"${cidr}" is not a CIDR (e.g. 127.0.0.0/8 or fd00::/8)`);
  }
  return [address, prefix, family === 4 ? 'ipv4' : 'ipv6'];
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) list.addSubnet(...parseCidr(cidr));
  return list;
}

/** `::ffff:10.0.0.1` is 10.0.0.1 on the wire: judge it as the IPv4 address. */
function normalise(address: string): [string, 'ipv4' | 'ipv6'] | null {
  const family = isIP(address);
  if (family === 4) return [address, 'ipv4'];
  if (family !== 6) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? [mapped[1], 'ipv4'] : [address.toLowerCase(), 'ipv6'];
}

export class SsrfGuard {
  private readonly denied = blockList([...DENIED_V4, ...DENIED_V6]);
  private readonly allowed: BlockList;

  constructor(allowedNetworks: readonly string[]) {
    this.allowed = blockList(allowedNetworks);
  }

  /** True when a connection to this IP address may be made. */
  permits(address: string): boolean {
    const ip = normalise(address);
    if (!ip) return false;
    if (this.allowed.check(...ip)) return true;
    if (ip[1] === 'ipv6') {
      // IPv4-compatible and mapped forms written differently (::a.b.c.d, ::ffff:0:0/96).
      if (this.denied.check(...ip) || /^::(ffff:)?[0-9a-f.:]*$/.test(ip[0])) return false;
      return true;
    }
    return !this.denied.check(...ip);
  }
}
