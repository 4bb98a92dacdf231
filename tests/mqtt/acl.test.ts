import { assert, assertEquals } from "../helpers/assert.ts";
import { Acl } from "../../src/mqtt/acl.ts";
import { MqttAclRule } from "../../src/mqtt/config.ts";
import { filterCovers, filterMatches } from "../../src/mqtt/topic_match.ts";

const rules = [
  { user: "dev", publish: ["devices/%c/#"], subscribe: ["cmd/%c/+", "broadcast/#"] },
  { clientId: "admin-1", publish: ["#"], subscribe: ["#"] },
  { publish: ["public/%u"] },
].map((rule) => MqttAclRule.parse(rule));

Deno.test("filterMatches: + and # wildcards, $ topics not matched by leading wildcards", () => {
  assert(filterMatches("a/+/c", "a/b/c"));
  assert(!filterMatches("a/+/c", "a/b/d"));
  assert(filterMatches("a/#", "a"));
  assert(filterMatches("a/#", "a/b/c"));
  assert(!filterMatches("a/b", "a/b/c"));
  assert(!filterMatches("#", "$SYS/x"));
  assert(filterMatches("$SYS/#", "$SYS/x"));
});

Deno.test("filterCovers: a subscription lies within an allowed filter only when all its topics do", () => {
  assert(filterCovers("a/#", "a/+/c"));
  assert(filterCovers("a/+", "a/b"));
  assert(!filterCovers("a/+", "a/#"));
  assert(!filterCovers("a/+/c", "a/+/+"));
  assert(!filterCovers("a/b", "a/+"));
  assert(!filterCovers("#", "$SYS/#"));
});

Deno.test("ACL: %c and %u substitution per user and client id", () => {
  const acl = new Acl(rules);
  const device = { clientId: "d1", username: "dev" };
  assert(acl.canPublish(device, "devices/d1/temp"));
  assert(!acl.canPublish(device, "devices/d2/temp"));
  assert(acl.canSubscribe(device, "cmd/d1/+"));
  assert(acl.canSubscribe(device, "cmd/d1/reboot"));
  assert(!acl.canSubscribe(device, "cmd/+/reboot"));
  assert(!acl.canSubscribe(device, "cmd/d2/reboot"));
  assert(acl.canPublish(device, "public/dev"));
  assert(acl.canPublish({ clientId: "admin-1" }, "anything/at/all"));
  assert(!acl.canPublish({ clientId: "admin-2" }, "anything/at/all"));
});

Deno.test("ACL: a substituted value that is not one topic level allows nothing", () => {
  const acl = new Acl(rules);
  assert(!acl.canPublish({ clientId: "d/1", username: "dev" }, "devices/d/1/x"));
  assert(!acl.canPublish({ clientId: "+", username: "dev" }, "devices/+/x"));
  assert(!acl.canPublish({ clientId: "x" }, "public/"));
});

Deno.test("ACL: without rules everything is allowed", () => {
  const acl = new Acl(undefined);
  assertEquals(acl.canPublish({ clientId: "c" }, "a/b"), true);
  assertEquals(acl.canSubscribe({ clientId: "c" }, "#"), true);
  assertEquals(acl.canReceive({ clientId: "c" }, "a/b"), true);
});

Deno.test("ACL: canReceive matches the topic against the subscribe filters of matching rules", () => {
  const acl = new Acl(rules);
  const device = { clientId: "d1", username: "dev" };
  assert(acl.canReceive(device, "cmd/d1/reboot"));
  assert(acl.canReceive(device, "broadcast/all/now"));
  assert(!acl.canReceive(device, "cmd/d2/reboot"));
  assert(!acl.canReceive({ clientId: "d1", username: "other" }, "cmd/d1/reboot"));
  assert(acl.canReceive({ clientId: "admin-1" }, "any/topic"));
});
