import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { discoverPlugins } from "../../src/plugins/discover.ts";

Deno.test("discover: files and mod.ts directories, skipping _ and . names, hashed by content", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "alpha.ts"), "export default { name: 'alpha' };");
    await Deno.writeTextFile(join(dir, "_shared.ts"), "export const x = 1;");
    await Deno.writeTextFile(join(dir, ".hidden.ts"), "");
    await Deno.writeTextFile(join(dir, "notes.md"), "");
    await Deno.mkdir(join(dir, "beta", "lib"), { recursive: true });
    await Deno.writeTextFile(join(dir, "beta", "mod.ts"), "export default { name: 'beta' };");
    await Deno.writeTextFile(join(dir, "beta", "lib", "util.ts"), "export const y = 1;");
    await Deno.mkdir(join(dir, "gamma"));

    const found = await discoverPlugins(dir);
    assertEquals([...found.keys()], ["alpha", "beta"]);
    assertEquals(found.get("beta")!.entry, join(dir, "beta", "mod.ts"));
    assertEquals(found.get("beta")!.root, join(dir, "beta"));

    const before = found.get("beta")!.hash;
    await Deno.writeTextFile(join(dir, "alpha.ts"), "export default { name: 'alpha' };");
    assertEquals(
      (await discoverPlugins(dir)).get("beta")!.hash,
      before,
      "unchanged files, same hash",
    );
    await Deno.writeTextFile(join(dir, "beta", "lib", "util.ts"), "export const y = 2;");
    assert(
      (await discoverPlugins(dir)).get("beta")!.hash !== before,
      "a nested file changes the hash",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discover: a missing directory has no plugins", async () => {
  assertEquals((await discoverPlugins("/nonexistent/plugins")).size, 0);
});
