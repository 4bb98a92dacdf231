/**
 * The daemon's log file: rotated by size, printed and followed by
 * `gateway logs`.
 *
 * The daemon's stdout and stderr are the file itself (opened for appending by
 * `gateway start`), so rotation copies and truncates it: the copy becomes
 * `gateway.log.1` (older ones shift up to `.3`) and the process keeps writing
 * at the start of the emptied file.
 *
 * @module
 */

/** How many rotated files are kept (`.1` newest). */
export const ROTATED_FILES = 3;

/** How often the running daemon looks at its log's size. */
const ROTATE_CHECK_MS = 5000;

/**
 * Rotates `file` when it is larger than `maxBytes`; true when it did.
 *
 * @example
 * ```ts
 * import { rotateLog } from "./log_file.ts";
 * await rotateLog("data/gateway.log", 10 * 1024 * 1024);
 * ```
 */
export async function rotateLog(file: string, maxBytes: number): Promise<boolean> {
  const size = await Deno.stat(file).then((info) => info.size, () => 0);
  if (size <= maxBytes) return false;
  for (let n = ROTATED_FILES - 1; n >= 1; n--) {
    await Deno.rename(`${file}.${n}`, `${file}.${n + 1}`).catch(() => {});
  }
  await Deno.copyFile(file, `${file}.1`);
  await Deno.truncate(file, 0);
  return true;
}

/**
 * Keeps `file` rotated while the process runs (`gateway run --log-file`);
 * returns the function that stops it.
 *
 * @example
 * ```ts
 * import { keepRotated } from "./log_file.ts";
 * const stop = keepRotated("data/gateway.log", 10 * 1024 * 1024);
 * stop();
 * ```
 */
export function keepRotated(file: string, maxBytes: number): () => void {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    rotateLog(file, maxBytes).catch(() => {}).finally(() => busy = false);
  }, ROTATE_CHECK_MS);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/**
 * The last `count` lines of `text` (a trailing newline ends the last line).
 *
 * @example
 * ```ts
 * import { lastLines } from "./log_file.ts";
 * lastLines("a\nb\nc\n", 2); // "b\nc\n"
 * ```
 */
export function lastLines(text: string, count: number): string {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.length === 0 ? "" : `${lines.slice(-count).join("\n")}\n`;
}

/**
 * `gateway logs`: prints the last `count` lines of `file`; with `follow`,
 * then what is appended, until interrupted (starting over when the file is
 * rotated).
 *
 * @example
 * ```ts
 * import { printLog } from "./log_file.ts";
 * await printLog("data/gateway.log", 100, false);
 * ```
 */
export async function printLog(file: string, count: number, follow: boolean): Promise<void> {
  const text = await Deno.readTextFile(file);
  await Deno.stdout.write(new TextEncoder().encode(lastLines(text, count)));
  if (!follow) return;
  let offset = new TextEncoder().encode(text).length;
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const size = await Deno.stat(file).then((info) => info.size, () => 0);
    if (size < offset) offset = 0;
    if (size > offset) {
      using handle = await Deno.open(file);
      await handle.seek(offset, Deno.SeekMode.Start);
      for (let n; (n = await handle.read(buffer)) !== null;) {
        await Deno.stdout.write(buffer.subarray(0, n));
        offset += n;
      }
    } else await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
