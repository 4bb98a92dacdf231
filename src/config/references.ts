/**
 * The names a config document defines, by kind (`upstream`, `plugin`,
 * `worker`, `model`, `address`, ...), with the JSON path that defines each.
 * Sections declare what they define; other sections check their references
 * against it, and modules read the few cross-references they need from it,
 * so no section reads another section's value.
 *
 * @module
 */

import { didYouMean } from "./suggest.ts";

/** A name a section defines, and where it is written. */
export interface Definition {
  name: string;
  /** JSON path of the definition, such as `["upstreams", "api"]`. */
  path: readonly PropertyKey[];
  /** What it is, for messages about it (a listener's type, say). */
  detail?: string;
}

/**
 * The names defined across a document.
 *
 * @example
 * ```ts
 * import { References } from "./references.ts";
 * const refs = new References({ upstream: [{ name: "api", path: ["upstreams", "api"] }] });
 * refs.has("upstream", "api"); // true
 * refs.names("upstream"); // ["api"]
 * refs.unknown("upstream", "apii"); // 'unknown upstream "apii" (did you mean "api"?)'
 * ```
 */
export class References {
  readonly #byKind = new Map<string, Map<string, Definition>>();
  readonly #all = new Map<string, Definition[]>();
  readonly #unknown = new Set<string>();

  /**
   * @param definitions the names defined, by kind
   * @param unknownKinds kinds whose defining section is invalid: every name counts as defined
   */
  constructor(
    definitions: Record<string, Iterable<Definition>> = {},
    unknownKinds: Iterable<string> = [],
  ) {
    for (const [kind, list] of Object.entries(definitions)) {
      const names = new Map<string, Definition>();
      const all = [...list];
      for (const definition of all) {
        if (!names.has(definition.name)) names.set(definition.name, definition);
      }
      this.#byKind.set(kind, names);
      this.#all.set(kind, all);
    }
    for (const kind of unknownKinds) this.#unknown.add(kind);
  }

  /**
   * Whether `name` is defined as a `kind`. Also true when the section that
   * defines that kind is itself invalid, so that its errors are not repeated
   * as unknown references.
   */
  has(kind: string, name: string): boolean {
    return this.#unknown.has(kind) || (this.#byKind.get(kind)?.has(name) ?? false);
  }

  /**
   * Whether the names of `kind` are known, so that a name missing from them
   * is a mistake: false when the section that defines them is invalid, or
   * when they are found outside the document and nothing looked.
   */
  known(kind: string): boolean {
    return !this.#unknown.has(kind);
  }

  /** The message for `name`, which is not a `kind`: `unknown <what> "name"`, and a suggestion. */
  unknown(kind: string, name: string, what: string = kind): string {
    return `unknown ${what} ${JSON.stringify(name)}${didYouMean(name, this.names(kind))}`;
  }

  /** Every definition of `kind`, in document order, a name defined twice as often. */
  all(kind: string): Definition[] {
    return this.#all.get(kind) ?? [];
  }

  /** Where and what `name` of `kind` is, if it is defined. */
  get(kind: string, name: string): Definition | undefined {
    return this.#byKind.get(kind)?.get(name);
  }

  /**
   * The same references narrowed to `kinds`: what a module that declares
   * those cross-references is given.
   */
  only(kinds: readonly string[]): References {
    const narrowed = new References();
    for (const kind of kinds) {
      const names = this.#byKind.get(kind);
      if (names) narrowed.#byKind.set(kind, names);
      const all = this.#all.get(kind);
      if (all) narrowed.#all.set(kind, all);
      if (this.#unknown.has(kind)) narrowed.#unknown.add(kind);
    }
    return narrowed;
  }

  /** Every name defined as a `kind`, in document order. */
  names(kind: string): string[] {
    return [...this.#byKind.get(kind)?.keys() ?? []];
  }
}
