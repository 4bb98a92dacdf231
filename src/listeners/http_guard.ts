/**
 * The HTTP guard: accepts an HTTP(S) listener's connections itself, so that
 * what `Deno.serve` (2.9.6) cannot do is done before it sees them.
 *
 * Each connection is admitted through the connection manager (the
 * listener's `maxConnections` and `maxPerIp`, and the process's descriptor
 * budget), its TLS handshake is completed under a deadline (with the
 * certificate of the moment: {@link HttpGuard.setTls} swaps it without
 * rebinding), and its bytes are relayed both ways to the listener's
 * `Deno.serve` on an internal loopback socket. On the way in, the bytes are
 * followed by {@link Http1RequestFramer}, which gives the deadline that
 * applies: the request head must be complete within `headerTimeout` of its
 * first byte (of the connection, for the first request), a request body must
 * make progress every `bodyTimeout`, and a connection with no request must
 * not stay `idleTimeout`. HTTP/2 (ALPN `h2`, or the prior-knowledge preface)
 * gets the idle deadline only; a connection upgraded to WebSocket gets none
 * (its route's own limits apply).
 *
 * `Deno.serve` sees the guard's loopback address; {@link HttpGuard.connectionFrom}
 * maps that socket's port back to the guarded connection and its client.
 *
 * @module
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import { getLogger } from "@logtape/logtape";
import type { Connection } from "../connections/connection.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import { HeadTooLargeError, Http1RequestFramer } from "./http_request_framing.ts";
import {
  MESSAGE_TOO_BIG_CLOSE,
  type WebSocketMessageMeter,
} from "../connections/websocket_messages.ts";
import { closeQuietly, writeAll } from "./stream_connection.ts";

/** The guard's limits and deadlines (milliseconds). */
export interface HttpGuardSettings {
  /** From a request head's first byte (the connection's start, for the first) to its end. */
  headerTimeout: number;
  /** Most time between two reads of a request body the server is ready to take. */
  bodyTimeout: number;
  /** Most time a connection stays open with no request in progress. */
  idleTimeout: number;
  /** From accepting a TLS connection to the end of its handshake. */
  handshakeTimeout: number;
  maxConnections: number;
  maxPerIp: number;
}

/** What a guard needs: where it binds, for which listener, and who admits connections. */
export interface HttpGuardOptions {
  /** The listener's name, as the connection manager counts it. */
  listener: string;
  /** The listener's label, for logs. */
  label: string;
  host: string;
  port: number;
  /** PEM certificate chain and key: the guard terminates TLS. */
  tls?: { cert: string; key: string };
  settings: HttpGuardSettings;
  connections: Pick<ConnectionManager, "admit">;
}

/** Where the guard relays: the listener's `Deno.serve`, on loopback. */
const INTERNAL_HOST = "127.0.0.1";
const RELAY_BUFFER_SIZE = 16 * 1024;
/** Milliseconds between two checks that a guard still accepts, and how long one check waits. */
const WATCHDOG_INTERVAL = 5000;

const logger = getLogger(["gateway", "listener"]);

type DeadlineKind = "TLS handshake" | "request head" | "request body" | "idle";

/** One client connection, from its acceptance to its close. */
export class GuardedConnection {
  /** The client, as `Deno.serve`'s handler must see it. */
  readonly client: Deno.NetAddr;
  readonly done: Promise<void>;
  #resolveDone!: () => void;
  #socket: Socket;
  #internal?: Deno.TcpConn;
  #admitted?: Connection;
  readonly #framer = new Http1RequestFramer();
  /** Requests the server is handling (handler called, response not yet sent). */
  #inFlight = 0;
  #handshaking: boolean;
  #upgraded = false;
  /** After a WebSocket upgrade: the route's message size limit, followed on the client's frames. */
  #messages?: WebSocketMessageMeter;
  /** A chunk from the client is being written to the server (its deadline is the server's). */
  #writing = false;
  /** Chunks from the client waiting for that write. */
  #queue: Uint8Array[] = [];
  #deadline = 0;
  #deadlineKind?: DeadlineKind;
  #closed = false;

  constructor(readonly guard: HttpGuard, socket: Socket, tls: boolean) {
    this.#socket = socket;
    this.#handshaking = tls;
    this.client = {
      transport: "tcp",
      hostname: unmapped(socket.remoteAddress ?? ""),
      port: socket.remotePort ?? 0,
    };
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    const { settings } = guard.options;
    this.#deadlineKind = tls ? "TLS handshake" : "request head";
    this.#deadline = Date.now() + (tls ? settings.handshakeTimeout : settings.headerTimeout);
  }

  /** Whether nothing is in progress on it: a handshake, or no request being received or handled. */
  get idle(): boolean {
    const phase = this.#framer.phase;
    return this.#handshaking ||
      (this.#inFlight === 0 && !this.#upgraded && (phase === "between" || phase === "opaque"));
  }

  /** Called when the server's handler takes one of this connection's requests. */
  requestStarted(): void {
    this.#inFlight++;
    this.#refresh();
  }

  /** Called when the server has sent that request's response (or given up on it). */
  requestEnded(): void {
    this.#inFlight--;
    this.#refresh();
  }

  /**
   * The server switched protocols (WebSocket): no guard deadline applies any
   * more; `messages` follows the client's frames from here (a client that
   * sent bytes before the 101, which RFC 6455 forbids, cannot be followed).
   */
  upgraded(messages?: WebSocketMessageMeter): void {
    if (messages && this.#framer.phase !== "between") this.close("data before the 101 response");
    this.#messages = messages;
    this.#upgraded = true;
    this.#framer.toOpaque();
    this.#refresh();
  }

  admit(admitted: Connection): void {
    this.#admitted = admitted;
  }

  /** Takes the client's (decrypted) socket once it is ready, and relays it to `port`. */
  async relay(socket: Socket, port: number, http2: boolean): Promise<void> {
    this.#socket = socket;
    this.#handshaking = false;
    if (http2) this.#framer.toOpaque();
    this.#deadlineKind = undefined;
    this.#refresh();
    let internal: Deno.TcpConn;
    try {
      internal = await Deno.connect({ hostname: INTERNAL_HOST, port });
    } catch (error) {
      return this.close(`cannot reach the listener's server: ${(error as Error).message}`);
    }
    if (this.#closed) return closeQuietly(internal);
    internal.setNoDelay(true);
    this.#internal = internal;
    this.guard.relayed(this, internal.localAddr.port);
    socket.on("data", (chunk: Uint8Array) => this.#fromClient(chunk, internal));
    socket.on("end", () => internal.closeWrite().catch(() => {}));
    socket.resume();
    await this.#toClient(internal, socket);
  }

  #fromClient(chunk: Uint8Array, internal: Deno.TcpConn): void {
    if (this.#messages?.feed(chunk) === false) {
      this.#socket.write(MESSAGE_TOO_BIG_CLOSE);
      return this.close("a WebSocket message over its route's maxMessageSize");
    }
    try {
      this.#framer.feed(chunk);
    } catch (error) {
      if (!(error instanceof HeadTooLargeError)) throw error;
      return this.close(error.message);
    }
    this.#admitted?.received(chunk.length, 0);
    if (this.#writing) {
      // One write at a time, in order; the client waits (paused) while chunks queue.
      this.#queue.push(chunk);
      this.#socket.pause();
      return;
    }
    this.#flush(chunk, internal);
  }

  async #flush(first: Uint8Array, internal: Deno.TcpConn): Promise<void> {
    this.#writing = true;
    this.#refresh();
    try {
      for (let next: Uint8Array | undefined = first; next; next = this.#queue.shift()) {
        await writeAll(internal, next);
      }
    } catch (error) {
      return this.close(`relay to the server failed: ${(error as Error).message}`);
    }
    this.#writing = false;
    this.#refresh();
    if (!this.#closed) this.#socket.resume();
  }

  async #toClient(internal: Deno.TcpConn, socket: Socket): Promise<void> {
    const buffer = new Uint8Array(RELAY_BUFFER_SIZE);
    try {
      for (let n; (n = await internal.read(buffer)) !== null;) {
        this.#admitted?.sent(n, 0);
        // The socket keeps what it is given until written: a copy, so the buffer can be read into again.
        if (!socket.write(buffer.slice(0, n))) await drained(socket);
        if (this.#closed) return;
        if (this.#framer.phase === "opaque") this.#refresh();
      }
      // The server is done with the connection: close it once what it sent is written.
      socket.end(() => this.close("server closed"));
    } catch (error) {
      this.close(`relay from the server failed: ${(error as Error).message}`);
    }
  }

  /** Sets the deadline that applies now. */
  #refresh(): void {
    const { settings } = this.guard.options;
    const phase = this.#framer.phase;
    if (this.#handshaking) return;
    if (this.#upgraded) return this.#setDeadline(undefined, 0);
    if (phase === "head" || (phase === "between" && this.#framer.heads === 0)) {
      if (this.#deadlineKind !== "request head") {
        this.#setDeadline("request head", settings.headerTimeout);
      }
    } else if (phase === "body") {
      // While the server is not taking the body, waiting is not the client's fault.
      if (this.#writing) this.#setDeadline(undefined, 0);
      else this.#setDeadline("request body", settings.bodyTimeout);
    } else if (this.#inFlight > 0) {
      this.#setDeadline(undefined, 0);
    } else if (phase === "opaque" || this.#deadlineKind !== "idle") {
      this.#setDeadline("idle", settings.idleTimeout);
    }
  }

  #setDeadline(kind: DeadlineKind | undefined, ms: number): void {
    this.#deadlineKind = kind;
    this.#deadline = kind === undefined || ms === 0 ? 0 : Date.now() + ms;
  }

  /** Closes it when its deadline has passed. */
  check(now: number): void {
    if (this.#deadline !== 0 && now >= this.#deadline) {
      this.close(`${this.#deadlineKind} timeout`);
    }
  }

  /** Closes both sides. Idempotent. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    logger.debug("{listener}: closing {peer}: {reason}", {
      listener: this.guard.options.label,
      peer: `${this.client.hostname}:${this.client.port}`,
      reason,
    });
    this.#socket.destroy();
    if (this.#internal) closeQuietly(this.#internal);
    this.guard.forget(this, this.#internal?.localAddr.port);
    this.#admitted?.closed();
    this.#resolveDone();
  }
}

/**
 * Accepts one listener's connections and relays them to its server.
 *
 * @example
 * ```ts
 * import { HttpGuard } from "./http_guard.ts";
 * import type { Connection } from "../connections/connection.ts";
 *
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
 *   new Response("hello"));
 * const guard = new HttpGuard({
 *   listener: "web",
 *   label: 'listener "web"',
 *   host: "127.0.0.1",
 *   port: 0,
 *   settings: {
 *     headerTimeout: 10_000,
 *     bodyTimeout: 30_000,
 *     idleTimeout: 60_000,
 *     handshakeTimeout: 10_000,
 *     maxConnections: 100,
 *     maxPerIp: 10,
 *   },
 *   connections: { admit: () => ({ refused: "this example admits nobody" }) },
 * });
 * await guard.listen(server.addr.port);
 * console.log(guard.port);
 * guard.stopAccepting();
 * await guard.closeAll("example over");
 * await server.shutdown();
 * ```
 */
export class HttpGuard {
  #server: Server;
  /** The port bound (kept across a rebind). */
  #port = 0;
  #context?: SecureContext;
  #target = 0;
  readonly #open = new Set<GuardedConnection>();
  readonly #relayedFrom = new Map<number, GuardedConnection>();
  readonly #sweeper: ReturnType<typeof setInterval>;
  #watchdog?: ReturnType<typeof setInterval>;
  /** The watchdog's connection waiting to be accepted: its local port, and what it waits on. */
  #probe?: {
    address: string;
    port: number;
    accepted: () => void;
    timer: ReturnType<typeof setTimeout>;
  };
  #stopped = false;
  /** Connections accepted (the watchdog's too), and how many there were at its last check. */
  #accepted = 0;
  #acceptedAtCheck = 0;

  constructor(readonly options: HttpGuardOptions) {
    if (options.tls) this.setTls(options.tls);
    this.#server = this.#createServer();
    const { headerTimeout, bodyTimeout, idleTimeout, handshakeTimeout } = options.settings;
    const shortest = Math.min(...[headerTimeout, bodyTimeout, idleTimeout, handshakeTimeout]);
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const connection of this.#open) connection.check(now);
    }, Math.max(50, Math.min(1000, shortest / 4)));
  }

  /** The bound port (0 before {@link listen}). */
  get port(): number {
    return this.#port;
  }

  /** How many connections are open. */
  get openCount(): number {
    return this.#open.size;
  }

  /** Binds the listener's address and relays what it accepts to `target`. Rejects with the bind error. */
  listen(target: number): Promise<void> {
    this.#target = target;
    const { host, port } = this.options;
    return new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off("error", reject);
        this.#server.on("error", (error) => this.#acceptFailed(error));
        this.#port = (this.#server.address() as { port: number }).port;
        this.#watchdog = setInterval(() => this.#check(), WATCHDOG_INTERVAL);
        resolve();
      });
    }).catch((error) => {
      clearInterval(this.#sweeper);
      throw error;
    });
  }

  /**
   * The certificate and key for connections accepted from now on (those open
   * keep theirs). Throws, keeping the one before, when they are not usable.
   */
  setTls(pem: { cert: string; key: string }): void {
    this.#context = secureContextFor(pem);
  }

  /** The guarded connection whose relay to the server leaves from this loopback port. */
  connectionFrom(port: number): GuardedConnection | undefined {
    return this.#relayedFrom.get(port);
  }

  /** Stops accepting, and closes the connections with nothing in progress. */
  stopAccepting(): void {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    this.#endProbe();
    this.#server.close();
    for (const connection of this.#open) {
      if (connection.idle) connection.close("listener stopping");
    }
  }

  /** Closes every connection and waits until each is released. */
  async closeAll(reason: string): Promise<void> {
    clearInterval(this.#sweeper);
    const open = [...this.#open];
    for (const connection of open) connection.close(reason);
    await Promise.all(open.map((connection) => connection.done));
  }

  /** @internal A connection's relay left from `port`. */
  relayed(connection: GuardedConnection, port: number): void {
    this.#relayedFrom.set(port, connection);
  }

  /** @internal A connection closed. */
  forget(connection: GuardedConnection, port: number | undefined): void {
    this.#open.delete(connection);
    if (port !== undefined && this.#relayedFrom.get(port) === connection) {
      this.#relayedFrom.delete(port);
    }
  }

  #createServer(): Server {
    return createServer(
      { allowHalfOpen: true, pauseOnConnect: this.options.tls === undefined, noDelay: true },
      (socket) => this.#accept(socket),
    );
  }

  #acceptFailed(error: Error): void {
    logger.warn("{listener}: accepting failed: {error}", { listener: this.options.label, error });
  }

  /**
   * Checks that the socket still accepts: Deno's `node:net` server stops
   * accepting for good, without an error, when `accept()` fails for want of
   * a descriptor (EMFILE). When nothing was accepted since the last check,
   * the guard connects to itself; nothing accepted within
   * {@link WATCHDOG_INTERVAL} makes it bind the address again.
   */
  async #check(): Promise<void> {
    const before = this.#accepted;
    if (this.#probe || this.#stopped || before !== this.#acceptedAtCheck) {
      this.#acceptedAtCheck = before;
      return; // accepting since the last check
    }
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: probeHost(this.options.host), port: this.#port });
    } catch {
      return; // no descriptor to check with either: the next check tries again
    }
    const accepted = this.#accepted > before || await new Promise<boolean>((resolve) => {
      this.#probe = {
        address: conn.localAddr.hostname,
        port: conn.localAddr.port,
        accepted: () => resolve(true),
        timer: setTimeout(() => resolve(false), WATCHDOG_INTERVAL),
      };
    });
    this.#endProbe();
    closeQuietly(conn);
    this.#acceptedAtCheck = this.#accepted;
    if (!accepted && !this.#stopped) this.#rebind();
  }

  #endProbe(): void {
    clearTimeout(this.#probe?.timer);
    this.#probe?.accepted();
    this.#probe = undefined;
  }

  /** Binds the address again (every 100 ms until it can); open connections stay. */
  #rebind(): void {
    logger.warn(
      "{listener}: not accepting connections (out of file descriptors?): binding again",
      { listener: this.options.label },
    );
    this.#server.close();
    const attempt = () => {
      if (this.#stopped) return;
      const server = this.#createServer();
      server.once("error", () => setTimeout(attempt, 100));
      server.listen({ host: this.options.host, port: this.#port }, () => {
        server.removeAllListeners("error");
        server.on("error", (error) => this.#acceptFailed(error));
        this.#server = server;
        if (this.#stopped) server.close();
        else logger.info("{listener}: accepting again", { listener: this.options.label });
      });
    };
    attempt();
  }

  #accept(socket: Socket): void {
    this.#accepted++;
    const probe = this.#probe;
    probe?.accepted();
    if (
      probe && socket.remotePort === probe.port &&
      unmapped(socket.remoteAddress ?? "") === probe.address
    ) {
      socket.destroy();
      return;
    }
    const { listener, settings, connections } = this.options;
    const tls = this.#context !== undefined;
    const connection = new GuardedConnection(this, socket, tls);
    const admitted = connections.admit({
      listener,
      protocol: "http",
      remoteAddress: connection.client.hostname,
      remotePort: connection.client.port,
      limits: {
        maxConnections: settings.maxConnections,
        maxPerIp: settings.maxPerIp,
        idleTimeout: 0,
      },
      handle: {
        send: () => {
          throw new Error(`${this.options.label}: HTTP connections take no pushed messages`);
        },
        close: (reason) => connection.close(reason),
      },
    });
    if ("refused" in admitted) {
      logger.debug("{listener}: refused {peer}: {reason}", {
        listener: this.options.label,
        peer: `${connection.client.hostname}:${connection.client.port}`,
        reason: admitted.refused,
      });
      socket.destroy();
      return;
    }
    connection.admit(admitted);
    this.#open.add(connection);
    socket.on("error", (error) => connection.close(`client error: ${error.message}`));
    socket.on("close", () => connection.close("client closed"));
    if (!tls) {
      connection.relay(socket, this.#target, false);
      return;
    }
    const secure = new TLSSocket(socket, {
      isServer: true,
      secureContext: this.#context,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    secure.on("error", (error) => connection.close(`TLS: ${error.message}`));
    secure.on("close", () => connection.close("client closed"));
    secure.once("secure", () => {
      connection.relay(secure, this.#target, secure.alpnProtocol === "h2");
    });
  }
}

/**
 * A TLS server context for a PEM certificate chain and key, checked first:
 * both parse and the key is the certificate's. Throws saying which is wrong.
 *
 * @example
 * ```ts
 * import { secureContextFor } from "./http_guard.ts";
 * try {
 *   secureContextFor({ cert: "not a certificate", key: "not a key" });
 * } catch (error) {
 *   console.log((error as Error).message); // "the TLS certificate cannot be read: ..."
 * }
 * ```
 */
export function secureContextFor(pem: { cert: string; key: string }): SecureContext {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem.cert);
  } catch (error) {
    throw new Error(`the TLS certificate cannot be read: ${(error as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem.key);
  } catch (error) {
    throw new Error(`the TLS key cannot be read: ${(error as Error).message}`);
  }
  if (!certificate.checkPrivateKey(key)) throw new Error("the TLS key is not the certificate's");
  return createSecureContext(pem);
}

/** Where the watchdog connects to reach a listener bound to `host`. */
function probeHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  return host === "::" || host === "[::]" ? "::1" : host.replace(/^\[(.*)\]$/, "$1");
}

/** `::ffff:10.0.0.1` (an IPv4 client of a dual-stack socket) as `10.0.0.1`. */
function unmapped(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** Resolves when `socket` can take more writes, or has closed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}
