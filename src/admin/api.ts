/**
 * The admin API: status, reload, config, metrics, health, stop, live
 * connections and the last failures by request id (`GET /errors`,
 * `GET /errors/:requestId`, with their detail and stack), behind a bearer token. `/healthz` and `/readyz` are open so
 * that probes need no secret.
 *
 * @module
 */

import { Hono } from "hono";
import type { ConnectionInfo } from "../connections/connection.ts";
import type { GatewayModule } from "../module.ts";
import { errorResponse, GatewayError, recentErrors } from "../errors.ts";
import { timingSafeEqual } from "../util/timing_safe_equal.ts";

/** What the admin API can ask of the running gateway. */
export interface AdminControls {
  /** Version, uptime, config hash, listeners, routes, upstream health. */
  status(): Record<string, unknown>;
  /** Re-reads the config file and applies it; rejects with the reasons when it cannot. */
  reload(): Promise<{ hash: string; changed: boolean }>;
  /** The config document as written, secrets redacted. */
  config(): unknown;
  /** Prometheus text. */
  metrics(): string;
  /** True once every module has started, false while stopping. */
  ready(): boolean;
  /** Begins a graceful stop. */
  stop(): void;
  /** The live connections (WebSocket, TCP, UDP peers, Unix), of one listener and/or one device. */
  connections(filter: { listener?: string; deviceId?: string }): ConnectionInfo[];
  /** Closes a connection; false when no live connection has that id. */
  closeConnection(id: string): boolean;
  /** The modules whose own endpoints (`/plugins`, `/workers`, ...) the API serves. */
  modules: readonly GatewayModule[];
}

/**
 * Builds the admin API handler.
 *
 * @example
 * ```ts
 * import { createAdminApp } from "./api.ts";
 * const app = createAdminApp({
 *   status: () => ({}),
 *   reload: () => Promise.resolve({ hash: "abc", changed: false }),
 *   config: () => ({}),
 *   metrics: () => "",
 *   ready: () => true,
 *   stop: () => {},
 *   connections: () => [],
 *   closeConnection: () => false,
 *   modules: [],
 * }, "a-token-of-16-chars-or-more");
 * const res = await app.fetch(new Request("http://admin/healthz"));
 * ```
 */
export function createAdminApp(controls: AdminControls, token: string): Hono {
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get(
    "/readyz",
    (c) => controls.ready() ? c.json({ status: "ready" }) : c.json({ status: "not ready" }, 503),
  );

  app.use(async (c, next) => {
    // Browsers name the page's origin; no web page of another origin may drive the API.
    const origin = c.req.header("origin");
    if (origin !== undefined && origin !== new URL(c.req.url).origin) {
      return errorResponse(
        new GatewayError(403, "cross_origin", "the admin API refuses requests from other origins"),
      );
    }
    const header = c.req.header("authorization") ?? "";
    const given = /^bearer +/i.test(header) ? header.replace(/^bearer +/i, "") : "";
    if (!given) {
      return errorResponse(
        new GatewayError(
          401,
          "unauthorized",
          "the admin API needs 'Authorization: Bearer <token>'",
          {
            headers: {
              "www-authenticate": 'Bearer realm="gateway-admin"',
            },
          },
        ),
      );
    }
    if (!timingSafeEqual(given, token)) {
      return errorResponse(new GatewayError(403, "forbidden", "the admin token is wrong"));
    }
    await next();
  });

  app.get("/status", (c) => c.json(controls.status()));
  app.get("/config", (c) => c.json(controls.config()));
  app.get(
    "/metrics",
    (c) =>
      c.body(controls.metrics(), 200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
      }),
  );
  app.post("/reload", async (c) => {
    try {
      return c.json({ status: "ok", ...(await controls.reload()) });
    } catch (error) {
      const problems = (error as { problems?: string[] }).problems ?? [(error as Error).message];
      return c.json({
        status: "refused",
        error: { status: 422, code: "reload_failed", message: problems.join("\n"), problems },
      }, 422);
    }
  });
  app.get("/connections", (c) =>
    c.json(controls.connections({
      listener: c.req.query("listener") || undefined,
      deviceId: c.req.query("device") || undefined,
    })));
  app.delete("/connections/:id", (c) => {
    const id = c.req.param("id");
    if (!controls.closeConnection(id)) {
      return errorResponse(
        new GatewayError(404, "unknown_connection", `no live connection has the id "${id}"`),
      );
    }
    return c.body(null, 204);
  });
  app.get("/errors", (c) => c.json({ errors: recentErrors.list() }));
  app.get("/errors/:requestId", (c) => {
    const record = recentErrors.get(c.req.param("requestId"));
    return record ? c.json(record) : errorResponse(
      new GatewayError(404, "unknown_request", "no failure is kept for that request id"),
    );
  });
  for (const module of controls.modules) module.admin?.(app);
  app.post("/stop", (c) => {
    setTimeout(() => controls.stop(), 10);
    return c.json({ status: "stopping" }, 202);
  });
  app.notFound((c) =>
    errorResponse(
      new GatewayError(404, "no_route", `no admin endpoint ${c.req.method} ${c.req.path}`),
    )
  );
  return app;
}
