/**
 * Builds a module's config slice and prepare context from a config document
 * the way the gateway does (every section validated, cross-references
 * checked), for tests that prepare one module on its own.
 *
 * @module
 */

import { validateDocument } from "../../src/config/load.ts";
import type { PrepareContext } from "../../src/module.ts";
import { type GatewayConfig, SECTIONS } from "../../src/sections.ts";

/**
 * The validated config of `document` and a prepare context for it; throws
 * with every problem when the document is invalid.
 *
 * @example
 * ```ts
 * import { configFor } from "./config.ts";
 * const { config, context } = configFor({ workers: [] }, { dataDir: "/tmp/gw" });
 * config.workers; // []
 * context.starting; // true
 * ```
 */
export function configFor(
  document: Record<string, unknown>,
  options: { dataDir?: string; starting?: boolean } = {},
): { config: GatewayConfig; context: PrepareContext } {
  const { config, references, problems } = validateDocument(document, SECTIONS);
  if (!config) {
    throw new Error(problems.map((p) => `${p.path.join(".")}: ${p.message}`).join("\n"));
  }
  const dataDir = options.dataDir ?? config.storage.dataDir;
  return { config, context: { starting: options.starting ?? true, dataDir, references } };
}
