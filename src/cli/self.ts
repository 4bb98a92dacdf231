/**
 * The argv that runs this same CLI again: the compiled binary itself, or
 * `deno run` with the runtime flags of build.ts and this checkout's `main.ts`.
 * `gateway start` spawns the daemon with it and `gateway service install`
 * writes it into the unit's `ExecStart`.
 *
 * build.ts is safe to import here: its top level only defines constants, and
 * its commands run under `import.meta.main` alone.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { RUNTIME_FLAGS } from "../../build.ts";

/**
 * The absolute argv before a command (`run`, `check`, ...) that runs this CLI.
 *
 * @example
 * ```ts
 * import { selfCommand } from "./self.ts";
 * const [cmd, ...args] = selfCommand();
 * await new Deno.Command(cmd, { args: [...args, "version"] }).output();
 * ```
 */
export function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  return [
    Deno.execPath(),
    "run",
    ...RUNTIME_FLAGS,
    fileURLToPath(new URL("../../main.ts", import.meta.url)),
  ];
}
