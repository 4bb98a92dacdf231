import { assertEquals } from "../helpers/assert.ts";
import { planPermissions } from "../../src/plugins/permissions.ts";

const DIR = "/srv/plugins";
const OWN = ["/srv/plugins/p.ts"];

Deno.test("permissions: nothing is granted by default, whatever the plugin asks", () => {
  const plan = planPermissions({ net: true, env: ["HOME"], read: ["data"] }, undefined, DIR, OWN);
  assertEquals(plan.permissions, {
    run: false,
    ffi: false,
    import: false,
    net: false,
    read: OWN,
    write: false,
    env: false,
    sys: false,
  });
  assertEquals(plan.denied, ["net: all", "read: /srv/plugins/data", "env: HOME"]);
});

Deno.test("permissions: the plugin gets the part of its request the grant covers", () => {
  const plan = planPermissions(
    { net: ["api.example.com:443", "evil.example.com"], env: ["TOKEN"], read: ["data/in"] },
    { net: ["api.example.com"], env: true, read: ["data"] },
    DIR,
    OWN,
  );
  assertEquals(plan.permissions.net, ["api.example.com:443"]);
  assertEquals(plan.permissions.env, ["TOKEN"]);
  assertEquals(plan.permissions.read, ["/srv/plugins/data/in", ...OWN]);
  assertEquals(plan.denied, ["net: evil.example.com"]);
});

Deno.test("permissions: asking for everything gets only what is granted; paths cannot escape", () => {
  const plan = planPermissions(
    { net: true, write: ["../etc"] },
    { net: ["127.0.0.1:9000"], write: ["out"] },
    DIR,
    OWN,
  );
  assertEquals(plan.permissions.net, ["127.0.0.1:9000"]);
  assertEquals(plan.permissions.write, []);
  assertEquals(plan.denied, ["net: all", "write: /srv/etc"]);
});
