/**
 * Load balancing: which of an upstream's targets takes the next request.
 * Every algorithm picks only among targets that are available now and not
 * in the caller's `exclude` set (the targets a retry has already tried).
 *
 * @module
 */

import type { UpstreamConfig } from "./config.ts";

/** The balancing algorithms an upstream can use. */
export type BalanceAlgorithm = UpstreamConfig["balance"];

/** What a balancer needs to know about a target. */
export interface BalancedTarget {
  /** Relative share of requests (weighted) or tie-breaker (least-connections). */
  readonly weight: number;
  /** Requests being served now (least-connections). */
  readonly inFlight: number;
  /** Whether the target may take a request now (healthy, breaker not open). */
  isAvailable(): boolean;
}

/** Chooses targets for requests. */
export interface Balancer<T extends BalancedTarget> {
  /** The next target, or undefined when none is available outside `exclude`. */
  pick(exclude?: ReadonlySet<T>): T | undefined;
}

/** Each available target in turn, ignoring weights. */
class RoundRobinBalancer<T extends BalancedTarget> implements Balancer<T> {
  #next = 0;

  constructor(private readonly targets: readonly T[]) {}

  pick(exclude?: ReadonlySet<T>): T | undefined {
    const count = this.targets.length;
    for (let step = 0; step < count; step++) {
      const index = (this.#next + step) % count;
      const target = this.targets[index];
      if (exclude?.has(target) || !target.isAvailable()) continue;
      this.#next = (index + 1) % count;
      return target;
    }
    return undefined;
  }
}

/**
 * Smooth weighted round-robin, as nginx does it: every pick adds each
 * candidate's weight to its score, takes the highest score and subtracts the
 * candidates' total weight from it. Weights 5:1:1 give a a b a c a a, not
 * five a's in a row.
 */
class WeightedBalancer<T extends BalancedTarget> implements Balancer<T> {
  readonly #scores: number[];

  constructor(private readonly targets: readonly T[]) {
    this.#scores = targets.map(() => 0);
  }

  pick(exclude?: ReadonlySet<T>): T | undefined {
    let best = -1;
    let totalWeight = 0;
    for (let index = 0; index < this.targets.length; index++) {
      const target = this.targets[index];
      if (exclude?.has(target) || !target.isAvailable()) continue;
      this.#scores[index] += target.weight;
      totalWeight += target.weight;
      if (best === -1 || this.#scores[index] > this.#scores[best]) best = index;
    }
    if (best === -1) return undefined;
    this.#scores[best] -= totalWeight;
    return this.targets[best];
  }
}

/**
 * The target with the fewest requests in flight; among equals the heavier
 * one, and among those the next in round-robin order.
 */
class LeastConnectionsBalancer<T extends BalancedTarget> implements Balancer<T> {
  #next = 0;

  constructor(private readonly targets: readonly T[]) {}

  pick(exclude?: ReadonlySet<T>): T | undefined {
    const count = this.targets.length;
    let best: T | undefined;
    let bestIndex = 0;
    for (let step = 0; step < count; step++) {
      const index = (this.#next + step) % count;
      const target = this.targets[index];
      if (exclude?.has(target) || !target.isAvailable()) continue;
      if (
        best === undefined || target.inFlight < best.inFlight ||
        (target.inFlight === best.inFlight && target.weight > best.weight)
      ) {
        best = target;
        bestIndex = index;
      }
    }
    if (best !== undefined) this.#next = (bestIndex + 1) % count;
    return best;
  }
}

/**
 * Creates the balancer for an algorithm over a fixed list of targets.
 *
 * @example
 * ```ts
 * import { createBalancer } from "./balancer.ts";
 * const targets = ["a", "b"].map((name) => ({
 *   name,
 *   weight: 1,
 *   inFlight: 0,
 *   isAvailable: () => true,
 * }));
 * const balancer = createBalancer("round-robin", targets);
 * balancer.pick()?.name; // "a"
 * balancer.pick()?.name; // "b"
 * balancer.pick(new Set([targets[0]]))?.name; // "b"
 * ```
 */
export function createBalancer<T extends BalancedTarget>(
  algorithm: BalanceAlgorithm,
  targets: readonly T[],
): Balancer<T> {
  switch (algorithm) {
    case "round-robin":
      return new RoundRobinBalancer(targets);
    case "weighted":
      return new WeightedBalancer(targets);
    case "least-connections":
      return new LeastConnectionsBalancer(targets);
  }
}
