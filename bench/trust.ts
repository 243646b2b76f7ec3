/**
 * What trust costs and what it catches: the in-process Aggregator over the simulated network
 * (test/helpers/sim-network.ts: providers run the real mnist-8 on the real onnxruntime, and the
 * aggregator computes canaries itself on the same engine), MNIST 10k in shards of 100.
 *
 * 1. Verification overhead, as % of the job's compute: records the providers computed (every copy,
 *    canaries and tie-breaks included) minus the job's records, over the job's records; for the
 *    first job (no history: every shard on 2 providers, plus canaries) and for jobs once every
 *    provider's streak has reached TRUST_STREAK / SPOT_CHECK_RATE (replication at its floor). And
 *    throughput (records/s, submit to merged output) with the defaults (redundancy 2,
 *    minVerification 1) against every shard on 2 providers (minVerification 2; canaries still on).
 * 2. Shards until a provider lying on 10% of its records is banned, over fresh copies of the
 *    warmed-up database: (a) a new provider that lies from the start, (b) a provider with the long
 *    honest history of the warm-up that starts lying; beside the prediction of the formula printed.
 *
 * Usage: bun bench/trust.ts [--quick]
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Shard, ShardPlan } from "../src/jobs/records.ts";
import type { JobSpecInput } from "../src/jobs/spec.ts";
import { splitImages } from "../src/jobs/split.ts";
import { canaryCount } from "../src/jobs/verify/canaries.ts";
import { Aggregator } from "../src/node/aggregator/aggregator.ts";
import { replicationProbability, SPOT_CHECK_RATE, TRUST_STREAK } from "../src/reputation/score.ts";
import { ReputationStore } from "../src/reputation/store.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { Store } from "../src/store/db.ts";
import { MNIST_DIR } from "../test/helpers/paths.ts";
import { MNIST_SHA, SimNetwork } from "../test/helpers/sim-network.ts";
import { machine, median } from "./lib.ts";

const QUICK = process.argv.includes("--quick");
const SHARD_SIZE = 100;
/** Runs per cheater kind (each on a fresh copy of the warmed-up database). */
const RUNS = QUICK ? 6 : 20;
/** Jobs of each setting in the throughput comparison, alternated. */
const COMPARE_JOBS = QUICK ? 1 : 5;
/** The streak from which a provider's shards are replicated at the floor rate. */
const HISTORY_STREAK = TRUST_STREAK / SPOT_CHECK_RATE;
const MAX_WARMUP_JOBS = 15;
/** Jobs a cheater gets to be caught in before a run gives up on it. */
const MAX_BAN_JOBS = 4;
const LIE_RATE = 0.1;
const HONEST = ["h1", "h2", "h3", "h4"];
/** Honest through the warm-up; the cheater of (b). */
const VETERAN = "veteran";
const CLIENT = "bench-client";
const LABELS = gunzipSync(readFileSync(join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))).subarray(8);
const MNIST_CORRECT = 9_890;

const onnx = createOnnxEngine();
await using splitter = await splitImages(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"), { shardSize: SHARD_SIZE });
const plan: ShardPlan = splitter.plan;
const shards: Shard[] = [];
for await (const s of splitter.shards()) shards.push(s);

interface JobFigures {
  jobId: string;
  wallMs: number;
  records: number;
  /** Records the providers computed for it, canaries included. */
  computed: number;
  copies: number;
  /** Copies beyond the shards' targets (tie-breaks, speculative twins). */
  beyondTarget: number;
  canaryRecords: number;
  replicated: number;
  correct: number;
  /** The class output for each record, in order. */
  classes: number[];
  report: JobReport;
}

const overhead = (j: JobFigures) => (j.computed - j.records) / j.records;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const sum = (xs: Iterable<number>) => [...xs].reduce((a, b) => a + b, 0);

function aggregator(store: Store, net: SimNetwork, home: string): Aggregator {
  const agg = new Aggregator({ network: net, store, home, feePercent: 1 });
  agg.start();
  return agg;
}

/** One MNIST 10k job, submit to merged output; what the providers computed for it. */
async function runJob(agg: Aggregator, net: SimNetwork, over: Partial<JobSpecInput> = {}): Promise<JobFigures> {
  const from = net.returned.length;
  const before = sum(net.computed.values());
  const spec: JobSpecInput = {
    model: { name: "mnist-8", sha256: MNIST_SHA },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: SHARD_SIZE,
    redundancy: 2,
    maxPriceMsat: 1_000_000_000,
    deadlineMs: Date.now() + 600_000,
    idempotencyKey: crypto.randomUUID(),
    ...over,
  };
  const start = performance.now();
  async function* upload() {
    yield* shards;
  }
  const { jobId } = await agg.submit(
    { spec: spec as never, plan, kind: splitter.kind },
    upload(),
    CLIENT,
    AbortSignal.timeout(600_000),
  );
  for await (const e of agg.watch(jobId, CLIENT, AbortSignal.timeout(600_000))) {
    if (e.type !== "finished") continue;
    if (e.job.state !== "verified") throw new Error(`job ${e.job.state}: ${e.job.error}`);
    break;
  }
  const wallMs = performance.now() - start;
  const report = agg.report(jobId, CLIENT);
  const returns = net.returned.slice(from);
  const counts = new Map(report.shards.map((s) => [s.index, s.count]));
  const lines = readFileSync((await agg.output(jobId, CLIENT)).path, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { index: number; class: number });
  return {
    jobId,
    wallMs,
    records: plan.records,
    computed: sum(net.computed.values()) - before,
    copies: returns.length,
    beyondTarget: returns.length - sum(report.shards.map((s) => s.copiesTarget)),
    canaryRecords: sum(returns.map((r) => r.records - (counts.get(r.shard) ?? r.records))),
    replicated: report.shards.filter((s) => s.copiesTarget > 1).length,
    correct: lines.filter((l) => l.class === LABELS[l.index]).length,
    classes: lines.map((l) => l.class),
    report,
  };
}

function describeJob(name: string, j: JobFigures): string {
  return (
    `${name}: overhead ${pct(overhead(j))} (${j.computed} records computed for ${j.records}; ` +
    `${j.copies} copies of ${plan.shardCount} shards, ${j.replicated} shards given 2 copies, ` +
    `${j.beyondTarget} copies beyond target (speculative twins, tie-breaks), ${j.canaryRecords} canary records), ` +
    `${((j.records * 1000) / j.wallMs).toFixed(0)} records/s (${j.wallMs.toFixed(0)} ms), ${j.correct} correct`
  );
}

function streaks(reputation: ReputationStore, peers: string[]): number[] {
  return peers.map((p) => reputation.stats(p, MNIST_SHA).streak);
}

console.log(
  `trust bench, MNIST ${plan.records} in ${plan.shardCount} shards of ${SHARD_SIZE}, ${QUICK ? "quick" : "full"} (${machine()})`,
);
console.log(
  `providers: ${[...HONEST, VETERAN].join(", ")}, simulated in-process on one onnxruntime; canaries per copy: ${canaryCount(SHARD_SIZE)}`,
);

// 1. The warm-up: a fresh database, every provider honest, until every streak has reached the floor's.
const warm = mkdtempSync(join(tmpdir(), "infernet-bench-trust-"));
const snapshot = join(warm, "warmed.db");
/** mnist-8's own answers (the first job's output, all providers honest): what every later output must equal. */
let truth: number[] = [];
let history: { first: JobFigures; warmups: number; streaks: number[] };
{
  const home = mkdtempSync(join(warm, "home-"));
  using store = Store.open(home);
  const net = new SimNetwork(onnx, [...HONEST, VETERAN], { reference: true });
  const reputation = new ReputationStore(store);
  const agg = aggregator(store, net, home);
  const first = await runJob(agg, net);
  truth = first.classes;
  console.log(describeJob("first job (no history)", first));
  console.log(`  the aggregator computed ${net.referenceRecords} records itself (canaries)`);
  let warmups = 1;
  while (Math.min(...streaks(reputation, [...HONEST, VETERAN])) < HISTORY_STREAK && warmups < MAX_WARMUP_JOBS) {
    const j = await runJob(agg, net);
    warmups++;
    console.log(
      `  ${describeJob(`warm-up job ${warmups}`, j)}; streaks ${streaks(reputation, [...HONEST, VETERAN]).join(", ")}`,
    );
  }
  await agg.stop();
  history = { first, warmups, streaks: streaks(reputation, [...HONEST, VETERAN]) };
  store.db.exec(`VACUUM INTO '${snapshot}'`);

  // With the history: the defaults against every shard on 2 providers, alternated, same database.
  const again = aggregator(store, net, home);
  const withHistory: JobFigures[] = [];
  const both: JobFigures[] = [];
  for (let i = 0; i < COMPARE_JOBS; i++) {
    withHistory.push(await runJob(again, net));
    both.push(await runJob(again, net, { minVerification: 2 }));
  }
  await again.stop();
  for (const [i, j] of withHistory.entries()) console.log(describeJob(`with history, defaults, job ${i + 1}`, j));
  for (const [i, j] of both.entries()) console.log(describeJob(`with history, minVerification 2, job ${i + 1}`, j));
  const rate = (js: JobFigures[]) => median(js.map((j) => (j.records * 1000) / j.wallMs));
  console.log(
    `overhead: first job ${pct(overhead(history.first))}, with history (streaks ${history.streaks.join(", ")} after ` +
      `${history.warmups} jobs) median ${pct(median(withHistory.map(overhead)))} (target <= 10%); ` +
      `minVerification 2: ${pct(median(both.map(overhead)))}`,
  );
  const floor = SPOT_CHECK_RATE + (canaryCount(SHARD_SIZE) / SHARD_SIZE) * (1 + SPOT_CHECK_RATE);
  console.log(
    `  expected at the floor: ${pct(SPOT_CHECK_RATE)} of shards replicated + ${canaryCount(SHARD_SIZE)} canary per ` +
      `${SHARD_SIZE}-record copy = ${pct(floor)}`,
  );
  console.log(
    `throughput: defaults ${rate(withHistory).toFixed(0)} records/s, minVerification 2 (canaries on) ` +
      `${rate(both).toFixed(0)} records/s: ${(rate(withHistory) / rate(both)).toFixed(2)}x`,
  );
}

// 2. Shards until a 10% cheater is banned.
/** What must never happen (an honest provider banned, a wrong output), with details. */
const problems: string[] = [];
interface BanRun {
  streak: number;
  streakBeforeBan: number;
  /** The cheater's copies returned up to and including the one convicted first; undefined: never caught. */
  untilBan: number | undefined;
  /** Its copies returned when the ban was given (the convicting copy may be settled after later ones returned). */
  returnedAtBan: number | undefined;
  method: string | undefined;
  banCount: number;
  jobs: number;
  wrongOutputs: number;
  honestBans: string[];
}

async function banRun(cheater: string, fresh: boolean, seed: string): Promise<BanRun> {
  const home = mkdtempSync(join(tmpdir(), "infernet-bench-trust-run-"));
  try {
    copyFileSync(snapshot, join(home, "infernet.db"));
    using store = Store.open(home);
    const net = new SimNetwork(onnx, fresh ? [...HONEST, cheater] : [...HONEST, VETERAN], { reference: true });
    const reputation = new ReputationStore(store);
    const streak = reputation.stats(cheater, MNIST_SHA).streak;
    net.lie(cheater, { rate: LIE_RATE, seed });
    const mine = () => net.returned.filter((r) => r.peer === cheater);
    let returnedAtBan: number | undefined;
    let bannedAt: number | undefined;
    // Its streak as last seen before the ban (a conviction sets it to 0).
    let streakBeforeBan = streak;
    const poll = setInterval(() => {
      if (returnedAtBan !== undefined) return;
      const ban = reputation.banned(cheater);
      if (ban) {
        returnedAtBan = mine().length;
        bannedAt = ban.bannedAt;
      } else streakBeforeBan = reputation.stats(cheater, MNIST_SHA).streak;
    }, 2);
    const agg = aggregator(store, net, home);
    const jobs: { report: JobReport; from: number; correct: number; classes: number[] }[] = [];
    try {
      while (jobs.length < MAX_BAN_JOBS && !reputation.banned(cheater)) {
        const from = mine().length;
        const j = await runJob(agg, net);
        jobs.push({ report: j.report, from, correct: j.correct, classes: j.classes });
      }
    } finally {
      clearInterval(poll);
      await agg.stop();
    }
    // The copy that got it banned: the first of its copies rejected on proof (not disowned after).
    const convicted = jobs
      .flatMap(({ report, from }) =>
        report.shards.flatMap((s) =>
          s.copies
            .filter((c) => c.provider === cheater && c.verification?.verdict === "rejected")
            .map((c) => ({ shard: s.index, from, endedAt: c.endedAt ?? 0, method: c.verification?.method })),
        ),
      )
      .sort((a, b) => a.endedAt - b.endedAt)[0];
    for (const [n, j] of jobs.entries()) {
      const wrong = [...new Set(j.classes.flatMap((c, i) => (c === truth[i] ? [] : [Math.floor(i / SHARD_SIZE)])))];
      const since = (t: number | undefined) =>
        t === undefined || bannedAt === undefined ? "-" : `${t - bannedAt} ms after the ban`;
      if (wrong.length === 0) continue;
      const lines = wrong.map((index) => {
        const shard = j.report.shards.find((s) => s.index === index);
        const copies = shard?.copies.map(
          (c) =>
            `${c.provider} ${c.state} ${c.verification?.method ?? "-"}/${c.verification?.verdict ?? "-"}, ` +
            `leased ${since(c.leasedAt)}, returned ${since(c.returnedAt)}`,
        );
        return `shard ${index} (target ${shard?.copiesTarget}): ${copies?.join("; ")}`;
      });
      problems.push(
        `WRONG OUTPUT: ${cheater} (seed ${seed}), job ${n + 1} of ${jobs.length}, ` +
          `banned ${bannedAt === undefined ? "never" : `by ${convicted?.method}`}: ${wrong.length} shards merged wrong: ${lines.join(" | ")}`,
      );
    }
    const returns = mine();
    const at = convicted ? returns.findIndex((r, i) => i >= convicted.from && r.shard === convicted.shard) : -1;
    return {
      streak,
      streakBeforeBan,
      untilBan: at >= 0 ? at + 1 : undefined,
      returnedAtBan,
      method: convicted?.method,
      banCount: reputation.banned(cheater)?.count ?? 0,
      jobs: jobs.length,
      wrongOutputs: jobs.filter((j) => j.correct !== MNIST_CORRECT).length,
      honestBans: reputation
        .bans()
        .filter((b) => b.provider !== cheater)
        .map((b) => `${b.provider}: ${b.reason}`),
    };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Per shard the cheater is caught with q; the median shards until caught: ceil(ln 0.5 / ln(1 - q)). */
function predicted(streak: number): { q: number; median: number; pRep: number } {
  const pCanary = 1 - (1 - LIE_RATE) ** canaryCount(SHARD_SIZE);
  const pRep = replicationProbability(streak);
  const pDiff = 1 - (1 - LIE_RATE) ** SHARD_SIZE;
  const q = 1 - (1 - pCanary) * (1 - pRep * pDiff);
  return { q, pRep, median: Math.max(1, Math.ceil(Math.log(0.5) / Math.log(1 - q))) };
}

console.log(
  `shards until a ${pct(LIE_RATE)} liar is banned, ${RUNS} runs each on a fresh copy of the warmed-up database; ` +
    `q = 1 - (1 - p_canary)(1 - p_rep p_diff), p_canary = 1 - 0.9^${canaryCount(SHARD_SIZE)}, ` +
    `p_diff = 1 - 0.9^${SHARD_SIZE}, predicted median = ceil(ln 0.5 / ln(1 - q))`,
);
for (const [name, fresh] of [
  ["(a) new cheater", true],
  ["(b) veteran turned cheater", false],
] as const) {
  const runs: BanRun[] = [];
  for (let i = 0; i < RUNS; i++) {
    const cheater = fresh ? `newcomer${i}` : VETERAN;
    runs.push(await banRun(cheater, fresh, `run-${name}-${i}`));
  }
  const caught = runs.filter((r) => r.untilBan !== undefined);
  const until = caught.map((r) => r.untilBan as number).sort((a, b) => a - b);
  const atBan = runs.flatMap((r) => (r.returnedAtBan === undefined ? [] : [r.returnedAtBan]));
  const streak = median(runs.map((r) => r.streak));
  const p = predicted(streak);
  const methods = Object.entries(Object.groupBy(caught, (r) => r.method ?? "?") as Record<string, BanRun[]>).map(
    ([m, rs]) => `${m} ${rs.length}`,
  );
  console.log(
    `${name}: streak at the start ${streak}, just before the ban median ${median(runs.map((r) => r.streakBeforeBan))} (p_rep ${p.pRep.toFixed(2)}, q ${p.q.toFixed(3)}): ` +
      `median ${until.length ? median(until) : "-"} shards until banned (predicted ${p.median}), ` +
      `range ${until[0] ?? "-"}..${until.at(-1) ?? "-"}, all: ${until.join(" ")}; caught in ${caught.length}/${runs.length} runs ` +
      `(by ${methods.join(", ")}); copies it had returned when banned: median ${atBan.length ? median(atBan) : "-"}; ` +
      `ban step at the end: ${runs.map((r) => r.banCount).join(" ")}; ` +
      `jobs with wrong output: ${sum(runs.map((r) => r.wrongOutputs))} of ${sum(runs.map((r) => r.jobs))}`,
  );
  for (const r of runs)
    if (r.honestBans.length) problems.push(`${name}: HONEST PROVIDER BANNED: ${r.honestBans.join("; ")}`);
}
for (const p of problems) console.log(`!!! ${p}`);
await onnx.dispose();
rmSync(warm, { recursive: true, force: true });
