/**
 * Runs the Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`)
 * for the MQTT integration tests.
 *
 * @module
 */

/** What a finished client printed and how it exited. */
export interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `mosquitto_pub` or `mosquitto_sub` to completion (give `mosquitto_sub`
 * `-C <count>` and `-W <seconds>`).
 *
 * @example
 * ```ts
 * import { mosquitto } from "./clients.ts";
 * const result = await mosquitto("mosquitto_pub", ["-p", "1883", "-t", "a", "-m", "x"]);
 * ```
 */
export async function mosquitto(
  command: "mosquitto_pub" | "mosquitto_sub",
  args: string[],
): Promise<ClientResult> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Starts `mosquitto_sub` in the background and resolves once it has
 * subscribed (it is given `-d` and the SUBACK line is awaited); `result`
 * settles when it exits.
 *
 * @example
 * ```ts
 * import { subscriber } from "./clients.ts";
 * const sub = await subscriber(["-p", "1883", "-t", "a/#", "-C", "1", "-W", "10", "-v"]);
 * console.log((await sub.result).stdout);
 * ```
 */
export async function subscriber(args: string[]): Promise<{ result: Promise<ClientResult> }> {
  // Line-buffered: piped, mosquitto_sub would hold its SUBACK line back until it exits.
  const child = new Deno.Command("stdbuf", {
    args: ["-oL", "mosquitto_sub", "-d", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const decoder = new TextDecoder();
  let stdout = "";
  const subscribed = Promise.withResolvers<void>();
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      stdout += decoder.decode(chunk, { stream: true });
      if (stdout.includes("SUBACK")) subscribed.resolve();
    }
  })();
  const stderr = new Response(child.stderr).text();
  const result = (async () => {
    const status = await child.status;
    await reading;
    subscribed.resolve();
    const lines = stdout.split("\n").filter((line) =>
      !/^Client \S+ (sending|received) /.test(line) && !/^Subscribed \(mid/.test(line)
    );
    return { code: status.code, stdout: lines.join("\n"), stderr: await stderr };
  })();
  await subscribed.promise;
  return { result };
}
