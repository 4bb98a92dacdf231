/**
 * Starts a real Mosquitto (from the Debian package) on a free port with its
 * own config and directory, for the MQTT tests and benchmarks. Never uses the
 * system service's port 1883.
 *
 * @module
 */

import { join } from "node:path";

/** A Mosquitto process started by a test. */
export class Mosquitto {
  #child?: Deno.ChildProcess;
  #output = "";

  private constructor(readonly port: number, readonly dir: string) {}

  /**
   * Writes a config (persistence in its own directory, unlimited queues) and
   * starts `mosquitto` on `port`, waiting until it accepts connections.
   *
   * @example
   * ```ts
   * import { Mosquitto } from "./mosquitto.ts";
   * import { freePort } from "../helpers/gateway.ts";
   * const broker = await Mosquitto.start(freePort());
   * await broker.remove();
   * ```
   */
  static async start(port: number, extra: string[] = []): Promise<Mosquitto> {
    const dir = await Deno.makeTempDir({ prefix: "mosquitto-test-" });
    const broker = new Mosquitto(port, dir);
    await Deno.writeTextFile(
      join(dir, "mosquitto.conf"),
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        "persistence true",
        `persistence_location ${dir}/`,
        "autosave_interval 1",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        "log_dest stderr",
        "log_type error",
        // As root (CI), mosquitto would switch to user "mosquitto", which cannot write here.
        ...(Deno.uid() === 0 ? ["user root"] : []),
        ...extra,
        "",
      ].join("\n"),
    );
    await broker.resume();
    return broker;
  }

  /** The process id of the running broker. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process again (after {@link stop}) on the same port and directory. */
  async resume(): Promise<void> {
    this.#child = new Deno.Command("mosquitto", {
      args: ["-c", join(this.dir, "mosquitto.conf")],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const child = this.#child;
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) this.#output += decoder.decode(chunk);
    })();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
        conn.close();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error(`mosquitto did not start on port ${this.port}: ${this.#output}`);
  }

  /** Stops the process (SIGTERM: it saves its sessions); the directory stays. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child) return;
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
  }

  /** Stops the process and removes its directory. */
  async remove(): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
