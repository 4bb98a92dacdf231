/**
 * The gateway's config document: every section, each owned by its feature
 * folder, in the order `gateway schema` lists them. `src/config/` validates
 * and loads a document from these without knowing any of them.
 *
 * @module
 */

import { adminSection } from "./admin/config.ts";
import { loadConfig, type LoadedConfig } from "./config/load.ts";
import { type DocumentOf, documentSchema } from "./config/section.ts";
import { listenersSection } from "./listeners/config.ts";
import { inferenceSection, modelsSection, ocrSection } from "./models/config.ts";
import { mqttSection } from "./mqtt/config.ts";
import { logSection } from "./observability/config.ts";
import { pluginsSection } from "./plugins/config.ts";
import { routesSection } from "./router/config.ts";
import { securitySection } from "./security/config.ts";
import { storageSection } from "./storage/config.ts";
import { upstreamsSection } from "./upstreams/config.ts";
import { workersSection } from "./workers/config.ts";

/** Every section of the config document, by key. */
export const SECTIONS = {
  listeners: listenersSection,
  routes: routesSection,
  upstreams: upstreamsSection,
  plugins: pluginsSection,
  admin: adminSection,
  log: logSection,
  security: securitySection,
  storage: storageSection,
  mqtt: mqttSection,
  workers: workersSection,
  models: modelsSection,
  inference: inferenceSection,
  ocr: ocrSection,
};

/** The validated config document. */
export type GatewayConfig = DocumentOf<typeof SECTIONS>;

/**
 * The whole document as one zod schema: what `gateway schema` prints as
 * JSON Schema for editors, and a quick way to build a config in tests. It
 * checks each section's own schema, not cross-references: use
 * {@link loadGatewayConfig} (or `validateDocument`) for those.
 *
 * @example
 * ```ts
 * import { GatewayConfig } from "./sections.ts";
 * const config = GatewayConfig.parse({ listeners: { web: { type: "http", port: 8080 } } });
 * config.admin.port; // 9901
 * ```
 */
export const GatewayConfig = documentSchema(SECTIONS);

/**
 * Loads and validates the gateway's config file; throws a `ConfigError`
 * listing every problem with its file and JSON path.
 *
 * @example
 * ```ts
 * import { loadGatewayConfig } from "./sections.ts";
 * const { config, hash } = await loadGatewayConfig("config/config.json");
 * console.log(Object.keys(config.listeners), hash);
 * ```
 */
export function loadGatewayConfig(
  path: string,
  env?: (name: string) => string | undefined,
): Promise<LoadedConfig<GatewayConfig>> {
  return loadConfig(path, SECTIONS, { env });
}

/**
 * Loads the gateway's config file as {@link loadGatewayConfig} does and also
 * looks at the plugins directory (`gateway check`): plugin names must be
 * files there, and the functions routes call must be served by a plugin
 * there, a worker or a model of the config.
 *
 * @example
 * ```ts
 * import { checkGatewayConfig } from "./sections.ts";
 * const { hash } = await checkGatewayConfig("config/config.json");
 * console.log(hash);
 * ```
 */
export function checkGatewayConfig(
  path: string,
  env?: (name: string) => string | undefined,
): Promise<LoadedConfig<GatewayConfig>> {
  return loadConfig(path, SECTIONS, { env, discover: true });
}
