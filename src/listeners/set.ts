/**
 * The listeners of a running gateway, and how a reload changes them:
 *
 * - a listener whose key (address and every setting) is unchanged is kept,
 *   sockets and connections included; an HTTP listener gets the new handler;
 * - a listener on a new address is bound before the switch, so a bind
 *   failure (port in use) refuses the whole reload;
 * - a listener whose settings changed on the same address cannot be bound
 *   twice, so it is restarted after the switch (its connections close);
 * - a listener that is gone is stopped after the switch.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ServeHandler } from "../router/app.ts";
import { HttpListener } from "./http.ts";

const logger = getLogger(["gateway", "listener"]);

/** What the lifecycle needs of a listener of any protocol. */
export interface ListenerModule {
  start(): void | Promise<void>;
  stop(): Promise<void>;
}

/** A listener the new config wants. */
export interface PlannedListener {
  /** Where it binds: `tcp:host:port`, `udp:host:port` or `unix:path`. */
  address: string;
  /** The address and every setting: an equal key means the running listener can stay. */
  key: string;
  create(): ListenerModule;
  /** For HTTP listeners: the handler of the new config. */
  handler?: ServeHandler;
}

interface Live {
  planned: PlannedListener;
  module: ListenerModule;
}

/** A prepared change of the listener set, committed after the switch. */
export interface ListenerChange {
  commit(): Promise<void>;
}

/**
 * The running listeners, by id (listener name, or an internal id for the admin API).
 *
 * @example
 * ```ts
 * import { ListenerSet } from "./set.ts";
 * const listeners = new ListenerSet();
 * const change = await listeners.prepare(new Map());
 * await change.commit();
 * await listeners.stop();
 * ```
 */
export class ListenerSet {
  #live = new Map<string, Live>();

  /** The running module of a listener id. */
  get(id: string): ListenerModule | undefined {
    return this.#live.get(id)?.module;
  }

  /** Every running listener id and module. */
  entries(): [string, ListenerModule][] {
    return [...this.#live].map(([id, live]) => [id, live.module]);
  }

  /**
   * Binds the listeners on new addresses. Throws (after stopping what it
   * bound) when one cannot start; otherwise returns the change to commit at
   * the switch.
   */
  async prepare(planned: ReadonlyMap<string, PlannedListener>): Promise<ListenerChange> {
    const byKey = new Map([...this.#live.values()].map((live) => [live.planned.key, live]));
    const byAddress = new Map([...this.#live.values()].map((live) => [live.planned.address, live]));
    const next = new Map<string, Live>();
    const bound: ListenerModule[] = [];
    const restarts: [string, PlannedListener, Live][] = [];
    try {
      for (const [id, plan] of planned) {
        const kept = byKey.get(plan.key);
        if (kept) {
          byKey.delete(plan.key);
          byAddress.delete(plan.address);
          next.set(id, { planned: plan, module: kept.module });
          continue;
        }
        const holder = byAddress.get(plan.address);
        if (holder && !plan.address.endsWith(":0")) {
          byAddress.delete(plan.address);
          byKey.delete(holder.planned.key);
          restarts.push([id, plan, holder]);
          continue;
        }
        const module = plan.create();
        await module.start();
        bound.push(module);
        next.set(id, { planned: plan, module });
      }
    } catch (error) {
      await Promise.all(bound.map((module) => module.stop()));
      throw error;
    }
    const retired = [...byKey.values()];
    return {
      commit: async () => {
        for (const live of next.values()) {
          if (live.module instanceof HttpListener && live.planned.handler) {
            live.module.setHandler(live.planned.handler);
          }
        }
        this.#live = next;
        for (const live of retired) {
          live.module.stop().catch((error) =>
            logger.warn("a retired listener did not stop cleanly: {error}", { error })
          );
        }
        for (const [id, plan, old] of restarts) {
          await old.module.stop();
          const module = plan.create();
          try {
            await module.start();
            this.#live.set(id, { planned: plan, module });
          } catch (error) {
            logger.error("listener {id} could not be restarted with its new settings: {error}", {
              id,
              error,
            });
          }
        }
      },
    };
  }

  /** Stops every listener (each drains up to its own deadline). Idempotent. */
  async stop(): Promise<void> {
    await Promise.all([...this.#live.values()].map((live) => live.module.stop()));
  }
}
