import { expect, test } from "bun:test";
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, Backoff, BUSY_BACKOFF_MS, SEVERE_BACKOFF_MS } from "./backoff.ts";

test("a lost provider pauses for a doubling time, capped, and stays suspect until it issues a new record", () => {
  const b = new Backoff();
  b.failed("p", 0, "lost");
  expect(b.excluded(BACKOFF_BASE_MS - 1)).toEqual(["p"]);
  // Past its pause but no newer record: still suspect.
  expect(b.excluded(BACKOFF_BASE_MS + 1, () => 0)).toEqual(["p"]);
  // A record issued after the loss clears the suspicion.
  expect(b.excluded(BACKOFF_BASE_MS + 1, () => 1)).toEqual([]);
  b.failed("p", 10_000, "lost");
  expect(b.excluded(10_000 + 2 * BACKOFF_BASE_MS - 1, () => 20_000)).toEqual(["p"]);
  // Failures in a row, each after the last pause ended, double it up to the cap.
  let t = 20_000;
  for (let i = 0; i < 20; i++) {
    b.failed("p", t, "lost");
    t += BACKOFF_MAX_MS;
  }
  b.failed("p", t, "lost");
  expect(b.excluded(t + BACKOFF_MAX_MS - 1, () => t + 1)).toEqual(["p"]);
  expect(b.excluded(t + BACKOFF_MAX_MS + 1, () => t + 1)).toEqual([]);
});

test("copies failing during a pause (a vanished provider's batch) are one incident, not a streak", () => {
  const b = new Backoff();
  for (let i = 0; i < 10; i++) b.failed("p", i, "lost");
  // Still the first pause: 1 s from the first failure, not 2^9 s.
  expect(b.excluded(BACKOFF_BASE_MS + 1, () => 100)).toEqual([]);
  // A bad result during a pause still gets the long pause.
  b.failed("q", 0, "lost");
  b.failed("q", 10, "severe");
  expect(b.excluded(SEVERE_BACKOFF_MS, () => 100)).toEqual(["q"]);
  expect(b.excluded(SEVERE_BACKOFF_MS + 11, () => 100)).toEqual([]);
});

test("busy is a short pause without suspicion; a bad result a long one; success forgives the streak", () => {
  const b = new Backoff();
  b.failed("busy", 0, "busy");
  expect(b.excluded(BUSY_BACKOFF_MS - 1)).toEqual(["busy"]);
  expect(b.excluded(BUSY_BACKOFF_MS + 1)).toEqual([]);
  b.failed("liar", 0, "severe");
  expect(b.excluded(SEVERE_BACKOFF_MS - 1)).toEqual(["liar"]);
  b.failed("p", 0, "lost");
  b.failed("p", 0, "lost");
  b.succeeded("p");
  b.failed("p", 100_000, "lost");
  expect(b.excluded(100_000 + BACKOFF_BASE_MS + 1, () => 200_000)).toEqual([]);
});
