import type { PrivateKey } from "@libp2p/interface";
import { SUPERSEDED_REASON } from "../../jobs/job-store.ts";
import type { Shard, ShardResult } from "../../jobs/records.ts";
import type { AssignmentRecord, JobRecord } from "../../jobs/rows.ts";
import { shardFromWire } from "../../jobs/shard-codec.ts";
import { type CanaryCheck, CanaryPool, checkCanaries, type Mix } from "../../jobs/verify/canaries.ts";
import { DEFAULT_TOLERANCE, type Tolerance } from "../../jobs/verify/compare.ts";
import { pickPayload, pickResult, resultCount } from "../../jobs/verify/records.ts";
import type { Verification } from "../../jobs/verify/verdict.ts";
import { findModelBySha } from "../../models/catalog.ts";
import { type Fault, signEvidence } from "../../reputation/evidence.ts";
import { replicationProbability } from "../../reputation/score.ts";
import { FAULT_PENALTY_MULTIPLIER, ReputationStore } from "../../reputation/store.ts";
import type { Store } from "../../store/db.ts";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { CapabilityRecord } from "../protocols/capability/messages.ts";
import { BENCH_MODEL } from "../serving.ts";
import { decode } from "../wire.ts";
import { CanarySupply } from "./canary-supply.ts";
import type { AggregatorPayments } from "./payments.ts";
import { resultFromBytes } from "./results.ts";
import type { Decision, Outvoted, Settlement } from "./settle.ts";
import type { AggregatorStore } from "./store.ts";
import { rescoredOk } from "./text-review.ts";

/**
 * The aggregator's side of "nobody has to be trusted": what each copy carries (canaries), how many
 * copies a shard needs (adaptive replication), what a returned copy's canaries say, and what
 * follows from a verdict: reputation, and for a provider caught wrong a ban, signed evidence, a
 * penalty in the ledger and its other copies of running jobs disowned. The coordinator calls it;
 * the rules themselves live in jobs/verify/ and reputation/.
 */
const log = logger("aggregator:trust");

/** Longest wait for this node's own answer to a record a provider got wrong (the evidence's reference). */
export const REFERENCE_TIMEOUT_MS = 60_000;
/** Uptime is sampled this often per model while its jobs run: is each provider's record fresh? */
export const UPTIME_PROBE_MS = 10_000;
export interface TrustInit {
  store: AggregatorStore;
  db: Store;
  self: string;
  /** Signs evidence; without a key evidence is kept unsigned (tests of the coordinator alone). */
  privateKey?: PrivateKey;
  /** Runs a shard on this node's own engine, when it has the model (canaries computed here). */
  reference?: (
    model: { name: string; sha256: string },
    shard: Shard,
    signal: AbortSignal,
  ) => Promise<ShardResult | undefined>;
  random?: () => number;
  now?: () => number;
  /** The books, when this aggregator takes payment: a conviction claws back and forfeits. */
  payments?: AggregatorPayments;
}

/** A copy's result after its canaries came out, or why it is refused. */
export type Inspection =
  | {
      ok: true;
      result: ShardResult;
      canaries: { total: number; right: number };
      /** Text canaries whose text differs from the known one: for re-scoring (text-review.ts). */
      unsure: CanaryCheck["unsure"];
    }
  | { ok: false; fault: Fault };

export class Trust {
  readonly reputation: ReputationStore;
  readonly canaries: CanaryPool;
  private readonly random: () => number;
  private readonly now: () => number;
  readonly supply: CanarySupply;

  constructor(private readonly init: TrustInit) {
    this.now = init.now ?? Date.now;
    this.random = init.random ?? Math.random;
    this.reputation = new ReputationStore(init.db, this.now);
    this.canaries = new CanaryPool(init.db, this.now);
    this.supply = new CanarySupply({
      store: init.store,
      canaries: this.canaries,
      reputation: this.reputation,
      reference: init.reference,
      random: this.random,
    });
  }

  /** How closely copies of this job's model must agree: its catalog entry's `verify`, else the defaults. */
  tolerance(job: JobRecord): Tolerance {
    return findModelBySha(job.spec.model.sha256)?.verify ?? DEFAULT_TOLERANCE;
  }

  /**
   * An uptime probe of a model's providers (at most every UPTIME_PROBE_MS): each with a valid
   * record counts as up, each seen before without one as down; and the speed each announces for
   * the benchmark model, for the honest-hardware check (delivered against announced, score.ts).
   */
  observe(sha256: string, records: readonly CapabilityRecord[]): void {
    const now = this.now();
    if (now - (this.probedAt.get(sha256) ?? 0) < UPTIME_PROBE_MS) return;
    this.probedAt.set(sha256, now);
    const present = new Set(records.map((r) => r.peerId));
    const benchmark = findModelBySha(sha256)?.name === BENCH_MODEL;
    for (const r of records) {
      if (r.peerId === this.init.self) continue;
      this.reputation.probed(r.peerId, sha256, true);
      if (benchmark && r.hardware.tokensPerSecond)
        this.reputation.announced(r.peerId, sha256, r.hardware.tokensPerSecond);
    }
    for (const s of this.reputation.all()) {
      if (s.modelSha256 === sha256 && !present.has(s.provider)) this.reputation.probed(s.provider, sha256, false);
    }
  }

  private readonly probedAt = new Map<string, number>();

  /** Providers that may not be given copies now. */
  banned(): Set<string> {
    return this.reputation.bannedNow(this.now());
  }

  /**
   * Copies the shard needs, decided when its first copy is leased: the job's redundancy, or for a
   * provider with a long verified streak (and canaries to check it with) now and then only the
   * job's floor (`minVerification`), as `replicationProbability` says.
   */
  targetFor(job: JobRecord, provider: string): number {
    const ceiling = job.spec.redundancy;
    const floor = Math.min(ceiling, job.spec.minVerification ?? 1);
    if (floor >= ceiling) return ceiling;
    if (this.canaries.size(job.spec.model.sha256, this.supply.shapeOf(job)) === 0) return ceiling;
    const { streak } = this.reputation.stats(provider, job.spec.model.sha256);
    return this.random() < replicationProbability(streak) ? ceiling : floor;
  }

  /** A returned copy: right record count, canaries right; the result without them. */
  inspect(result: ShardResult, sent: Shard, mix: Mix, tolerance: Tolerance = DEFAULT_TOLERANCE): Inspection {
    if (resultCount(result) !== sent.count) {
      return {
        ok: false,
        fault: { kind: "shape", detail: `${resultCount(result)} records returned for a shard of ${sent.count}` },
      };
    }
    const check: CanaryCheck = checkCanaries(result, mix, tolerance);
    const wrong = check.wrong[0];
    if (wrong) {
      return {
        ok: false,
        fault: {
          kind: "canary",
          detail: `canary at record ${wrong.position} of ${sent.count} answered wrong (${check.wrong.length} of ${mix.canaries.length})`,
          record: wrong.canary.record,
          got: wrong.got,
          expected: wrong.canary.answer,
        },
      };
    }
    return {
      ok: true,
      result: check.result,
      canaries: { total: mix.canaries.length, right: check.right },
      unsure: check.unsure,
    };
  }

  /**
   * A shard's answer is decided (in the settling transaction, before the shard is verified): the
   * copies that lost the vote are judged first, so a provider convicted here cannot complete the job.
   */
  judge(job: JobRecord, decision: Decision): void {
    for (const loser of decision.outvoted) this.outvoted(job, loser, decision);
  }

  /** The copies' verdicts and reputation after their shard settled (in the settling transaction). */
  settled(job: JobRecord, settlement: Settlement, canaries: Map<string, Verification["canaries"]>): void {
    if (settlement.outcome !== "verified") return;
    const { jobs } = this.init.store;
    const model = job.spec.model.sha256;
    const single = settlement.voters === 1 && settlement.accepted.length === 1;
    for (const copy of settlement.accepted) {
      const c = canaries.get(copy.id);
      const rescored = rescoredOk(copy);
      jobs.setVerification(copy.id, {
        method: rescored ? "re-score" : single ? (c?.total ? "spot-check" : "agreement") : "agreement",
        verdict: "accepted",
        detail: single
          ? `single copy${c?.total ? `, ${c.right} of ${c.total} canaries right` : ""}`
          : `${settlement.voters} providers agree${rescored ? " (texts re-scored)" : ""}${c?.total ? `; ${c.right} of ${c.total} canaries right` : ""}`,
        ...(c ? { canaries: c } : {}),
      });
      this.reputation.verified(copy.provider, model, this.outcome(copy, job));
    }
    // Copies still running when the shard was decided, leased before the copies that decided it:
    // slower than a provider that started later (a speculative twin overtook them). A missed
    // deadline in effect: it costs completion, never a ban.
    const lastAccepted = Math.max(...settlement.accepted.map((c) => c.leasedAt));
    for (const c of jobs.assignments(settlement.shard.id)) {
      if (
        c.state === "failed" &&
        c.reason === SUPERSEDED_REASON &&
        c.returnedAt === undefined &&
        c.leasedAt < lastAccepted
      ) {
        this.reputation.lost(c.provider, model);
      }
    }
    this.supply.learn(job, settlement);
  }

  /** Records a check a copy passed before it was stored (re-scoring). */
  setVerification(a: AssignmentRecord, verification: Verification): void {
    this.init.store.jobs.setVerification(a.id, verification);
  }

  /** A copy that did not come back: the provider loses completion, not trust. */
  lost(a: AssignmentRecord): void {
    if (this.reputation.banned(a.provider)) return;
    this.reputation.lost(a.provider, this.init.store.jobs.job(a.jobId).spec.model.sha256);
  }

  /**
   * A provider caught wrong: its copy rejected (if not already), the fault counted, a ban for the
   * next step of its escalation, a penalty in the ledger, and its verified copies of running jobs
   * disowned (their shards reopened when nobody else vouches for them). The evidence is signed after
   * (signing is asynchronous) and attached to the ban. `settling`: the copy lost the vote of a shard
   * being settled, which fails it itself. Returns the ban's end.
   */
  convict(a: AssignmentRecord, job: JobRecord, fault: Fault, shardIndex: number, settling = false): number {
    const { jobs } = this.init.store;
    const reason = `caught wrong (${fault.kind}): ${fault.detail}`;
    const ban = this.init.db.db
      .transaction(() => {
        const current = jobs.assignment(a.id);
        const live = current.state === "leased" || current.state === "running" || current.state === "returned";
        if (live && !settling) jobs.reject(a.id, reason);
        jobs.setVerification(a.id, {
          method:
            fault.kind === "canary"
              ? "canary"
              : fault.kind === "majority"
                ? "majority"
                : fault.kind === "re-score"
                  ? "re-score"
                  : "agreement",
          verdict: "rejected",
          detail: fault.detail,
        });
        this.reputation.faulty(a.provider, job.spec.model.sha256, this.outcome(a, job));
        const given = this.reputation.ban(a.provider, reason, undefined, this.init.self, this.copiesBefore(a));
        const price = this.init.db.db
          .query<{ p: number | null }, [string]>("SELECT unit_price_msat AS p FROM assignments WHERE id = ?")
          .get(a.id)?.p;
        const units = jobs.shard(a.shardId).count;
        const penalty = this.reputation.penalize(
          a.provider,
          job.id,
          `fault:${fault.kind}`,
          units * (price ?? 0) * FAULT_PENALTY_MULTIPLIER,
        );
        jobs.disown(a.provider, `its provider was banned: ${reason}`, settling ? a.id : undefined);
        if (this.init.payments) {
          this.init.payments.convicted(a.provider, penalty, job.id);
          this.reputation.applied(penalty);
        }
        return given;
      })
      .immediate();
    log.warn("provider banned", { provider: a.provider, until: new Date(ban.until).toISOString(), reason });
    void this.attachEvidence(a, job, fault, shardIndex);
    return ban.until;
  }

  private async attachEvidence(a: AssignmentRecord, job: JobRecord, fault: Fault, shardIndex: number): Promise<void> {
    const { record, got } = fault;
    if (!this.init.privateKey || !record || !got) return;
    try {
      // No reference answer yet (a re-scored text nobody else returned): computed here, when possible.
      const expected =
        fault.expected ??
        (await this.init.reference?.(
          job.spec.model,
          { index: 0, start: 0, count: 1, payload: record },
          AbortSignal.timeout(REFERENCE_TIMEOUT_MS),
        ));
      if (!expected) return;
      const evidence = await signEvidence(
        this.init.privateKey,
        this.init.self,
        { ...fault, record, got, expected },
        { provider: a.provider, model: job.spec.model, jobId: job.id, shard: shardIndex, at: this.now() },
      );
      const db = this.init.db.db;
      db.transaction(() => {
        this.reputation.saveEvidence(evidence.id, a.provider, job.spec.model.sha256, job.id, evidence.bytes);
        this.reputation.attachEvidence(a.provider, job.id, evidence.id);
        const v = this.init.store.jobs.assignment(a.id).verification;
        if (v) this.init.store.jobs.setVerification(a.id, { ...v, evidenceId: evidence.id });
      })();
    } catch (err) {
      log.error("evidence not stored", { provider: a.provider, err: errorMessage(err) });
    }
  }

  /** A copy on the losing side of a settled vote: proof by majority, with the first differing record. */
  private outvoted(job: JobRecord, loser: Outvoted, settlement: Decision): void {
    const { store } = this.init;
    if (store.meta(job.id).kind === "prompts") {
      // Text that differs is no proof (honest machines can diverge at a near tie); only re-scoring
      // convicts text (text-review.ts). The copy loses the vote and nothing else.
      store.jobs.setVerification(loser.copy.id, {
        method: "majority",
        verdict: "rejected",
        detail: `${loser.reason}: ${settlement.voters} providers agree on another text (not held against it)`,
      });
      return;
    }
    const at = loser.records === "all" ? 0 : (loser.records[0] ?? 0);
    let fault: Fault = {
      kind: "majority",
      detail: `${loser.reason}: ${settlement.voters} providers agree on another answer`,
    };
    try {
      const input = shardFromWire(decode(store.shardInput(settlement.shard.id))).payload;
      const winner = store.jobs.result(settlement.accepted[0]?.id as string);
      const mine = store.jobs.result(loser.copy.id);
      if (winner && "bytes" in winner && mine && "bytes" in mine) {
        const expected = pickResult(resultOf(winner.bytes), [at]);
        const got = resultOf(mine.bytes);
        fault = {
          ...fault,
          detail: `${fault.detail} (first at record ${at})`,
          record: pickPayload(input, [at]),
          expected,
          got: resultCount(got) > at ? pickResult(got, [at]) : got,
        };
      }
    } catch (err) {
      log.debug("no record-level evidence", { err: errorMessage(err) });
    }
    this.convict(loser.copy, job, fault, settlement.shard.index, true);
  }

  /**
   * Shards until detection: the provider's copies returned here since its previous ban (or ever),
   * the one caught included (a copy convicted on arrival was never stored as returned).
   */
  private copiesBefore(a: AssignmentRecord): number {
    const since = this.reputation.bans().find((b) => b.provider === a.provider)?.bannedAt ?? 0;
    const row = this.init.db.db
      .query<{ n: number }, [string, number, string]>(
        "SELECT count(*) AS n FROM assignments WHERE provider = ? AND returned_at > ? AND id != ?",
      )
      .get(a.provider, since, a.id);
    return (row?.n ?? 0) + 1;
  }

  private outcome(a: AssignmentRecord, job: JobRecord): { latencyMs: number; units: number } {
    const current = this.init.store.jobs.assignment(a.id);
    const end = current.returnedAt ?? this.now();
    const units = this.init.store.copyUnits(a.id, this.init.store.meta(job.id).kind);
    return { latencyMs: Math.max(0, end - (current.startedAt ?? current.leasedAt)), units };
  }
}

/** A stored result (the aggregator's own encoding, results.ts), without provenance. */
function resultOf(bytes: Uint8Array): ShardResult {
  return resultFromBytes(bytes, []);
}
