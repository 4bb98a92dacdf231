/**
 * The listeners a config wants, one factory per protocol: each planned
 * listener says where it binds, the key that tells whether a running one can
 * stay, and how to create a new one. {@link ListenerSet} turns a plan into a
 * change of the running listeners.
 *
 * @module
 */

import type { ServeHandler } from "../router/app.ts";
import { guardOf, listenerAddress, type ListenersConfig } from "./config.ts";
import { type HttpBinding, HttpListener } from "./http.ts";
import { secureContextFor } from "./http_guard.ts";
import { ListenError } from "./listen_error.ts";
import type { PlannedListener } from "./set.ts";
import { TcpListener, type TcpListenerServices } from "./tcp.ts";
import { UdpListener, type UdpListenerDeps } from "./udp.ts";
import { UnixFramedListener } from "./unix_framed.ts";

/**
 * One HTTP listener on `host:port` serving `handler`, swapped into a kept
 * listener at commit. `key` holds every setting that needs a new socket.
 *
 * @example
 * ```ts
 * import { planHttpListener } from "./plan.ts";
 * const plan = planHttpListener("admin API", "admin", { host: "127.0.0.1", port: 0, drainTimeout: 1000 },
 *   () => new Response("ok"));
 * plan.address; // "tcp:127.0.0.1:0"
 * ```
 */
export function planHttpListener(
  label: string,
  key: string,
  binding: HttpBinding,
  handler: ServeHandler,
): PlannedListener {
  return {
    address: binding.path === undefined
      ? `tcp:${binding.host}:${binding.port}`
      : `unix:${binding.path}`,
    key,
    create: () => new HttpListener(label, binding, handler),
    adopt: (module) => {
      const listener = module as HttpListener;
      listener.setHandler(handler);
      if (binding.tls) listener.setTls(binding.tls);
    },
  };
}

/**
 * The PEM certificate chain and key of an HTTPS listener, checked
 * ({@link secureContextFor}). Throws a {@link ListenError} naming the
 * listener when they are not usable.
 */
async function readTls(name: string, files: { cert: string; key: string }) {
  const pem = {
    cert: await Deno.readTextFile(files.cert),
    key: await Deno.readTextFile(files.key),
  };
  try {
    secureContextFor(pem);
  } catch (error) {
    throw new ListenError(`listener "${name}": ${(error as Error).message}`, { cause: error });
  }
  return pem;
}

/**
 * The listeners of the `listeners` section, by name. HTTP listeners (and
 * Unix sockets speaking HTTP) serve `handlerFor(name)`, guarded as
 * {@link guardOf} says (`upgradesOn(name)`: a route on it upgrades to WebSocket); the others publish
 * to the bus through `services`. TLS files are read and checked here; a
 * renewed certificate is handed to the running listener at commit (new
 * connections get it at once, open ones keep theirs).
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { ConnectionManager } from "../connections/manager.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { ListenersConfig } from "./config.ts";
 * import { planListeners } from "./plan.ts";
 * const bus = new Bus();
 * const plan = await planListeners(
 *   ListenersConfig.parse({ web: { type: "http", port: 0 } }),
 *   () => () => new Response("hello"),
 *   { bus, connections: new ConnectionManager(bus, new MetricsRegistry()), upstreams: new Map() },
 *   () => false, // no route on "web" upgrades to WebSocket
 * );
 * plan.get("web")?.address; // "tcp:127.0.0.1:0"
 * ```
 */
export async function planListeners(
  listeners: ListenersConfig,
  handlerFor: (listener: string) => ServeHandler,
  services: TcpListenerServices & UdpListenerDeps,
  upgradesOn: (listener: string) => boolean,
): Promise<Map<string, PlannedListener>> {
  const plan = new Map<string, PlannedListener>();
  for (const [name, listener] of Object.entries(listeners)) {
    const settings = `${name}\n${JSON.stringify(listener)}`;
    const address = listenerAddress(listener);
    if (listener.type === "http") {
      const tls = listener.tls && await readTls(name, listener.tls);
      const guard = guardOf(listener, upgradesOn(name));
      plan.set(
        name,
        planHttpListener(
          `listener "${name}"`,
          // A new certificate (or its files' paths) is taken by the running listener.
          `${name}\n${JSON.stringify({ ...listener, tls: tls !== undefined, guard })}`,
          {
            ...listener,
            tls,
            guard: guard && { ...guard, listener: name, connections: services.connections },
          },
          handlerFor(name),
        ),
      );
    } else if (listener.type === "unix" && listener.protocol === "http") {
      plan.set(
        name,
        planHttpListener(
          `listener "${name}"`,
          settings,
          { host: "", port: 0, ...listener },
          handlerFor(name),
        ),
      );
    } else if (listener.type === "unix") {
      plan.set(name, {
        address,
        key: settings,
        create: () => new UnixFramedListener(name, listener, services),
      });
    } else if (listener.type === "tcp") {
      plan.set(name, {
        address,
        key: settings,
        create: () => new TcpListener(name, listener, services),
      });
    } else {
      plan.set(name, {
        address,
        key: settings,
        create: () => new UdpListener(name, listener, services),
      });
    }
  }
  return plan;
}
