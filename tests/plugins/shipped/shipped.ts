/**
 * What the shipped plugins' tests share: the plugins' real sources copied
 * into the gateway's directory, an echo upstream, and a config with one HTTP
 * listener proxying to it.
 *
 * @module
 */

import { join } from "node:path";
import { type GatewayProcess, startGateway } from "../../helpers/gateway.ts";
import { serveTarget, type TestServer } from "../../helpers/test_server.ts";

const PLUGINS_DIR = join(import.meta.dirname!, "..", "..", "..", "plugins");

/** What the echo upstream saw of a request. */
export interface Echo {
  method: string;
  /** Path and query as they arrived. */
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * An upstream that answers every request with {@link Echo} as JSON, or with
 * what `answer` returns for it.
 *
 * @example
 * ```ts
 * import { echoUpstream } from "./shipped.ts";
 * await using upstream = echoUpstream();
 * ```
 */
export function echoUpstream(
  answer?: (request: Request, echo: Echo) => Response | undefined,
): TestServer & { seen: Echo[] } {
  const seen: Echo[] = [];
  const server = serveTarget(async (c) => {
    const request = c.req.raw;
    const url = new URL(request.url);
    const echo = {
      method: request.method,
      url: url.pathname + url.search,
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
    };
    seen.push(echo);
    return answer?.(request, echo) ?? Response.json(echo);
  });
  return Object.assign(server, { seen });
}

/**
 * Starts the real gateway with the named shipped plugins copied from
 * `plugins/` into its plugins directory, one listener on a free port, an
 * upstream `api` at `upstreamUrl`, and `config` merged over that (`routes`,
 * `plugins` and so on).
 *
 * @example
 * ```ts
 * import { echoUpstream, gatewayWith } from "./shipped.ts";
 * await using upstream = echoUpstream();
 * const { gateway, url } = await gatewayWith(["request-id"], upstream.url, {
 *   routes: [{ name: "api", plugins: ["request-id"], target: { upstream: "api" } }],
 * });
 * await fetch(`${url}/`);
 * await gateway.stop();
 * ```
 */
export async function gatewayWith(
  plugins: string[],
  upstreamUrl: string,
  config: Record<string, unknown>,
  options: { env?: Record<string, string>; noWait?: boolean } = {},
): Promise<{ gateway: GatewayProcess; url: string }> {
  const files: Record<string, string> = {};
  for (const name of plugins) {
    files[`plugins/${name}.ts`] = await Deno.readTextFile(join(PLUGINS_DIR, `${name}.ts`));
  }
  const gateway = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    upstreams: { api: { targets: [upstreamUrl], retries: 0 } },
    ...config,
  }, { files, ...options });
  // The port "web" bound; a start with noWait (meant to fail) has none to ask for.
  const port = options.noWait ? 0 : await gateway.port("web");
  return { gateway, url: `http://127.0.0.1:${port}` };
}

/**
 * The value of a Prometheus sample in the admin API's `/metrics`, or 0 when
 * it is absent. `labels` must be written as the exposition writes them.
 *
 * @example
 * ```ts
 * import { echoUpstream, gatewayWith, metric } from "./shipped.ts";
 * await using upstream = echoUpstream();
 * const { gateway } = await gatewayWith(["cache"], upstream.url, { routes: [] });
 * await metric(gateway, 'gateway_plugin_cache_hits_total{plugin="cache",route="api"}'); // 0
 * await gateway.stop();
 * ```
 */
export async function metric(gateway: GatewayProcess, sample: string): Promise<number> {
  const text = await (await gateway.admin("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}
