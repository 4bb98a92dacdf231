/**
 * The lifecycle every long-lived capability (plugins, language workers,
 * models, the MQTT broker) follows, so that {@link Gateway} can reload them
 * all atomically: each `prepare`s its next state from the new config beside
 * the running one, and only when every module and every listener is ready
 * are the changes committed together. A failure aborts what was prepared,
 * and the running state is untouched.
 *
 * @module
 */

import type { Hono } from "hono";
import type { GatewayConfig } from "./config/schema.ts";

/** A module's next state, built but not yet serving. */
export interface ModuleChange {
  /** Makes the prepared state the serving one and releases the old (draining it). */
  commit(): void | Promise<void>;
  /** Discards the prepared state; the running one stays as it was. */
  abort(): void | Promise<void>;
}

/**
 * A capability with a lifecycle: prepare (validate and build beside the old),
 * commit or abort, stop.
 *
 * @example
 * ```ts
 * import type { GatewayModule } from "./module.ts";
 * const noop: GatewayModule = {
 *   name: "noop",
 *   prepare: () => Promise.resolve({ commit() {}, abort() {} }),
 *   stop: () => Promise.resolve(),
 *   status: () => ({}),
 * };
 * ```
 */
export interface GatewayModule {
  /** The module's key in `GET /status` (`plugins`, `workers`, ...). */
  readonly name: string;
  /**
   * Builds the state `config` asks for beside the running one (start new
   * workers, load new plugin versions, open sessions). Throws an error whose
   * message names the config path to refuse the config; must leave nothing
   * running when it throws.
   */
  prepare(config: GatewayConfig): Promise<ModuleChange>;
  /** Stops everything, finishing in-flight work up to its deadline. Idempotent. */
  stop(): Promise<void>;
  /** What `GET /status` shows under {@link name}. */
  status(): unknown;
  /** Adds the module's own admin endpoints (behind the admin token). */
  admin?(app: Hono): void;
}
