/**
 * Dependencies between plugins: a plugin's `requires` (`{ "auth": "^1.2" }`)
 * as semver ranges, and the {@link LoadRound} that starts the plugins loaded
 * together in dependency order. Every plugin of a round is imported at once;
 * each one's `init` waits until what it requires has finished its own, and a
 * plugin is refused (never started) when a requirement is missing, failed,
 * has an incompatible version or forms a cycle.
 *
 * The ranges are the four forms plugins need, parsed here rather than with a
 * semver library: `^1.2.3` (same major; below 1.0.0, same minor; below 0.1.0,
 * same patch), `~1.2.3` (same minor), `1.2.3` (exactly; `1.2` is any 1.2.x),
 * and `>=1.2.3`. A missing minor or patch counts as 0. Pre-release versions
 * (`2.0.0-rc.1`) compare by semver precedence, below their release.
 *
 * @module
 */

import { basename, dirname, join, relative } from "node:path";

/** A parsed version: `[major, minor, patch]` and its pre-release identifiers. */
export interface Version {
  numbers: [number, number, number];
  pre: string[];
}

/**
 * A parsed range: `min` exactly when `exact`, else versions at least `min`
 * and, when set, whose numbers are below `below`'s (so `^1` takes no `2.0.0-rc.1`).
 */
export interface VersionRange {
  text: string;
  min: Version;
  below?: Version;
  exact?: boolean;
}

const VERSION = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;
const RANGE = /^(\^|~|>=)?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?$/;

/**
 * Parses `major.minor.patch[-pre][+build]`; undefined when `text` is not one.
 *
 * @example
 * ```ts
 * import { parseVersion } from "./requirements.ts";
 * parseVersion("1.4.0"); // { numbers: [1, 4, 0], pre: [] }
 * parseVersion("1.4"); // undefined
 * ```
 */
export function parseVersion(text: string): Version | undefined {
  const match = VERSION.exec(text.trim());
  if (!match) return undefined;
  return {
    numbers: [Number(match[1]), Number(match[2]), Number(match[3])],
    pre: match[4]?.split(".") ?? [],
  };
}

/**
 * Parses `^x.y.z`, `~x.y.z`, `x.y.z` or `>=x.y.z` (minor and patch may be
 * left out); undefined when `text` is none of them.
 *
 * @example
 * ```ts
 * import { parseRange } from "./requirements.ts";
 * parseRange("^1.2")?.below; // { numbers: [2, 0, 0], pre: [] }
 * ```
 */
export function parseRange(text: string): VersionRange | undefined {
  const match = RANGE.exec(text.trim());
  if (!match) return undefined;
  const [, operator, ...parts] = match;
  const given = parts.slice(0, 3).filter((part) => part !== undefined).length;
  const [major, minor, patch] = parts.slice(0, 3).map((part) => Number(part ?? 0));
  const min: Version = { numbers: [major, minor, patch], pre: match[5]?.split(".") ?? [] };
  const bound = (...numbers: [number, number, number]): Version => ({ numbers, pre: [] });
  // The first number the range keeps fixed: what changes above it is outside the range.
  let fixed: number;
  if (operator === ">=") return { text, min };
  if (operator === "^") {
    const firstNonZero = [major, minor, patch].findIndex((part, i) => part > 0 || i >= given - 1);
    fixed = Math.min(firstNonZero, given - 1);
  } else if (operator === "~") fixed = given === 1 ? 0 : 1;
  else if (given === 3) return { text, min, exact: true };
  else fixed = given - 1;
  const below = fixed === 0
    ? bound(major + 1, 0, 0)
    : fixed === 1
    ? bound(major, minor + 1, 0)
    : bound(major, minor, patch + 1);
  return { text, min, below };
}

function compareIdentifiers(a: string, b: string): number {
  const [numA, numB] = [/^\d+$/.test(a), /^\d+$/.test(b)];
  if (numA && numB) return Number(a) - Number(b);
  if (numA !== numB) return numA ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Semver precedence: negative when `a` is older than `b`, 0 when equal.
 *
 * @example
 * ```ts
 * import { compareVersions, parseVersion } from "./requirements.ts";
 * compareVersions(parseVersion("2.0.0-rc.1")!, parseVersion("2.0.0")!) < 0; // true
 * ```
 */
export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) {
    if (a.numbers[i] !== b.numbers[i]) return a.numbers[i] - b.numbers[i];
  }
  if (a.pre.length === 0 || b.pre.length === 0) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
    const order = compareIdentifiers(a.pre[i], b.pre[i]);
    if (order !== 0) return order;
  }
  return a.pre.length - b.pre.length;
}

/**
 * Whether `version` is in `range`.
 *
 * @example
 * ```ts
 * import { parseRange, parseVersion, satisfies } from "./requirements.ts";
 * satisfies(parseVersion("1.4.0")!, parseRange("^1.2")!); // true
 * satisfies(parseVersion("1.4.0")!, parseRange("^2")!); // false
 * ```
 */
export function satisfies(version: Version, range: VersionRange): boolean {
  if (range.exact) return compareVersions(version, range.min) === 0;
  if (compareVersions(version, range.min) < 0) return false;
  return !range.below || compareVersions({ numbers: version.numbers, pre: [] }, range.below) < 0;
}

/**
 * The major version of `text` (0 for a version that does not parse): a new
 * major of a required plugin reloads the plugins that require it.
 *
 * @example
 * ```ts
 * import { majorOf } from "./requirements.ts";
 * majorOf("2.1.0"); // 2
 * ```
 */
export function majorOf(text: string | undefined): number {
  return parseVersion(text ?? "")?.numbers[0] ?? 0;
}

/**
 * A plugin refused for its `requires`: the message names its file, what it
 * requires and what was found.
 *
 * @example
 * ```ts
 * import { RequirementError } from "./requirements.ts";
 * new RequirementError('plugins/a.ts: requires "b" ^2, found 1.4.0').name; // "RequirementError"
 * ```
 */
export class RequirementError extends Error {
  override name = "RequirementError";
}

/** What a round needs to know about a plugin that is loaded and not part of it. */
export interface LoadedPlugin {
  version: string;
  requires: Record<string, string>;
}

/** What a round needs to know about a plugin loaded in it. */
interface Member<T> {
  file: string;
  imported: PromiseWithResolvers<Record<string, string> | undefined>;
  done: PromiseWithResolvers<{ version: string; started: T } | { failed: string }>;
}

/**
 * The plugins loaded together (at start, on a config change, on a rescan of
 * the directory): orders their `init`s by `requires` and refuses those whose
 * requirements cannot be met. `T` is a started version (a sandbox), which a
 * dependant may call before the round's versions are made current.
 *
 * @example
 * ```ts
 * import { LoadRound } from "./requirements.ts";
 * const round = new LoadRound<string>("/srv/plugins", () => undefined);
 * round.join("a");
 * round.join("b");
 * // in a's load, once imported: await round.ready("a", { b: "^1" }); (waits for b's init)
 * round.settle("b", { version: "1.4.0", started: "b's sandbox" });
 * ```
 */
export class LoadRound<T> {
  readonly #members = new Map<string, Member<T>>();
  /**
   * Plugins whose current version changed major, appeared or went away in
   * this round: the plugins that require them are loaded again.
   */
  readonly changed = new Set<string>();

  /**
   * `dir` is the plugins directory (for the file names in messages);
   * `loaded` describes a plugin outside the round by name: its loaded
   * version, why it is not loaded, or undefined when there is no such plugin.
   */
  constructor(
    readonly dir: string,
    readonly loaded: (name: string) => LoadedPlugin | string | undefined,
  ) {}

  /** Adds `name` to the round: call it for every plugin before any of them is imported. */
  join(name: string): void {
    if (this.#members.has(name)) return;
    this.#members.set(name, {
      file: this.fileOf(name),
      imported: Promise.withResolvers(),
      done: Promise.withResolvers(),
    });
  }

  /** Whether `name` is loaded in this round. */
  has(name: string): boolean {
    return this.#members.has(name);
  }

  /** The plugin's file as the config names it: `plugins/a.ts` (or `plugins/a/mod.ts`). */
  fileOf(name: string, entry = join(this.dir, `${name}.ts`)): string {
    return relative(dirname(this.dir), entry) || basename(entry);
  }

  /**
   * Called once `name` is imported with its `requires`: resolves when every
   * requirement has finished its init with a version in range, throws a
   * {@link RequirementError} when one cannot.
   */
  async ready(name: string, requires: Record<string, string>, entry?: string): Promise<void> {
    this.join(name);
    const member = this.#members.get(name)!;
    if (entry) member.file = this.fileOf(name, entry);
    member.imported.resolve(requires);
    const refuse = (message: string) => new RequirementError(`${member.file}: ${message}`);
    const ranges = new Map<string, VersionRange>();
    for (const [required, text] of Object.entries(requires)) {
      const range = typeof text === "string" ? parseRange(text) : undefined;
      if (!range) {
        throw refuse(
          `requires "${required}" ${JSON.stringify(text)}, which is not a version range ` +
            `(^1.2.3, ~1.2.3, 1.2.3 or >=1.2.3)`,
        );
      }
      ranges.set(required, range);
    }
    const cycle = await this.#cycleFrom(name);
    if (cycle) throw refuse(`requires form a cycle: ${cycle.join(" -> ")}`);
    for (const [required, range] of ranges) {
      const found = await this.#versionOf(required);
      if (found.problem) throw refuse(`requires "${required}" ${range.text}, ${found.problem}`);
      const version = parseVersion(found.version!);
      if (!version || !satisfies(version, range)) {
        throw refuse(`requires "${required}" ${range.text}, found ${found.version}`);
      }
    }
  }

  /** Records how `name`'s load ended: its started version, or why it failed. */
  settle(name: string, result: { version: string; started: T } | { failed: string }): void {
    const member = this.#members.get(name);
    member?.imported.resolve(undefined);
    member?.done.resolve(result);
  }

  /**
   * The started, not yet current, version of `owner` when `caller` requires
   * it: calls from `caller`'s init go there (its functions are callable by
   * its dependants as soon as they start).
   */
  async startedFor(caller: string, owner: string): Promise<T | undefined> {
    const requires = await this.#members.get(caller)?.imported.promise;
    if (!requires || !Object.hasOwn(requires, owner)) return undefined;
    const done = await this.#members.get(owner)?.done.promise;
    return done && "started" in done ? done.started : undefined;
  }

  /** The requires of `name`: as imported in this round, or of its loaded version. */
  async #requiresOf(name: string): Promise<Record<string, string>> {
    const member = this.#members.get(name);
    if (member) return await member.imported.promise ?? {};
    const loaded = this.loaded(name);
    return typeof loaded === "object" ? loaded.requires : {};
  }

  /** A path `name -> ... -> name` through requirements, when there is one. */
  async #cycleFrom(name: string): Promise<string[] | undefined> {
    const visit = async (path: string[]): Promise<string[] | undefined> => {
      for (const next of Object.keys(await this.#requiresOf(path.at(-1)!))) {
        if (next === name) return [...path, next];
        if (path.includes(next)) continue;
        const found = await visit([...path, next]);
        if (found) return found;
      }
    };
    return await visit([name]);
  }

  async #versionOf(name: string): Promise<{ version?: string; problem?: string }> {
    const member = this.#members.get(name);
    if (member) {
      const done = await member.done.promise;
      return "failed" in done
        ? { problem: `but "${name}" failed to load: ${done.failed}` }
        : { version: done.version };
    }
    const loaded = this.loaded(name);
    if (loaded === undefined) return { problem: `but there is no plugin "${name}"` };
    if (typeof loaded === "string") return { problem: `but "${name}" is not loaded: ${loaded}` };
    return { version: loaded.version };
  }
}
