/**
 * The `mqtt` {@link GatewayModule}: the embedded broker, its listeners, the
 * bus link and the bridges, with reloads that keep clients connected.
 *
 * A reload prepares beside the running state: new listener addresses are
 * bound, new bridges built (their queues reopened from the same KV store),
 * TLS files read; commit swaps authentication, ACLs, bus filters and bridges
 * at once, closes listeners no longer wanted and binds those that changed in
 * place (same address, new TLS files). Clients stay connected throughout;
 * a removed `mqtt` section stops the broker.
 *
 * `GET /mqtt` (admin API) shows clients, subscriptions, messages in and out,
 * retained topics, and each bridge's state and queue.
 *
 * Unless `mqtt.localUser` is false, the broker has a local user whose password
 * is generated in the data directory (mode 0600); its file is logged when the
 * broker starts. Storage refusals (bounds of `mqtt.sessions`,
 * `maxSubscriptions`) are counted in `gateway_mqtt_storage_refused_total{reason}`.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Hono } from "hono";
import { getLogger } from "@logtape/logtape";
import type { Bus } from "../bus/bus.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import type { Change, GatewayModule, PrepareContext } from "../module.ts";
import type { MetricsRegistry } from "../observability/metrics.ts";
import { openPrivateKv } from "../storage/private_kv.ts";
import { Acl } from "./acl.ts";
import { Authenticator, localPassword, type LocalUser } from "./auth.ts";
// aedes and mqtt.js are loaded when a config first asks for the broker or a bridge, so a gateway
// without MQTT does not carry them (about 10 MiB of RSS).
import type { Bridge } from "./bridge.ts";
import type { BrokerCounters, MqttBroker, MqttStream, StreamOrigin } from "./broker.ts";
import type { KvPersistence } from "./persistence.ts";
import { BusBridge } from "./bus_bridge.ts";
import type { MqttConfig, MqttListenerConfig } from "./config.ts";
import { MqttListener } from "./listener.ts";
import { ForwardQueue } from "./queue.ts";
import { StorageLimits, StorageRefusals } from "./storage_limits.ts";
import type { MqttWebSocketHost } from "./websocket_target.ts";

const logger = getLogger(["gateway", "mqtt"]);
/** The KV file of the store-and-forward queues, in the data directory. */
const QUEUE_FILE = "mqtt-queue.sqlite3";
/** The KV file of persistent sessions and retained messages, in the data directory. */
const SESSIONS_FILE = "mqtt-sessions.sqlite3";

interface RunningListener {
  key: string;
  listener: MqttListener;
}

interface RunningBridge {
  key: string;
  bridge: Bridge;
}

/** Everything one config built; swapped whole on commit. */
interface State {
  config: MqttConfig;
  /** The local user and its generated password, unless `localUser` is false. */
  local?: LocalUser;
  listeners: Map<string, RunningListener>;
  bridges: Map<string, RunningBridge>;
}

/**
 * The MQTT module.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { ConnectionManager } from "../connections/manager.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { MqttModule } from "./module.ts";
 * const metrics = new MetricsRegistry();
 * const bus = new Bus(metrics);
 * const mqtt = new MqttModule(bus, new ConnectionManager(bus, metrics), metrics);
 * // const change = await mqtt.prepare(config); await change.commit(); await mqtt.stop();
 * ```
 */
export class MqttModule
  implements GatewayModule<{ mqtt: MqttConfig | undefined }>, MqttWebSocketHost {
  readonly name = "mqtt";
  readonly sections = ["mqtt"] as const;
  #broker?: MqttBroker;
  #persistence?: KvPersistence;
  #link?: BusBridge;
  #state?: State;
  /** Open queue stores by file path (one per data directory in use). */
  readonly #stores = new Map<string, Deno.Kv>();
  /** Bridge queues by store path and bridge name; a queue outlives its bridge's reloads. */
  readonly #queues = new Map<string, ForwardQueue>();
  readonly #counters: BrokerCounters;
  readonly #bridgeMessages;
  readonly #queueDropped;
  readonly #sessionsDropped;
  readonly #limits: StorageLimits;

  constructor(
    readonly bus: Bus,
    readonly connections: ConnectionManager,
    readonly metrics: MetricsRegistry,
  ) {
    const messages = metrics.counter(
      "gateway_mqtt_messages_total",
      "MQTT messages received from clients (in) and delivered to clients (out).",
      ["direction"],
    );
    const denied = metrics.counter(
      "gateway_mqtt_denied_total",
      "MQTT connects (bad credentials), publishes and subscriptions denied.",
      ["action"],
    );
    this.#counters = {
      messagesIn: messages.labels({ direction: "in" }),
      messagesOut: messages.labels({ direction: "out" }),
      denied: (action) => denied.labels({ action }),
      refused: metrics.counter(
        "gateway_mqtt_publishes_refused_total",
        "Client publishes a full bridge queue (policy refuse) did not accept.",
      ).labels(),
    };
    this.#bridgeMessages = metrics.counter(
      "gateway_mqtt_bridge_messages_total",
      "Bridge messages sent upstream, received from upstream, and QoS 0 dropped while down.",
      ["bridge", "event"],
    );
    this.#queueDropped = metrics.counter(
      "gateway_mqtt_queue_dropped_total",
      "Queued bridge messages dropped: queue full (drop-oldest) or older than maxAge.",
      ["bridge", "reason"],
    );
    this.#sessionsDropped = metrics.counter(
      "gateway_mqtt_sessions_dropped_total",
      "Messages not kept for sessions: queued for a full offline client, or retained on a new topic beyond maxRetained.",
      ["what"],
    );
    const refused = metrics.counter(
      "gateway_mqtt_storage_refused_total",
      "What the broker refused to keep: anonymous or excess persistent sessions, excess subscriptions, retained messages over their byte bounds, queued bytes over a session's bound.",
      ["reason"],
    );
    this.#limits = new StorageLimits(
      { maxSubscriptions: Infinity, anonymous: false },
      new StorageRefusals((reason) => refused.labels({ reason }).inc()),
    );
    const clients = metrics.gauge("gateway_mqtt_clients", "Connected MQTT clients.");
    const retained = metrics.gauge("gateway_mqtt_retained", "Topics with a retained message.");
    const retainedBytes = metrics.gauge(
      "gateway_mqtt_retained_bytes",
      "Payload and topic bytes of the retained messages.",
    );
    const sessions = metrics.gauge("gateway_mqtt_persistent_sessions", "Persistent sessions kept.");
    const connected = metrics.gauge(
      "gateway_mqtt_bridge_connected",
      "1 when the bridge is connected upstream.",
      ["bridge"],
    );
    const depth = metrics.gauge("gateway_mqtt_queue_depth", "Messages in a bridge queue.", [
      "bridge",
    ]);
    const age = metrics.gauge(
      "gateway_mqtt_queue_oldest_age_seconds",
      "Age of the oldest message in a bridge queue.",
      ["bridge"],
    );
    metrics.collect(() => {
      clients.labels().set(this.#broker?.aedes.connectedClients ?? 0);
      retained.labels().set(this.#broker?.retainedCount ?? 0);
      retainedBytes.labels().set(this.#persistence?.retainedBytes ?? 0);
      sessions.labels().set(this.#persistence?.sessionCount ?? 0);
      connected.reset();
      depth.reset();
      age.reset();
      for (const [name, { bridge }] of this.#state?.bridges ?? []) {
        connected.labels({ bridge: name }).set(bridge.state === "connected" ? 1 : 0);
        depth.labels({ bridge: name }).set(bridge.deps.queue.depth);
        const oldest = bridge.deps.queue.oldestAt;
        age.labels({ bridge: name }).set(oldest === undefined ? 0 : (Date.now() - oldest) / 1000);
      }
    });
  }

  /** Whether the broker is running (for the WebSocket route target). */
  get running(): boolean {
    return this.#broker !== undefined && this.#state !== undefined;
  }

  /** The largest packet a connected client may send (for the WebSocket route target). */
  get maxPacketSize(): number | undefined {
    return this.#state?.config.maxPacketSize;
  }

  /** Serves a stream from the WebSocket route target. */
  accept(stream: MqttStream, origin: StreamOrigin): void {
    if (!this.#broker) {
      stream.destroy();
      return;
    }
    this.#broker.handle(stream, origin);
  }

  async prepare(
    config: { mqtt: MqttConfig | undefined },
    context: PrepareContext,
  ): Promise<Change> {
    const mqtt = config.mqtt;
    if (!mqtt) {
      return {
        commit: () => this.stop(),
        abort: () => {},
      };
    }
    const created: { listeners: MqttListener[]; bridges: Bridge[]; broker?: MqttBroker } = {
      listeners: [],
      bridges: [],
    };
    const abort = async () => {
      for (const listener of created.listeners) listener.close();
      for (const bridge of created.bridges) await bridge.stop();
      if (created.broker) {
        this.#link?.stop();
        this.#link = undefined;
        await created.broker.close();
        this.#broker = undefined;
        this.#persistence = undefined;
      }
    };
    try {
      await Deno.mkdir(context.dataDir, { recursive: true });
      const generated = mqtt.localUser === false ? undefined : await localPassword(context.dataDir);
      const local = generated &&
        { username: mqtt.localUser as string, password: generated.password };
      const policy = {
        auth: new Authenticator(mqtt.users, mqtt.allowAnonymous, local),
        acl: new Acl(mqtt.acl),
        forwarders: [] as Bridge[],
      };
      const bounds = {
        maxSubscriptions: mqtt.maxSubscriptions,
        anonymous: mqtt.sessions.anonymous,
      };
      if (!this.#broker) {
        this.#limits.bounds = bounds;
        const { MqttBroker } = await import("./broker.ts");
        const { KvPersistence } = await import("./persistence.ts");
        const kv = await openPrivateKv(join(context.dataDir, SESSIONS_FILE));
        const persistence = new KvPersistence(kv, mqtt.sessions, this.#limits, (what, count) => {
          this.#sessionsDropped.labels({ what }).inc(count);
        });
        created.broker = await MqttBroker.create(policy, this.connections, this.#counters, {
          ...mqtt,
          persistence,
          limits: this.#limits,
        }).catch((error) => {
          kv.close();
          throw error;
        });
        this.#broker = created.broker;
        this.#persistence = persistence;
        this.#link = new BusBridge(this.bus, created.broker);
      }
      const broker = this.#broker;
      const previous = this.#state;

      const listeners = new Map<string, RunningListener>();
      /** Listeners whose address an old listener holds: bound on commit, after it closes. */
      const rebind: {
        name: string;
        key: string;
        listener: MqttListenerConfig;
        pem?: { cert: string; key: string };
      }[] = [];
      const heldAddresses = new Set(
        [...previous?.listeners.values() ?? []].map(({ key }) => key.split("\n")[0]),
      );
      for (const [name, listener] of Object.entries(mqtt.listeners)) {
        const pem = listener.tls && await readPem(name, listener.tls);
        const address = `${listener.host}:${listener.port}`;
        const key = `${address}\n${JSON.stringify(listener)}\n${pem?.cert}\n${pem?.key}`;
        const kept = [...previous?.listeners.values() ?? []].find((l) => l.key === key);
        if (kept) listeners.set(name, kept);
        else if (heldAddresses.has(address) && listener.port !== 0) {
          rebind.push({ name, key, listener, pem });
        } else {
          const bound = await MqttListener.bind(name, listener, pem, () => this.#broker!);
          created.listeners.push(bound);
          listeners.set(name, { key, listener: bound });
        }
      }

      const bridges = new Map<string, RunningBridge>();
      const storePath = join(context.dataDir, QUEUE_FILE);
      for (const [name, bridgeConfig] of Object.entries(mqtt.bridges)) {
        const key = JSON.stringify([storePath, bridgeConfig]);
        const kept = previous?.bridges.get(name);
        if (kept?.key === key) {
          bridges.set(name, kept);
          continue;
        }
        const queueKey = `${storePath}\n${name}`;
        let queue = this.#queues.get(queueKey);
        if (!queue) {
          const kv = await this.#openStore(storePath);
          queue = await ForwardQueue.open(kv, name, bridgeConfig.queue, (reason, count) => {
            this.#queueDropped.labels({ bridge: name, reason }).inc(count);
          });
          this.#queues.set(queueKey, queue);
        }
        const { Bridge } = await import("./bridge.ts");
        const bridge = new Bridge(name, bridgeConfig, {
          queue,
          publishLocal: (message) => this.#link?.fromBridge(name, message),
          count: (event) => this.#bridgeMessages.labels({ bridge: name, event }).inc(),
        });
        created.bridges.push(bridge);
        bridges.set(name, { key, bridge });
      }
      policy.forwarders = [...bridges.values()].map(({ bridge }) => bridge);

      return {
        commit: async () => {
          broker.policy = policy;
          this.#limits.bounds = bounds;
          this.#persistence!.bounds = mqtt.sessions;
          const before = previous?.config.users ?? {};
          const closed = broker.closeUsers((user) =>
            user === local?.username
              ? user !== previous?.local?.username || local.password !== previous.local.password
              : !Object.hasOwn(mqtt.users, user) || !Object.hasOwn(before, user) ||
                mqtt.users[user].password !== before[user].password
          );
          if (closed > 0) {
            logger.info("closed {count} MQTT clients of removed or changed users", {
              count: closed,
            });
          }
          this.#link!.setFilters(mqtt.busToBroker);
          for (const [name, old] of previous?.listeners ?? []) {
            if (listeners.get(name) !== old) old.listener.close();
          }
          for (const { name, key, listener, pem } of rebind) {
            try {
              const bound = await MqttListener.bind(name, listener, pem, () => this.#broker!);
              listeners.set(name, { key, listener: bound });
            } catch (error) {
              logger.error("{error}", { error: (error as Error).message });
            }
          }
          for (const [name, old] of previous?.bridges ?? []) {
            if (bridges.get(name) !== old) await old.bridge.stop();
          }
          for (const bridge of created.bridges) {
            bridge.deps.queue.bounds = bridge.config.queue;
            bridge.start();
          }
          this.#state = { config: mqtt, local, listeners, bridges };
          if (local && local.username !== previous?.local?.username) {
            logger.info("MQTT user {user} logs in with the password in {file} (mode 0600)", {
              user: local.username,
              file: generated!.file,
            });
          }
          await this.#closeStores(storePath);
          for (const [name, { listener }] of listeners) {
            if (previous?.listeners.get(name)?.listener === listener) continue; // kept as it was
            logger.info("MQTT listener {name} on port {port}", { name, port: listener.port });
          }
        },
        abort,
      };
    } catch (error) {
      await abort();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const state = this.#state;
    this.#state = undefined;
    for (const { listener } of state?.listeners.values() ?? []) listener.close();
    for (const { bridge } of state?.bridges.values() ?? []) await bridge.stop();
    this.#link?.stop();
    this.#link = undefined;
    await this.#broker?.close();
    this.#broker = undefined;
    this.#persistence = undefined;
    await this.#closeStores();
  }

  status(): unknown {
    if (!this.#state || !this.#broker) return { running: false };
    return {
      running: true,
      clients: this.#broker.aedes.connectedClients,
      listeners: Object.fromEntries(
        [...this.#state.listeners].map(([name, { listener }]) => [name, { port: listener.port }]),
      ),
      bridges: Object.fromEntries(
        [...this.#state.bridges].map(([name, { bridge }]) => [name, bridge.state]),
      ),
    };
  }

  admin(app: Hono): void {
    app.get("/mqtt", (c) => c.json(this.#snapshot()));
  }

  #snapshot(): Record<string, unknown> {
    const broker = this.#broker;
    if (!broker || !this.#state) return { running: false };
    const clients = broker.clients();
    return {
      running: true,
      listeners: Object.fromEntries(
        [...this.#state.listeners].map(([name, { listener }]) => [name, { port: listener.port }]),
      ),
      clients,
      subscriptions: clients.reduce((sum, client) => sum + client.subscriptions, 0),
      messages: {
        in: this.#counters.messagesIn.value,
        out: this.#counters.messagesOut.value,
      },
      retained: broker.retainedCount,
      bridges: Object.fromEntries(
        [...this.#state.bridges].map(([name, { bridge }]) => [name, bridge.snapshot()]),
      ),
    };
  }

  async #openStore(path: string): Promise<Deno.Kv> {
    let kv = this.#stores.get(path);
    if (!kv) {
      await Deno.mkdir(dirname(path), { recursive: true });
      kv = await openPrivateKv(path);
      this.#stores.set(path, kv);
    }
    return kv;
  }

  /** Flushes and closes every queue store but `keep` (all of them without it). */
  async #closeStores(keep?: string): Promise<void> {
    for (const [key, queue] of this.#queues) {
      if (key.startsWith(`${keep}\n`)) continue;
      await queue.flush();
      this.#queues.delete(key);
    }
    for (const [path, kv] of this.#stores) {
      if (path === keep) continue;
      kv.close();
      this.#stores.delete(path);
    }
  }
}

async function readPem(
  name: string,
  tls: { cert: string; key: string },
): Promise<{ cert: string; key: string }> {
  const pem = { cert: "", key: "" };
  for (const part of ["cert", "key"] as const) {
    try {
      pem[part] = await readFile(tls[part], "utf8");
    } catch (error) {
      throw new Error(
        `mqtt.listeners.${name}.tls.${part}: cannot read "${tls[part]}": ${
          (error as Error).message
        }`,
      );
    }
  }
  return pem;
}
