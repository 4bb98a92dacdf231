/**
 * The one lifecycle of everything that reloads with the config: listeners,
 * upstreams and modules (plugins, language workers, models, the MQTT
 * broker). Each `prepare`s its next state from its config slice beside the
 * running one; only when every participant is ready does {@link Gateway}
 * commit them together, inside a guard. A failure aborts what was prepared,
 * and the running state is untouched.
 *
 * @module
 */

import type { Hono } from "hono";
import type { References } from "./config/references.ts";

/** A participant's next state, built but not yet serving. */
export interface Change {
  /** Makes the prepared state the serving one and releases the old (draining it). */
  commit(): void | Promise<void>;
  /** Discards the prepared state; the running one stays as it was. */
  abort(): void | Promise<void>;
}

/** What every participant learns about a prepare besides its own slice. */
export interface PrepareContext {
  /**
   * True on the gateway's first start: a runtime failure of one part (a
   * worker that exits, a plugin whose init throws) then leaves that part
   * failed and in backoff instead of refusing the config.
   */
  readonly starting: boolean;
  /** The absolute data directory (`storage.dataDir`). */
  readonly dataDir: string;
  /**
   * The names other sections define, narrowed to the kinds the participant
   * declares (a module's {@link GatewayModule.references}).
   */
  readonly references: References;
}

/**
 * Anything prepared beside the running state and committed with the rest.
 *
 * @example
 * ```ts
 * import type { Participant } from "./module.ts";
 * const noop: Participant<{ greeting: string }> = {
 *   prepare: () => Promise.resolve({ commit() {}, abort() {} }),
 *   stop: () => Promise.resolve(),
 * };
 * ```
 */
export interface Participant<Slice> {
  /**
   * Builds the state `slice` asks for beside the running one. Throws an error
   * whose message names the config path to refuse the config; leaves nothing
   * running when it throws.
   */
  prepare(slice: Slice, context: PrepareContext): Promise<Change>;
  /** Stops everything, finishing in-flight work up to its deadline. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A capability with a lifecycle, its own config sections, status and admin
 * endpoints.
 *
 * @example
 * ```ts
 * import type { GatewayModule } from "./module.ts";
 * const noop: GatewayModule<{ log: { level: string } }> = {
 *   name: "noop",
 *   sections: ["log"],
 *   prepare: () => Promise.resolve({ commit() {}, abort() {} }),
 *   stop: () => Promise.resolve(),
 *   status: () => ({}),
 * };
 * ```
 */
export interface GatewayModule<Slice extends object = object> extends Participant<Slice> {
  /** The module's key in `GET /status` (`plugins`, `workers`, ...). */
  readonly name: string;
  /** The config sections the module owns: `prepare` gets exactly these keys. */
  readonly sections: readonly string[];
  /** The kinds of names other sections define that it reads (`worker`, `plugin-use`, ...). */
  readonly references?: readonly string[];
  /** What `GET /status` shows under {@link name}. */
  status(): unknown;
  /** Adds the module's own admin endpoints (behind the admin token). */
  admin?(app: Hono): void;
}
