/**
 * Claiming a Unix socket path before binding it: a socket file left behind
 * by a process that died is removed; a live one, or a file that is not a
 * socket, is refused with an error that says so.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { ListenError } from "./listen_error.ts";

const logger = getLogger(["gateway", "listener"]);

/**
 * Makes `path` free to bind: removes it when it is a socket nobody answers
 * on; throws a {@link ListenError} (prefixed with `label`) when another
 * process answers on it or the path is not a socket.
 *
 * @example
 * ```ts
 * import { claimSocketPath } from "./unix_socket.ts";
 * const path = `${Deno.makeTempDirSync()}/gateway.sock`;
 * await claimSocketPath(path, 'listener "local"');
 * ```
 */
export async function claimSocketPath(path: string, label: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new ListenError(`${label}: cannot inspect ${path}: ${(error as Error).message}`);
  }
  if (!info.isSocket) {
    throw new ListenError(`${label}: ${path} exists and is not a socket; not removing it`);
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) {
      throw new ListenError(
        `${label}: cannot tell whether ${path} is in use: ${(error as Error).message}`,
        { cause: error },
      );
    }
    await Deno.remove(path);
    logger.info("{listener}: removed stale socket file {path}", { listener: label, path });
    return;
  }
  throw new ListenError(`${label}: another process is listening on ${path}`);
}
