import { isIPv4, isIPv6 } from "node:net";

/** A route destination as EC2 takes it: a network address with no host bits set. */
export interface Cidr {
  readonly family: 4 | 6;
  /** The canonical text form, e.g. `0.0.0.0/0`, `::/0`, `2600:1f18::/56`. */
  readonly text: string;
  readonly network: bigint;
  readonly prefix: number;
}

function ipv4ToBigInt(ip: string): bigint {
  return ip.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6ToBigInt(ip: string): bigint {
  const [head = "", tail] = ip.split("::");
  const expand = (part: string): string[] => (part === "" ? [] : part.split(":"));
  let groups = expand(head);
  if (tail !== undefined) {
    const tailGroups = expand(tail);
    groups = [...groups, ...Array(8 - groups.length - tailGroups.length).fill("0"), ...tailGroups];
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToIpv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join(".");
}

function bigIntToIpv6(n: bigint): string {
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((s) => ((n >> s) & 0xffffn).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 (and EC2) print them.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(":");
  const left = groups.slice(0, bestStart).join(":");
  const right = groups.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}

/** Parses a CIDR block; returns an error sentence instead of throwing. */
export function parseCidr(text: string): Cidr | { error: string } {
  const slash = text.indexOf("/");
  if (slash < 0) return { error: `"${text}" is not a CIDR block (expected address/prefix, e.g. 0.0.0.0/0)` };
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return { error: `"${text}" has an invalid prefix length "${prefixText}"` };
  const prefix = Number(prefixText);
  let family: 4 | 6;
  let value: bigint;
  if (isIPv4(address)) {
    family = 4;
    value = ipv4ToBigInt(address);
  } else if (isIPv6(address) && !address.includes(".") && !address.includes("%")) {
    family = 6;
    value = ipv6ToBigInt(address.toLowerCase());
  } else {
    return { error: `"${text}" is not a CIDR block: "${address}" is not an IPv4 or IPv6 address` };
  }
  const bits = family === 4 ? 32 : 128;
  if (prefix > bits) return { error: `"${text}" has prefix /${prefix}, longer than /${bits} for IPv${family}` };
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    const network = value & ~hostMask;
    const fixed = `${family === 4 ? bigIntToIpv4(network) : bigIntToIpv6(network)}/${prefix}`;
    return { error: `"${text}" has host bits set; the network address is ${fixed}` };
  }
  const canonical = `${family === 4 ? bigIntToIpv4(value) : bigIntToIpv6(value)}/${prefix}`;
  return { family, text: canonical, network: value, prefix };
}

/** True when one block contains the other (same family only). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const bits = BigInt(a.family === 4 ? 32 : 128);
  const shorter = BigInt(Math.min(a.prefix, b.prefix));
  const mask = ((1n << shorter) - 1n) << (bits - shorter);
  return (a.network & mask) === (b.network & mask);
}
