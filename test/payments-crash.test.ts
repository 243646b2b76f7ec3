import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { AggregatorPayments } from "../src/node/aggregator/payments.ts";
import { AggregatorStore } from "../src/node/aggregator/store.ts";
import { msat } from "../src/payments/amount.ts";
import { account } from "../src/payments/ledger.ts";
import { Store } from "../src/store/db.ts";
import { earnedByHand } from "./fixtures/jobs.ts";
import { BOND, CLIENT, DEPOSIT, FEE_PERCENT, PRICE, PROVIDERS, SHARD } from "./fixtures/paying-aggregator.ts";
import { BUN } from "./helpers/cli.ts";
import { ROOT, tempDir } from "./helpers/paths.ts";

/**
 * Crash safety of the money: a paying aggregator (test/fixtures/paying-aggregator.ts, a real process
 * with its real SQLite file) is SIGKILLed at random moments, again and again, while it runs jobs;
 * after every kill the books are checked from the database it left, and after the last restart its
 * balances must equal what its verified copies are worth, to the msat. Providers are simulated in
 * that process (real onnxruntime); a provider that vanishes mid-copy is in test/aggregator.test.ts.
 */

const FIXTURE = join(ROOT, "test/fixtures/paying-aggregator.ts");
/** Kills per test; the tests together make the 50. */
const KILLS = 10;
/** A kill comes this long after the start, at random: from before the first lease to mid-job. */
const KILL_MIN_MS = 300;
const KILL_MAX_MS = 2_500;
/** A kill after money moved comes within this long of it. */
const KILL_AFTER_PAID_MS = 200;
/** How often the test looks at the database a running aggregator writes. */
const POLL_MS = 10;
/** Jobs the fixture runs in all (a kill lands in whichever is running). */
const JOBS = 3;

/** Checks the books a killed aggregator left; says whether it died with a job part paid. */
function audit(home: string): boolean {
  using store = Store.open(home);
  const books = new AggregatorPayments(store, new AggregatorStore(store));
  books.check();
  // No shard pays more copies than its redundancy (a copy clawed back no longer counts).
  const overpaid = store.db
    .query<{ shard: number; n: number }, []>(
      `SELECT t.shard_id AS shard, count(*) AS n FROM ledger_txns t
       WHERE t.reason = 'release' AND NOT EXISTS (SELECT 1 FROM ledger_txns c WHERE c.idem = 'clawback:' || t.assignment_id)
       GROUP BY t.shard_id HAVING n > 2`,
    )
    .all();
  expect(overpaid).toEqual([]);
  // Every copy is paid once at most (the key is the copy), and only copies of this aggregator's jobs.
  const twice = store.db
    .query<{ n: number }, []>(
      "SELECT count(*) AS n FROM (SELECT assignment_id FROM ledger_txns WHERE reason = 'release' GROUP BY assignment_id HAVING count(*) > 1)",
    )
    .get();
  expect(twice?.n).toBe(0);
  return (
    store.db
      .query(
        `SELECT 1 FROM jobs j WHERE j.state NOT IN ('verified', 'failed')
         AND EXISTS (SELECT 1 FROM ledger_txns t WHERE t.job_id = j.id AND t.reason = 'release')`,
      )
      .get() !== null
  );
}

/** The books after the last job, computed by hand from the copies the database says were verified. */
function settled(home: string): void {
  using store = Store.open(home);
  const books = new AggregatorPayments(store, new AggregatorStore(store));
  // Each verified copy earns its price times the multipliers recorded with it (payments/earnings.ts),
  // rounded down, and the fee is 1% of that rounded up; recorded once, however often it was killed.
  const copyMsat = SHARD * PRICE;
  const { earned, total, fees } = earnedByHand(store.db, copyMsat, FEE_PERCENT);
  const cheat = earned.get("cheat") ?? 0;
  const banned = store.db.query("SELECT 1 FROM bans WHERE provider = 'cheat'").get() !== null;
  for (const p of PROVIDERS.filter((p) => p !== "cheat")) {
    expect(books.escrow.earnings(p)).toBe(msat(earned.get(p) ?? 0));
    expect(books.escrow.bond(p)).toBe(msat(BOND));
  }
  if (banned) {
    // Caught: its bond and whatever it had earned on jobs already finished went to the forfeits.
    expect(books.escrow.earnings("cheat")).toBe(msat(0));
    expect(books.escrow.bond("cheat")).toBe(msat(0));
    expect(books.ledger.balance(account("forfeits"))).toBe(msat(BOND + cheat));
  } else {
    expect(books.escrow.earnings("cheat")).toBe(msat(cheat));
  }
  expect(books.ledger.total("escrow")).toBe(0n);
  expect(books.ledger.balance(account("fees"))).toBe(msat(fees));
  expect(books.escrow.credit(CLIENT)).toBe(msat(DEPOSIT - total - fees));
  books.check();
}

/** Resolves once the aggregator at `home` has paid a copy of a job that is still running (or it exited). */
async function paying(home: string, exited: Promise<number>): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  while (!gone) {
    try {
      using db = new Database(join(home, "infernet.db"), { readonly: true });
      const paid = db
        .query(
          `SELECT 1 FROM ledger_txns t JOIN jobs j ON j.id = t.job_id
           WHERE t.reason = 'release' AND j.state NOT IN ('verified', 'failed') LIMIT 1`,
        )
        .get();
      if (paid) return;
    } catch {
      // Not created or not migrated yet.
    }
    await Bun.sleep(POLL_MS);
  }
}

function start(home: string) {
  return Bun.spawn([BUN, FIXTURE, home, String(JOBS)], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, INFERNET_LOG: "error" },
  });
}

describe("payments survive SIGKILL", () => {
  for (const round of [1, 2, 3, 4, 5]) {
    test(`round ${round}: ${KILLS} kills at random moments, the books checked after each, exact after the last restart`, async () => {
      using dir = tempDir();
      let midJob = 0;
      for (let kill = 0; kill < KILLS; kill++) {
        const child = start(dir.path);
        // Every other kill waits for money to move (a copy paid in a running job), then strikes at
        // once or a little later; the others strike at a random moment from the start.
        const moment =
          kill % 2 === 0
            ? Bun.sleep(KILL_MIN_MS + Math.floor(Math.random() * (KILL_MAX_MS - KILL_MIN_MS)))
            : paying(dir.path, child.exited).then(() => Bun.sleep(Math.floor(Math.random() * KILL_AFTER_PAID_MS)));
        const finished = await Promise.race([child.exited.then(() => true), moment.then(() => false)]);
        if (!finished) child.kill("SIGKILL");
        await child.exited;
        if (audit(dir.path)) midJob++;
      }
      // Kills land while a job is part paid (the point of the test), not only between jobs.
      expect(midJob).toBeGreaterThanOrEqual(KILLS / 4);
      const last = start(dir.path);
      const code = await last.exited;
      if (code !== 0) throw new Error(`the last run failed: ${await new Response(last.stderr).text()}`);
      const finishedJobs = (await new Response(last.stdout).text()).trim().split("\n").filter(Boolean);
      expect(finishedJobs.length).toBeGreaterThan(0);
      audit(dir.path);
      settled(dir.path);
    }, 120_000);
  }
});
