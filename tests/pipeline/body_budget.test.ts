import { assert, assertEquals } from "../helpers/assert.ts";
import { BodyBudget } from "../../src/pipeline/body_budget.ts";

Deno.test("the budget takes bytes up to its limit and gets them back", () => {
  const budget = new BodyBudget(100);
  assert(budget.take(60));
  assert(!budget.take(41), "60 + 41 would pass 100");
  assertEquals(budget.used, 60);
  assert(budget.take(40));
  budget.give(60);
  budget.give(40);
  assertEquals(budget.used, 0);
});
