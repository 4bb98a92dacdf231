/**
 * Where each value of a JSON document is written, by JSON path, so that a
 * problem at `routes[3].target.upstream` can say `config.json:41:9`.
 *
 * @module
 */

/** A place in a text: line and column, both from 1. */
export interface Position {
  line: number;
  column: number;
}

const WHITESPACE = /[ \t\r\n]/;

/**
 * The line and column of a character offset in `text`.
 *
 * @example
 * ```ts
 * import { positionAt } from "./json_positions.ts";
 * positionAt('{\n  "a": 1\n}', 4); // { line: 2, column: 3 }
 * ```
 */
export function positionAt(text: string, offset: number): Position {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}

/**
 * The positions of a JSON text that `JSON.parse` accepts: an object member is
 * where its key is written, an array item where it starts.
 *
 * @example
 * ```ts
 * import { JsonPositions } from "./json_positions.ts";
 * const positions = new JsonPositions('{\n  "routes": [\n    { "name": "a" }\n  ]\n}');
 * positions.at(["routes", 0, "name"]); // { line: 3, column: 7 }
 * positions.at(["routes", 0, "target"]); // { line: 3, column: 5 }: its object, as it is not written
 * ```
 */
export class JsonPositions {
  readonly #offsets = new Map<string, number>();

  /** @param prefix the JSON path of the text's root in the whole document (an included section's key) */
  constructor(readonly text: string, readonly prefix: readonly PropertyKey[] = []) {
    this.#value(this.#skip(0), [...prefix], true);
  }

  /**
   * Where `path` is written, or else the nearest enclosing value that is (a
   * missing key is reported at its object); the text's start when the path is
   * outside it.
   */
  at(path: readonly PropertyKey[]): Position {
    for (let length = path.length; length >= 0; length--) {
      const offset = this.#offsets.get(key(path.slice(0, length)));
      if (offset !== undefined) return positionAt(this.text, offset);
    }
    return { line: 1, column: 1 };
  }

  #skip(i: number): number {
    while (i < this.text.length && WHITESPACE.test(this.text[i])) i++;
    return i;
  }

  /** The offset just past the string that starts at `i`. */
  #stringEnd(i: number): number {
    for (i++; this.text[i] !== '"'; i++) if (this.text[i] === "\\") i++;
    return i + 1;
  }

  /**
   * Records what the value at `i` holds (and, unless it is an object member,
   * recorded at its key, the value itself) under `path`; returns the offset
   * past it. A repeated key is recorded where it is last written, as
   * `JSON.parse` keeps the last one.
   */
  #value(i: number, path: PropertyKey[], record: boolean): number {
    if (record) this.#offsets.set(key(path), i);
    const open = this.text[i];
    if (open === '"') return this.#stringEnd(i);
    if (open !== "{" && open !== "[") {
      while (i < this.text.length && !/[,\]} \t\r\n]/.test(this.text[i])) i++;
      return i;
    }
    const close = open === "{" ? "}" : "]";
    i = this.#skip(i + 1);
    for (let index = 0; this.text[i] !== close; index++) {
      let member: PropertyKey = index;
      if (open === "{") {
        const end = this.#stringEnd(i);
        member = JSON.parse(this.text.slice(i, end)) as string;
        this.#offsets.set(key([...path, member]), i);
        i = this.#skip(this.#skip(end) + 1); // past the ':'
      }
      i = this.#skip(this.#value(i, [...path, member], open === "["));
      if (this.text[i] === ",") i = this.#skip(i + 1);
    }
    return i + 1;
  }
}

function key(path: readonly PropertyKey[]): string {
  return JSON.stringify(path.map((part) => typeof part === "number" ? part : String(part)));
}
