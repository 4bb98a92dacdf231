/**
 * The `storage` section: where the gateway keeps its state.
 *
 * @module
 */

import { resolve } from "node:path";
import { z } from "zod";
import type { ConfigSection } from "../config/section.ts";

/** Where the gateway keeps state. */
export const StorageConfig = z.strictObject({
  dataDir: z.string().default("data").describe("relative to the config file"),
});

/** The validated `storage` section. */
export type StorageConfig = z.output<typeof StorageConfig>;

/** The `storage` section; `dataDir` is made absolute. */
export const storageSection = {
  schema: StorageConfig.prefault({}),
  resolve(storage, { dir }) {
    storage.dataDir = resolve(dir, storage.dataDir);
  },
} satisfies ConfigSection<z.ZodPrefault<typeof StorageConfig>>;
