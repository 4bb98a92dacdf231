/**
 * The listeners of a running gateway, and how a reload changes them:
 *
 * - a listener whose key (address and every setting) is unchanged is kept,
 *   sockets and connections included; an HTTP listener gets the new handler
 *   at the switch;
 * - a listener on a new address is bound before the switch;
 * - a listener whose settings changed on an address a running listener holds
 *   (the same address, or a wildcard host and a specific one on the same
 *   port) cannot be bound beside it, so the running one is stopped and the
 *   new one started, also before the switch (its connections close);
 * - a listener that is gone is stopped after the switch.
 *
 * If anything fails to start, what was bound is stopped, what was stopped is
 * started again, and the error is thrown: nothing changes.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Change, Participant } from "../module.ts";

const logger = getLogger(["gateway", "listener"]);

/** What the lifecycle needs of a listener of any protocol. */
export interface ListenerModule {
  start(): void | Promise<void>;
  stop(): Promise<void>;
  /** The URL clients use (HTTP listeners). */
  readonly url?: string;
  /** The bound port (TCP and UDP listeners; useful when the config asked for port 0). */
  readonly port?: number;
}

/** A listener the new config wants. */
export interface PlannedListener {
  /** Where it binds: `tcp:host:port`, `udp:host:port` or `unix:path`. */
  address: string;
  /** The address and every setting: an equal key means the running listener can stay. */
  key: string;
  create(): ListenerModule;
  /** Called at commit on a running listener kept for this plan (an HTTP listener takes the new handler). */
  adopt?(module: ListenerModule): void;
}

interface Live {
  planned: PlannedListener;
  module: ListenerModule;
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

/** Whether two addresses cannot both be bound: equal, or a wildcard and a host on one port. */
function conflicts(a: string, b: string): boolean {
  if (a === b) return !a.endsWith(":0");
  const [transportA, ...restA] = a.split(":");
  const [transportB, ...restB] = b.split(":");
  if (transportA !== transportB || transportA === "unix") return false;
  const portA = restA.pop();
  const portB = restB.pop();
  if (portA !== portB || portA === "0") return false;
  return WILDCARD_HOSTS.has(restA.join(":")) || WILDCARD_HOSTS.has(restB.join(":"));
}

/** Where a running listener is bound: a port-0 plan's address with the port it got. */
function boundAddress({ planned, module }: Live): string {
  return planned.address.endsWith(":0") && module.port
    ? `${planned.address.slice(0, -1)}${module.port}`
    : planned.address;
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
export class ListenerSet implements Participant<ReadonlyMap<string, PlannedListener>> {
  #live = new Map<string, Live>();

  /** Every running listener id and module. */
  entries(): [string, ListenerModule][] {
    return [...this.#live].map(([id, live]) => [id, live.module]);
  }

  /**
   * Starts every listener the new config needs that is not running as it
   * wants it. Throws, after undoing everything it did, when one cannot start;
   * otherwise returns the change: commit switches to the new set (stopping
   * listeners no longer wanted), abort stops what was bound and starts again
   * what had to make room.
   */
  async prepare(planned: ReadonlyMap<string, PlannedListener>): Promise<Change> {
    const unclaimed = new Map(this.#live);
    const next = new Map<string, Live>();
    const bound: ListenerModule[] = [];
    const stoppedOld: [string, Live][] = [];
    const abort = async () => {
      await Promise.all(bound.map((module) => module.stop()));
      for (const [oldId, live] of stoppedOld) {
        const revived = live.planned.create();
        try {
          await revived.start();
          this.#live.set(oldId, { planned: live.planned, module: revived });
        } catch (restartError) {
          this.#live.delete(oldId);
          logger.error("listener {id} could not be started again: {error}", {
            id: oldId,
            error: restartError,
          });
        }
      }
    };
    try {
      for (const [id, plan] of planned) {
        const kept = [...unclaimed].find(([, live]) => live.planned.key === plan.key);
        if (kept) {
          unclaimed.delete(kept[0]);
          next.set(id, { planned: plan, module: kept[1].module });
          continue;
        }
        for (const [oldId, live] of [...unclaimed]) {
          if (!conflicts(boundAddress(live), plan.address)) continue;
          unclaimed.delete(oldId);
          await live.module.stop();
          stoppedOld.push([oldId, live]);
        }
        const module = plan.create();
        await module.start();
        bound.push(module);
        next.set(id, { planned: plan, module });
      }
    } catch (error) {
      await abort();
      throw error;
    }
    return {
      commit: () => {
        for (const live of next.values()) {
          if (!bound.includes(live.module)) live.planned.adopt?.(live.module);
        }
        this.#live = next;
        for (const live of unclaimed.values()) {
          live.module.stop().catch((error) =>
            logger.warn("a retired listener did not stop cleanly: {error}", { error })
          );
        }
      },
      abort,
    };
  }

  /** Stops every listener (each drains up to its own deadline). Idempotent. */
  async stop(): Promise<void> {
    await Promise.all([...this.#live.values()].map((live) => live.module.stop()));
  }
}
