/**
 * The `admin` section: where the admin API listens and its token.
 *
 * @module
 */

import { z } from "zod";
import { Port } from "../config/fields.ts";
import type { ConfigSection } from "../config/section.ts";

/**
 * Whether a listen address is reachable only from this machine.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./config.ts";
 * isLoopback("127.0.0.1"); // true
 * isLoopback("0.0.0.0"); // false
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The admin API listener. */
export const AdminConfig = z.strictObject({
  enabled: z.boolean().default(true),
  host: z.string().default("127.0.0.1"),
  port: Port.default(9901),
  token: z.string().min(16, "an admin token has at least 16 characters").optional().describe(
    "bearer token; when absent on loopback one is generated into the data directory",
  ),
}).superRefine((admin, ctx) => {
  if (admin.enabled && admin.token === undefined && !isLoopback(admin.host)) {
    ctx.addIssue({
      code: "custom",
      path: ["token"],
      message:
        `a token is required when the admin API listens on ${admin.host}, which is not loopback`,
    });
  }
});

/** The validated `admin` section. */
export type AdminConfig = z.output<typeof AdminConfig>;

/** The `admin` section. */
export const adminSection = { schema: AdminConfig.prefault({}) } satisfies ConfigSection;
