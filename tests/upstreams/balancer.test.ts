import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type BalancedTarget, createBalancer } from "../../src/upstreams/balancer.ts";

interface FakeTarget extends BalancedTarget {
  name: string;
  weight: number;
  inFlight: number;
  available: boolean;
}

function targets(...weights: number[]): FakeTarget[] {
  return weights.map((weight, index) => ({
    name: "abcdefgh"[index],
    weight,
    inFlight: 0,
    available: true,
    isAvailable() {
      return this.available;
    },
  }));
}

function picks(pick: () => FakeTarget | undefined, count: number): string {
  return Array.from({ length: count }, () => pick()?.name ?? "-").join("");
}

Deno.test("round-robin takes each target in turn, ignoring weights", () => {
  const balancer = createBalancer("round-robin", targets(5, 1, 1));
  assertEquals(picks(() => balancer.pick(), 7), "abcabca");
});

Deno.test("round-robin skips unavailable and excluded targets", () => {
  const list = targets(1, 1, 1);
  const balancer = createBalancer("round-robin", list);
  list[1].available = false;
  assertEquals(picks(() => balancer.pick(), 4), "acac");
  assertEquals(picks(() => balancer.pick(new Set([list[0]])), 2), "cc");
  list[0].available = false;
  list[2].available = false;
  assertEquals(balancer.pick(), undefined);
});

Deno.test("weighted spreads picks smoothly in proportion to weights", () => {
  const balancer = createBalancer("weighted", targets(5, 1, 1));
  assertEquals(picks(() => balancer.pick(), 7), "aabacaa");
  const counts = new Map<string, number>();
  for (let i = 0; i < 700; i++) {
    const name = balancer.pick()?.name ?? "-";
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  assertEquals(Object.fromEntries(counts), { a: 500, b: 100, c: 100 });
});

Deno.test("weighted shares among the available targets only", () => {
  const list = targets(3, 1, 2);
  const balancer = createBalancer("weighted", list);
  list[2].available = false;
  const names = picks(() => balancer.pick(), 400);
  assertEquals(names.split("a").length - 1, 300);
  assertEquals(names.split("b").length - 1, 100);
  assertEquals(balancer.pick(new Set([list[0], list[1]])), undefined);
});

Deno.test("least-connections prefers the target with the fewest requests in flight", () => {
  const list = targets(1, 1, 1);
  const balancer = createBalancer("least-connections", list);
  list[0].inFlight = 2;
  list[1].inFlight = 1;
  list[2].inFlight = 3;
  assertEquals(balancer.pick()?.name, "b");
  for (let i = 0; i < 6; i++) {
    const target = balancer.pick();
    if (target) target.inFlight++;
  }
  assertEquals(list.map((target) => target.inFlight), [4, 4, 4]);
});

Deno.test("least-connections breaks ties by weight, then in turn", () => {
  const list = targets(1, 2, 2);
  const balancer = createBalancer("least-connections", list);
  assertEquals(picks(() => balancer.pick(), 4), "bcbc");
  list[1].available = false;
  list[2].available = false;
  assertEquals(picks(() => balancer.pick(), 2), "aa");
  list[0].inFlight = 1;
  list[1].available = true;
  assertEquals(balancer.pick()?.name, "b");
  assertEquals(balancer.pick(new Set([list[1]]))?.name, "a");
});
