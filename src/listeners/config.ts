/**
 * The `listeners` section: HTTP(S), raw TCP, UDP and Unix-socket listeners
 * by name. It defines the names `listener`, `http-listener` (those that
 * serve routes), `address` (what each binds) and `plugin-use` (plugins a
 * listener runs on its routes); it checks that a TCP proxy names a known
 * upstream and that no two listeners bind one address; and it makes socket
 * and TLS paths absolute, reading the TLS files into the config hash so that
 * a renewed certificate is a change.
 *
 * @module
 */

import { resolve } from "node:path";
import { z } from "zod";
import { TopicTemplate } from "../bus/topic_template.ts";
import { ConnectionLimitsConfig } from "../connections/config.ts";
import { Name, Port } from "../config/fields.ts";
import type { ConfigSection } from "../config/section.ts";
import { Duration, Size } from "../config/units.ts";
import { PluginName } from "../plugins/config.ts";

/** TLS certificate and key files (PEM), relative to the config file. */
export const TlsConfig = z.strictObject({
  cert: z.string().describe("PEM certificate chain file"),
  key: z.string().describe("PEM private key file"),
});

/** The HTTP guard's limits and timeouts. */
export const HttpGuardConfig = z.strictObject({
  headerTimeout: Duration.default(10_000).describe(
    "a request head must be complete this long after its first byte",
  ),
  bodyTimeout: Duration.default(30_000).describe(
    "most time between two parts of a request body",
  ),
  idleTimeout: Duration.default(60_000).describe(
    "close a connection with no request in progress after this long",
  ),
  handshakeTimeout: Duration.default(10_000).describe(
    "a TLS handshake must end this long after the connection is accepted",
  ),
  maxConnections: z.number().int().positive().default(10_000).describe(
    "most open connections on this listener",
  ),
  maxPerIp: z.number().int().positive().default(256).describe(
    "most open connections from one address on this listener",
  ),
});

/** The HTTP guard's settings, validated. */
export type HttpGuardConfig = z.output<typeof HttpGuardConfig>;

/** An HTTP or HTTPS listener. */
export const HttpListenerConfig = z.strictObject({
  type: z.literal("http"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  tls: TlsConfig.optional(),
  drainTimeout: Duration.default(10_000).describe(
    "how long in-flight requests may take to finish when the listener stops; then they are cut",
  ),
  plugins: z.array(PluginName).optional().describe("plugins whose hooks run on every route here"),
  guard: z.union([z.boolean(), HttpGuardConfig]).optional().describe(
    "accept connections in the gateway (limits and timeouts) and relay them to the HTTP server: " +
      "true, false, or the settings (which turn it on). Default: on, except for a plain-HTTP " +
      "listener on a loopback address with no WebSocket routes; always on with tls",
  ),
}).refine((l) => l.guard !== false || l.tls === undefined, {
  message: "an HTTPS listener runs the guard (it terminates TLS): remove guard: false or tls",
  path: ["guard"],
});

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|\[::1\]|localhost)$/;

/**
 * The guard settings of an HTTP listener, or undefined when it runs without
 * one: as configured, else a guard with the default settings for HTTPS, for
 * addresses other than loopback ones, and for a listener with routes that
 * upgrade to WebSocket (`upgrades`): only the guard can hold a fragmented
 * message to its limit while it arrives, and a local reverse proxy passes
 * fragments through.
 *
 * @example
 * ```ts
 * import { guardOf, HttpListenerConfig } from "./config.ts";
 * guardOf(HttpListenerConfig.parse({ type: "http", port: 8080 }), false); // undefined: 127.0.0.1
 * guardOf(HttpListenerConfig.parse({ type: "http", port: 8080 }), true)?.maxPerIp; // 256
 * guardOf(HttpListenerConfig.parse({ type: "http", host: "0.0.0.0", port: 8080 }), false)?.maxPerIp; // 256
 * ```
 */
export function guardOf(
  listener: HttpListenerConfig,
  upgrades: boolean,
): HttpGuardConfig | undefined {
  const { guard } = listener;
  if (typeof guard === "object") return guard;
  const on = guard ?? (listener.tls !== undefined || upgrades || !LOOPBACK.test(listener.host));
  return on ? HttpGuardConfig.parse({}) : undefined;
}

const ByteString = z.string().min(1).describe(
  "text, or hex bytes written 'hex:0d0a'",
);

/** How a byte stream is cut into frames (and how replies are framed). */
export const FramingConfig = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("line"),
    delimiter: ByteString.default("\n").describe("a trailing \\r before \\n is removed too"),
    maxLength: Size.default(65_536),
  }),
  z.strictObject({
    type: z.literal("length"),
    bytes: z.union([z.literal(1), z.literal(2), z.literal(4)]).default(2),
    endian: z.enum(["big", "little"]).default("big"),
    headerOffset: z.number().int().min(0).max(64).default(0).describe(
      "bytes of header before the length field, kept in the frame",
    ),
    lengthIncludesHeader: z.boolean().default(false).describe(
      "the length counts the header and the length field too",
    ),
    maxLength: Size.default(1_048_576),
  }),
  z.strictObject({
    type: z.literal("delimiter"),
    delimiter: ByteString,
    maxLength: Size.default(65_536),
  }),
  z.strictObject({ type: z.literal("fixed"), size: z.number().int().positive().max(16_777_216) }),
  z.strictObject({ type: z.literal("raw"), maxLength: Size.default(65_536) }),
]);

const LISTENER_TOPIC = TopicTemplate.describe(
  "placeholders: {listener}, {connectionId}, {deviceId}, {remoteAddress}",
);

/** A raw TCP listener: framed messages to the bus, or an L4 proxy to an upstream. */
export const TcpListenerConfig = z.strictObject({
  type: z.literal("tcp"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  mode: z.enum(["bus", "proxy"]).default("bus"),
  framing: FramingConfig.prefault({ type: "line" }),
  topic: LISTENER_TOPIC.default("tcp/{listener}/{connectionId}"),
  handshake: z.enum(["none", "device-id"]).default("none").describe(
    "device-id: the first frame is the device id, bound to the connection and not published",
  ),
  upstream: Name.optional().describe("proxy mode: the upstream whose targets take the bytes"),
  limits: ConnectionLimitsConfig.prefault({}),
}).refine((l) => l.mode !== "proxy" || l.upstream !== undefined, {
  message: "a proxy-mode TCP listener names an upstream",
  path: ["upstream"],
});

/** A UDP listener: each datagram to the bus, replies to its sender. */
export const UdpListenerConfig = z.strictObject({
  type: z.literal("udp"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  topic: LISTENER_TOPIC.default("udp/{listener}/{remoteAddress}"),
  maxDatagramSize: Size.default(65_507),
  limits: ConnectionLimitsConfig.prefault({}),
});

/** A Unix-socket listener: HTTP (routes as on any HTTP listener) or framed messages. */
export const UnixListenerConfig = z.strictObject({
  type: z.literal("unix"),
  path: z.string().min(1).describe(
    "socket file, relative to the config file; a stale one is removed",
  ),
  mode: z.string().regex(/^0?[0-7]{3}$/).default("660").describe("file mode of the socket, octal"),
  protocol: z.enum(["http", "framed"]).default("http"),
  framing: FramingConfig.prefault({ type: "line" }),
  topic: LISTENER_TOPIC.default("unix/{listener}/{connectionId}"),
  handshake: z.enum(["none", "device-id"]).default("none"),
  drainTimeout: Duration.default(10_000),
  limits: ConnectionLimitsConfig.prefault({ maxPerIp: 10_000 }),
});

/** Any listener. */
export const ListenerConfig = z.discriminatedUnion("type", [
  HttpListenerConfig,
  TcpListenerConfig,
  UdpListenerConfig,
  UnixListenerConfig,
]);

/** The `listeners` section: listeners by name. */
export const ListenersConfig = z.record(Name, ListenerConfig);

/** Any listener's validated config. */
export type ListenerConfig = z.output<typeof ListenerConfig>;
/** One HTTP listener's validated config. */
export type HttpListenerConfig = z.output<typeof HttpListenerConfig>;
/** One TCP listener's validated config. */
export type TcpListenerConfig = z.output<typeof TcpListenerConfig>;
/** One UDP listener's validated config. */
export type UdpListenerConfig = z.output<typeof UdpListenerConfig>;
/** One Unix-socket listener's validated config. */
export type UnixListenerConfig = z.output<typeof UnixListenerConfig>;
/** Framing settings, validated. */
export type FramingConfig = z.output<typeof FramingConfig>;
/** The validated `listeners` section. */
export type ListenersConfig = z.output<typeof ListenersConfig>;

/**
 * What a listener binds: `tcp:host:port`, `udp:host:port` or `unix:path`.
 *
 * @example
 * ```ts
 * import { listenerAddress } from "./config.ts";
 * listenerAddress({ type: "udp", host: "127.0.0.1", port: 5683 }); // "udp:127.0.0.1:5683"
 * ```
 */
export function listenerAddress(
  listener: { type: "unix"; path: string } | { type: string; host: string; port: number },
): string {
  if ("path" in listener) return `unix:${listener.path}`;
  return `${listener.type === "udp" ? "udp" : "tcp"}:${listener.host}:${listener.port}`;
}

/**
 * Whether a listener takes HTTP requests (and so routes).
 *
 * @example
 * ```ts
 * import { ListenerConfig, servesHttp } from "./config.ts";
 * servesHttp(ListenerConfig.parse({ type: "unix", path: "/run/gw.sock" })); // true: HTTP by default
 * servesHttp(ListenerConfig.parse({ type: "tcp", port: 7000 })); // false
 * ```
 */
export function servesHttp(listener: ListenerConfig): boolean {
  return listener.type === "http" || (listener.type === "unix" && listener.protocol === "http");
}

/** The `listeners` section. */
export const listenersSection = {
  schema: ListenersConfig.default({}),
  defines: {
    listener: (listeners) =>
      Object.entries(listeners).map(([name, l]) => ({
        name,
        path: ["listeners", name],
        detail: l.type,
      })),
    "http-listener": (listeners) =>
      Object.entries(listeners).filter(([, l]) => servesHttp(l))
        .map(([name]) => ({ name, path: ["listeners", name] })),
    address: (listeners) =>
      Object.entries(listeners).filter(([, l]) => !listenerAddress(l).endsWith(":0"))
        .map(([name, l]) => ({
          name: listenerAddress(l),
          path: ["listeners", name],
          detail: name,
        })),
    "plugin-use": (listeners) =>
      Object.entries(listeners).flatMap(([name, l]) =>
        l.type === "http"
          ? (l.plugins ?? []).map((plugin, i) => ({
            name: plugin,
            path: ["listeners", name, "plugins", i],
          }))
          : []
      ),
  },
  check(listeners, references, report) {
    const seen = new Map<string, string>();
    for (const [name, listener] of Object.entries(listeners)) {
      if (listener.type === "tcp" && listener.upstream !== undefined) {
        if (!references.has("upstream", listener.upstream)) {
          report(["listeners", name, "upstream"], `unknown upstream "${listener.upstream}"`);
        }
      }
      const address = listenerAddress(listener);
      const other = seen.get(address);
      if (other !== undefined && !address.endsWith(":0")) {
        report(
          ["listeners", name, listener.type === "unix" ? "path" : "port"],
          `listener "${name}" uses ${address}, already used by listener "${other}"`,
        );
      }
      seen.set(address, name);
    }
  },
  async resolve(listeners, { dir, fingerprint, report }) {
    for (const [name, listener] of Object.entries(listeners)) {
      if (listener.type === "unix") listener.path = resolve(dir, listener.path);
      if (listener.type !== "http" || !listener.tls) continue;
      for (const part of ["cert", "key"] as const) {
        const at = resolve(dir, listener.tls[part]);
        listener.tls[part] = at;
        try {
          fingerprint(await Deno.readTextFile(at));
        } catch (error) {
          const why = error instanceof Deno.errors.NotFound
            ? "file not found"
            : (error as Error).message;
          report(["listeners", name, "tls", part], `cannot read "${at}": ${why}`);
        }
      }
    }
  },
} satisfies ConfigSection<z.ZodDefault<typeof ListenersConfig>>;
