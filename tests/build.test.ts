import { assert, assertEquals } from "./helpers/assert.ts";
import { lockCopy } from "../build.ts";

const ROOT = new URL("../", import.meta.url);

/** The npm package an `npm:` specifier names: `npm:@scope/name@^1` → `@scope/name`. */
function packageName(specifier: string): string {
  const bare = specifier.replace(/^npm:\/?/, "");
  const at = bare.indexOf("@", bare.startsWith("@") ? 1 : 0);
  return (at < 0 ? bare : bare.slice(0, at)).replace(/\/$/, "");
}

/** Every `.ts` file under `dir`. */
function sources(dir: URL): URL[] {
  return [...Deno.readDirSync(dir)].flatMap((entry) =>
    entry.isDirectory
      ? sources(new URL(`${entry.name}/`, dir))
      : entry.name.endsWith(".ts")
      ? [new URL(entry.name, dir)]
      : []
  );
}

/** What the gateway runs: the import map and `npm:` specifiers in main.ts, src/, sdk/, plugins/. */
async function runtimePackages(): Promise<Set<string>> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const names = Object.values(config.imports as Record<string, string>).map(packageName);
  const files = [
    new URL("main.ts", ROOT),
    ...["src/", "sdk/", "plugins/"].flatMap((dir) => sources(new URL(dir, ROOT))),
  ];
  for (const file of files) {
    for (const [, specifier] of (await Deno.readTextFile(file)).matchAll(/"(npm:[^"]+)"/g)) {
      names.push(packageName(specifier));
    }
  }
  return new Set(names);
}

Deno.test("deno.lock pins only packages the gateway runs", async () => {
  const lock = JSON.parse(await Deno.readTextFile(new URL("deno.lock", ROOT)));
  const runtime = await runtimePackages();
  const locked = [...new Set(Object.keys(lock.specifiers).map(packageName))];
  const extra = locked.filter((name) => !runtime.has(name));
  assertEquals(
    extra,
    [],
    "deno task fetches every package in deno.lock before any task runs: bench- and " +
      "test-only packages must be resolved against build.ts's lockCopy(), not deno.lock",
  );
  assert(locked.includes("hono"), `the lockfile lists ${locked.join(", ")}`);
});

Deno.test("packageName reads scoped, versioned and folder specifiers", () => {
  assertEquals(packageName("npm:@logtape/logtape@^2.4.2"), "@logtape/logtape");
  assertEquals(packageName("npm:/hono@^4.13.19/"), "hono");
  assertEquals(packageName("npm:undici@7"), "undici");
});

Deno.test("lockCopy is a separate copy of deno.lock", async () => {
  const copy = await lockCopy();
  try {
    assertEquals(
      await Deno.readTextFile(copy),
      await Deno.readTextFile(new URL("deno.lock", ROOT)),
    );
    await Deno.writeTextFile(copy, "{}");
    assert((await Deno.readTextFile(new URL("deno.lock", ROOT))).length > 2, "deno.lock changed");
  } finally {
    await Deno.remove(copy);
  }
});
