import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { MAX_MSAT, type Msat, msat } from "./amount.ts";
import { type AccountId, account, accountKey, Ledger, MAX_MOVES_PER_TXN } from "./ledger.ts";

function books() {
  const dir = tempDir();
  const store = Store.openFile(join(dir.path, "ledger.db"));
  return Object.assign(new Ledger(store), {
    store,
    [Symbol.dispose]: () => {
      store.close();
      dir[Symbol.dispose]();
    },
  });
}

const world = account("outside", "channel");
const alice = account("client", "alice");
const escrow = account("escrow", "job-1");
const bob = account("earnings", "bob");
const fees = account("fees");

function deposit(l: Ledger, to: AccountId, amount: number, ref: string) {
  return l.post({
    idem: `deposit:${ref}`,
    reason: "deposit",
    reference: ref,
    moves: [{ from: world, to, amount: msat(amount) }],
  });
}

describe("ledger", () => {
  test("a transaction moves money between accounts; the books sum to zero and only outside goes negative", () => {
    using l = books();
    deposit(l, alice, 10_000, "c1:1");
    l.post({
      idem: "lock:job-1",
      reason: "lock",
      jobId: "job-1",
      moves: [{ from: alice, to: escrow, amount: msat(6_000) }],
    });
    l.post({
      idem: "release:7",
      reason: "release",
      jobId: "job-1",
      shardId: 7,
      moves: [
        { from: escrow, to: bob, amount: msat(4_000) },
        { from: escrow, to: fees, amount: msat(40) },
      ],
    });
    l.check();
    expect(l.balanceOf(world)).toBe(-10_000n);
    expect([l.balance(alice), l.balance(escrow), l.balance(bob), l.balance(fees)]).toEqual([
      4_000n,
      1_960n,
      4_000n,
      40n,
    ] as Msat[]);
    expect(l.total("escrow")).toBe(1_960n);
    expect(l.credited(bob, "release")).toBe(msat(4_000));
    const release = l.txns({ jobId: "job-1", reason: "release" });
    expect(release).toHaveLength(1);
    expect(release[0]?.entries).toEqual([
      { account: accountKey(escrow), delta: -4_040n },
      { account: accountKey(bob), delta: 4_000n },
      { account: accountKey(fees), delta: 40n },
    ]);
  });

  test("the same idempotency key twice moves money once", () => {
    using l = books();
    const first = deposit(l, alice, 500, "c1:1");
    const again = deposit(l, alice, 500, "c1:1");
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ txnId: first.txnId, duplicate: true });
    expect(l.balance(alice)).toBe(msat(500));
    expect(l.has("deposit:c1:1")).toBe(true);
  });

  test("a move beyond a balance is refused, names the account, and writes nothing", () => {
    using l = books();
    deposit(l, alice, 100, "c1:1");
    const overdraw = () =>
      l.post({
        idem: "lock:job-1",
        reason: "lock",
        moves: [
          { from: alice, to: escrow, amount: msat(60) },
          { from: alice, to: escrow, amount: msat(60) },
        ],
      });
    expect(overdraw).toThrow(
      expect.objectContaining({ name: "InsufficientFundsError", account: "client:alice", neededMsat: 120n }),
    );
    expect(l.balance(alice)).toBe(msat(100));
    expect(l.has("lock:job-1")).toBe(false);
    l.check();
  });

  test.each([
    ["no moves", { moves: [] }],
    ["a zero move", { moves: [{ from: alice, to: escrow, amount: 0n as Msat }] }],
    ["a negative move", { moves: [{ from: alice, to: escrow, amount: -5n as Msat }] }],
    ["an amount beyond 21M BTC", { moves: [{ from: world, to: alice, amount: (MAX_MSAT + 1n) as Msat }] }],
    ["a move to itself", { moves: [{ from: alice, to: alice, amount: msat(1) }] }],
    [
      "moves that sum beyond 21M BTC",
      {
        moves: [
          { from: world, to: alice, amount: MAX_MSAT as Msat },
          { from: world, to: bob, amount: MAX_MSAT as Msat },
        ],
      },
    ],
    [
      "too many moves",
      { moves: Array.from({ length: MAX_MOVES_PER_TXN + 1 }, () => ({ from: world, to: alice, amount: msat(1) })) },
    ],
    [
      "an unknown account kind",
      { moves: [{ from: world, to: { kind: "vault", owner: "" } as unknown as AccountId, amount: msat(1) }] },
    ],
  ])("a posting with %s is refused", (_, bad) => {
    using l = books();
    expect(() => l.post({ idem: "x", reason: "deposit", ...bad })).toThrow(
      expect.objectContaining({ name: "InvalidInputError" }),
    );
    expect(l.accounts()).toEqual([]);
  });

  test("random movements keep every invariant, checked after each", () => {
    using l = books();
    const accounts = [
      alice,
      account("client", "carol"),
      escrow,
      account("escrow", "job-2"),
      bob,
      fees,
      account("bond", "bob"),
    ];
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      const from = rand(4) === 0 ? world : (accounts[rand(accounts.length)] as AccountId);
      const to = accounts[rand(accounts.length)] as AccountId;
      if (accountKey(from) === accountKey(to)) continue;
      try {
        l.post({ idem: `op:${i}`, reason: "deposit", moves: [{ from, to, amount: msat(1 + rand(5_000)) }] });
      } catch (err) {
        expect((err as Error).name).toBe("InsufficientFundsError");
        refused++;
      }
      l.check();
    }
    expect(refused).toBeGreaterThan(0);
    const inside = l.accounts().filter((a) => a.id.kind !== "outside");
    expect(inside.reduce((s, a) => s + a.balance, 0n)).toBe(-l.balanceOf(world));
  });

  test("check() finds books that were changed behind the ledger's back", () => {
    using l = books();
    deposit(l, alice, 100, "c1:1");
    l.store.db.run("UPDATE ledger_accounts SET balance_msat = balance_msat + 1 WHERE id = 'client:alice'");
    expect(() => l.check()).toThrow(/sum to 1 msat/);
    l.store.db.run("UPDATE ledger_accounts SET balance_msat = -101 WHERE id = 'outside:channel'");
    expect(() => l.check()).toThrow(/holds -101 msat but its entries sum to -100/);
  });

  test("SQLite itself refuses a negative balance on an inside account", () => {
    using l = books();
    deposit(l, alice, 100, "c1:1");
    expect(() => l.store.db.run("UPDATE ledger_accounts SET balance_msat = -1 WHERE id = 'client:alice'")).toThrow(
      /CHECK/,
    );
  });
});
