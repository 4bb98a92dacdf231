/**
 * Trusted proxies (`security.trustedProxies`): which socket peers may tell the
 * gateway the client's address in `X-Forwarded-For`, and how that address is
 * found. Only a trusted peer's header counts, and in it only the hops that a
 * trusted proxy added: the client is the rightmost address not in the list,
 * so a client cannot pick its own address by sending the header itself.
 *
 * @module
 */

/** An address range: 16 bytes (IPv4 as IPv4-mapped IPv6) and a prefix length in bits. */
interface Range {
  bytes: Uint8Array;
  bits: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-f]{1,4}$/i;

/** An IPv4 address as its 4 bytes, or null. */
function parseIpv4(text: string): number[] | null {
  const match = IPV4.exec(text);
  if (match === null) return null;
  const bytes = match.slice(1).map(Number);
  return bytes.every((byte, i) => byte <= 255 && String(byte) === match[i + 1]) ? bytes : null;
}

/** An IPv6 address (zone id removed, embedded IPv4 allowed) as its 16 bytes, or null. */
function parseIpv6(text: string): number[] | null {
  const address = text.replace(/%.*$/, "");
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const parts = half.split(":");
    const last = parseIpv4(parts[parts.length - 1]);
    const hex = last === null ? parts : parts.slice(0, -1);
    if (!hex.every((part) => HEX_GROUP.test(part))) return null;
    const values = hex.flatMap((part) => {
      const value = parseInt(part, 16);
      return [value >> 8, value & 255];
    });
    return last === null ? values : [...values, ...last];
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  const missing = 16 - head.length - tail.length;
  if (halves.length === 2 ? missing < 2 : missing !== 0) return null;
  return [...head, ...new Array(missing).fill(0), ...tail];
}

/** An IPv4 or IPv6 address as 16 bytes (IPv4 mapped into IPv6), or null if it is neither. */
function parseAddress(text: string): Uint8Array | null {
  const v4 = parseIpv4(text);
  if (v4 !== null) return new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...v4]);
  const v6 = text.includes(":") ? parseIpv6(text) : null;
  return v6 === null ? null : new Uint8Array(v6);
}

/** `address` or `address/bits` as a range, or null if it is not one. */
function parseRange(text: string): Range | null {
  const [address, prefix, extra] = text.trim().split("/");
  if (extra !== undefined) return null;
  const bytes = parseAddress(address);
  if (bytes === null) return null;
  const v4 = parseIpv4(address) !== null;
  const max = v4 ? 32 : 128;
  if (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) return null;
  const bits = prefix === undefined ? max : Number(prefix);
  if (bits > max) return null;
  return { bytes, bits: v4 ? bits + 96 : bits };
}

function contains(range: Range, address: Uint8Array): boolean {
  const whole = range.bits >> 3;
  for (let i = 0; i < whole; i++) if (range.bytes[i] !== address[i]) return false;
  const rest = range.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (range.bytes[whole] & mask) === (address[whole] & mask);
}

/**
 * Whether `text` is an IPv4 or IPv6 address or CIDR range (`10.0.0.0/8`,
 * `fd00::/8`), the form `security.trustedProxies` takes.
 *
 * @example
 * ```ts
 * import { isAddressRange } from "./trusted_proxies.ts";
 * console.assert(isAddressRange("10.0.0.0/8") && !isAddressRange("10.0.0.0/33"));
 * ```
 */
export function isAddressRange(text: string): boolean {
  return parseRange(text) !== null;
}

/**
 * The proxies whose `X-Forwarded-For` the gateway believes, from addresses
 * and CIDR ranges. An empty list trusts no one: the client is the socket peer.
 *
 * @example
 * ```ts
 * import { TrustedProxies } from "./trusted_proxies.ts";
 * const proxies = new TrustedProxies(["10.0.0.0/8"]);
 * console.assert(proxies.clientAddress("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9") === "1.2.3.4");
 * console.assert(proxies.clientAddress("1.2.3.4", "6.6.6.6") === "1.2.3.4");
 * ```
 */
export class TrustedProxies {
  readonly #ranges: Range[];

  /** `ranges`: addresses and CIDR ranges; throws a TypeError naming one that is neither. */
  constructor(ranges: readonly string[]) {
    this.#ranges = ranges.map((text) => {
      const range = parseRange(text);
      if (range === null) throw new TypeError(`not an IP address or CIDR range: "${text}"`);
      return range;
    });
  }

  /** Whether `address` (a socket peer or a forwarded hop) is a trusted proxy. */
  trusts(address: string): boolean {
    if (this.#ranges.length === 0) return false;
    const bytes = parseAddress(address);
    return bytes !== null && this.#ranges.some((range) => contains(range, bytes));
  }

  /**
   * The client's address for a request from socket peer `peer` carrying
   * `forwardedFor` (X-Forwarded-For, null if absent): the peer unless it is
   * trusted; else, reading the header from the right, the first address that
   * is not a trusted proxy. A hop that is not an address ends the walk at the
   * last trusted one, as does a header of trusted proxies only.
   */
  clientAddress(peer: string, forwardedFor: string | null): string {
    if (forwardedFor === null || !this.trusts(peer)) return peer;
    const hops = forwardedFor.split(",");
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i].trim();
      if (parseAddress(hop) === null) return client;
      client = hop;
      if (!this.trusts(hop)) return hop;
    }
    return client;
  }
}
