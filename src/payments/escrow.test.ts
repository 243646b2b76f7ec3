import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { msat } from "./amount.ts";
import { Escrow } from "./escrow.ts";
import { account, Ledger } from "./ledger.ts";

function books() {
  const dir = tempDir();
  const store = Store.openFile(join(dir.path, "escrow.db"));
  const ledger = new Ledger(store);
  return Object.assign(new Escrow(ledger), {
    books: ledger,
    [Symbol.dispose]: () => {
      store.close();
      dir[Symbol.dispose]();
    },
  });
}

const copy = (id: string, provider: string, amount: number) => ({
  assignmentId: id,
  provider,
  shardId: 1,
  amount: msat(amount),
});

describe("escrow", () => {
  test("lock, release with the fee rounded up per copy, refund the rest; each once", () => {
    using e = books();
    e.deposit("alice", msat(100_000), "channel", "a:1");
    e.lock("job", "alice", msat(50_000));
    e.release("job", [copy("c1", "bob", 10_001), copy("c2", "carol", 10_000)], 1);
    e.release("job", [copy("c1", "bob", 10_001)], 1); // the same copy again: nothing
    expect(e.earnings("bob")).toBe(msat(10_001));
    expect(e.earnings("carol")).toBe(msat(10_000));
    expect(e.books.balance(account("fees"))).toBe(msat(101 + 100));
    expect(e.refund("job", "alice", "job verified")).toBe(msat(50_000 - 20_001 - 201));
    expect(e.refund("job", "alice", "again")).toBe(msat(0));
    expect(e.credit("alice")).toBe(msat(100_000 - 20_001 - 201));
    e.books.check();
  });

  test("a lock beyond the client's credit is refused with what it would take", () => {
    using e = books();
    e.deposit("alice", msat(999), "channel", "a:1");
    expect(() => e.lock("job", "alice", msat(1_000))).toThrow(
      expect.objectContaining({ name: "InsufficientFundsError", neededMsat: 1_000n, balanceMsat: 999n }),
    );
    expect(e.escrowed("job")).toBe(msat(0));
  });

  test("a claw-back returns a release to the escrow (as much of the earnings as is left); a forfeit takes bond and earnings once", () => {
    using e = books();
    e.deposit("alice", msat(100_000), "channel", "a:1");
    e.postBond("mallory", msat(5_000), "channel", "m:1");
    e.lock("job", "alice", msat(50_000));
    e.release("job", [copy("c1", "mallory", 10_000), copy("c2", "mallory", 10_000)], 1);
    e.payOut("mallory", msat(15_000), "channel", "pay:1"); // already paid out most of it
    expect(e.clawBack("job", "c1")).toBe(msat(5_000 + 100));
    expect(e.clawBack("job", "c1")).toBe(msat(0));
    expect(e.clawBack("job", "c2")).toBe(msat(100)); // its price is gone: only the fee comes back
    expect(e.escrowed("job")).toBe(msat(50_000 - 20_200 + 5_200));
    expect(e.forfeit("mallory", 7)).toBe(msat(5_000));
    expect(e.forfeit("mallory", 7)).toBe(msat(0));
    expect(e.bond("mallory")).toBe(msat(0));
    expect(e.books.balance(account("forfeits"))).toBe(msat(5_000));
    e.books.check();
  });

  test("a deposit is keyed by its rail reference: a replayed channel state credits nothing", () => {
    using e = books();
    expect(e.deposit("alice", msat(10), "channel", "chan:5")).toBe(true);
    expect(e.deposit("alice", msat(10), "channel", "chan:5")).toBe(false);
    expect(e.credit("alice")).toBe(msat(10));
    expect(e.books.balanceOf(account("outside", "channel"))).toBe(-10n);
  });
});
