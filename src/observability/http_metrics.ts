/**
 * The metrics of HTTP traffic, with labelled children cached so that
 * recording a request is a map lookup and a few additions.
 *
 * @module
 */

import type { CounterValue, GaugeValue, HistogramValue, MetricsRegistry } from "./metrics.ts";

/**
 * Requests by listener, route and status; latency by listener and route;
 * in-flight requests per listener; rate-limit rejections and WebSocket slow
 * consumers per route.
 *
 * @example
 * ```ts
 * import { HttpMetrics } from "./http_metrics.ts";
 * import { MetricsRegistry } from "./metrics.ts";
 * const metrics = new HttpMetrics(new MetricsRegistry());
 * metrics.record("web", "api", 200, 0.004);
 * ```
 */
export class HttpMetrics {
  readonly #requests;
  readonly #duration;
  readonly #inFlight;
  readonly #rateLimited;
  readonly #slowConsumers;
  readonly #cache = new Map<string, { count: CounterValue; duration: HistogramValue }>();

  constructor(registry: MetricsRegistry) {
    this.#requests = registry.counter(
      "gateway_http_requests_total",
      "HTTP requests answered, by listener, route and status.",
      ["listener", "route", "status"],
    );
    this.#duration = registry.histogram(
      "gateway_http_request_duration_seconds",
      "Time from request to response headers, by listener and route.",
      ["listener", "route"],
    );
    this.#inFlight = registry.gauge(
      "gateway_http_requests_in_flight",
      "HTTP requests being handled, by listener.",
      ["listener"],
    );
    this.#rateLimited = registry.counter(
      "gateway_rate_limited_total",
      "Requests refused with 429, by route and limit scope (client or route).",
      ["route", "scope"],
    );
    this.#slowConsumers = registry.counter(
      "gateway_websocket_slow_consumers_total",
      "WebSocket clients closed (1008) for falling too far behind, by route.",
      ["route"],
    );
  }

  /** Counts one answered request. */
  record(listener: string, route: string, status: number, seconds: number): void {
    const key = `${listener}\0${route}\0${status}`;
    let entry = this.#cache.get(key);
    if (!entry) {
      entry = {
        count: this.#requests.labels({ listener, route, status: String(status) }),
        duration: this.#duration.labels({ listener, route }),
      };
      this.#cache.set(key, entry);
    }
    entry.count.inc();
    entry.duration.observe(seconds);
  }

  /** The in-flight gauge of a listener. */
  inFlight(listener: string): GaugeValue {
    return this.#inFlight.labels({ listener });
  }

  /** The counter of WebSocket clients of a route closed as slow consumers. */
  slowConsumers(route: string): CounterValue {
    return this.#slowConsumers.labels({ route });
  }

  /** The rejection counter of a route and scope. */
  rateLimited(route: string, scope: "client" | "route"): CounterValue {
    return this.#rateLimited.labels({ route, scope });
  }
}
