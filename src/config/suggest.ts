/**
 * "Did you mean" for config problems: the known word closest to a
 * misspelled key, name or value, by edit distance (Damerau-Levenshtein,
 * optimal string alignment: insert, delete, replace, swap two neighbours).
 *
 * @module
 */

/**
 * The number of edits that turn `a` into `b`; a swap of two neighbouring
 * characters is one edit, letter case is ignored.
 *
 * @example
 * ```ts
 * import { editDistance } from "./suggest.ts";
 * editDistance("prot", "port"); // 1
 * editDistance("deviceID", "deviceId"); // 0
 * editDistance("readings", "reading"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  // rows[i][j]: the distance between a's first i characters and b's first j.
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}

/**
 * The candidate `word` is most likely a misspelling of: the closest one at
 * most 2 edits away and at most a third of `word`'s length (at least 1
 * edit), the first of equally close ones. Undefined when none is that close
 * or `word` is itself a candidate.
 *
 * @example
 * ```ts
 * import { closest } from "./suggest.ts";
 * closest("hots", ["host", "port"]); // "host"
 * closest("xyz", ["host", "port"]); // undefined
 * ```
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(2, Math.max(1, Math.floor(word.length / 3)));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    if (candidate === word) return undefined;
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/**
 * ` (did you mean "x"?)` for the candidate closest to `word`, or an empty
 * string: the tail of a problem message.
 *
 * @example
 * ```ts
 * import { didYouMean } from "./suggest.ts";
 * `unknown upstream "apii"${didYouMean("apii", ["api", "auth"])}`;
 * // 'unknown upstream "apii" (did you mean "api"?)'
 * didYouMean("{deviceID}", ["{deviceId}"], (s) => s); // " (did you mean {deviceId}?)"
 * ```
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
  show: (candidate: string) => string = (candidate) => JSON.stringify(candidate),
): string {
  const suggestion = closest(word, candidates);
  return suggestion === undefined ? "" : ` (did you mean ${show(suggestion)}?)`;
}
