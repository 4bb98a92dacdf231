/**
 * The `upstreams` participant: the serving upstreams by name, rebuilt from
 * each config beside the serving ones. Target state (health, ejection,
 * breaker, in-flight counts) lives in one {@link TargetStatePool} for the
 * process, so a reload's new upstream for the same URL carries on from it.
 *
 * @module
 */

import type { Change, Participant } from "../module.ts";
import type { UpstreamClient } from "./client.ts";
import type { UpstreamsConfig } from "./config.ts";
import { TargetStatePool } from "./target_state.ts";
import { Upstream } from "./upstream.ts";

/** A prepared set of upstreams: readable before commit, by the route table being built. */
export interface PreparedUpstreams extends Change {
  readonly upstreams: ReadonlyMap<string, Upstream>;
}

/**
 * The serving upstreams.
 *
 * @example
 * ```ts
 * import { createHttp1Client } from "./http1_client.ts";
 * import { UpstreamsConfig } from "./config.ts";
 * import { UpstreamSet } from "./set.ts";
 * const client = createHttp1Client();
 * const set = new UpstreamSet(client);
 * const change = await set.prepare(
 *   UpstreamsConfig.parse({ api: { targets: ["http://127.0.0.1:9000"] } }),
 * );
 * await change.commit();
 * set.get("api")?.pick()?.release();
 * await set.stop();
 * client.close();
 * ```
 */
export class UpstreamSet implements Participant<UpstreamsConfig> {
  /** Every target's state for the life of the process, shared by the upstreams of each config. */
  readonly states = new TargetStatePool();
  #serving = new Map<string, Upstream>();

  constructor(readonly client: UpstreamClient) {}

  /** The serving upstream called `name`. */
  get(name: string): Upstream | undefined {
    return this.#serving.get(name);
  }

  /** The serving upstreams, for status and metrics. */
  entries(): [string, Upstream][] {
    return [...this.#serving];
  }

  /** Builds the upstreams of `config`; health checks start at commit. */
  prepare(config: UpstreamsConfig): Promise<PreparedUpstreams> {
    const upstreams = new Map(
      Object.entries(config).map((
        [name, entry],
      ) => [name, new Upstream(name, entry, this.client, this.states)]),
    );
    return Promise.resolve({
      upstreams,
      commit: () => {
        const previous = this.#serving;
        this.#serving = upstreams;
        for (const upstream of upstreams.values()) upstream.start();
        for (const upstream of previous.values()) void upstream.stop();
      },
      abort: () => Promise.all([...upstreams.values()].map((u) => u.stop())).then(() => {}),
    });
  }

  /** Stops the health checks of the serving upstreams. */
  async stop(): Promise<void> {
    await Promise.all([...this.#serving.values()].map((upstream) => upstream.stop()));
  }
}
