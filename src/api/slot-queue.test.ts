import { expect, test } from "bun:test";
import { SlotQueue } from "./slot-queue.ts";

const never = new AbortController().signal;

test("a freed slot wakes the request that has waited longest; one that waits again keeps its place", async () => {
  const q = new SlotQueue();
  const woken: string[] = [];
  const wait = (name: string, since: number) => q.wait("m", since, 60_000, never).then(() => woken.push(name));
  const later = wait("later", 20);
  const first = wait("first", 10);
  expect(q.size("m")).toBe(2);
  q.freed("m");
  await first;
  expect(woken).toEqual(["first"]);
  // "first" found the providers busy again: it goes back in front of "later".
  const again = wait("first again", 10);
  q.freed("m");
  await again;
  q.freed("m");
  await later;
  expect(woken).toEqual(["first", "first again", "later"]);
  expect(q.size("m")).toBe(0);
  q.freed("other model"); // nobody waits: nothing happens
});

test("a waiter also wakes after its backoff, or when its request is cancelled", async () => {
  const q = new SlotQueue();
  const started = performance.now();
  await q.wait("m", 0, 30, never);
  expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  const cancel = new AbortController();
  const waiting = q.wait("m", 0, 60_000, cancel.signal);
  cancel.abort();
  await waiting;
  expect(q.size("m")).toBe(0);
});
