import { ipKeyGenerator } from 'express-rate-limit';

/**
 * The key every per-address limit and lock counts a client under: an IPv4 address as it is (an IPv4-mapped IPv6
 * address as its IPv4 form), an IPv6 address by its /64. One IPv6 host is usually given a whole /64 and can use any
 * address in it, so counting single IPv6 addresses would give it 2^64 fresh starts.
 */
export function addressKey(ip: string): string {
  return ipKeyGenerator(ip, 64);
}
