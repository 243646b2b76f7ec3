import type { PrivateKey } from "@libp2p/interface";
import { IllegalTransitionError, LeaseLostError, LeaseRefusedError } from "../../jobs/errors.ts";
import { eligibleProviders, type JobTerms } from "../../jobs/feasibility.ts";
import type { Shard } from "../../jobs/records.ts";
import type { AssignmentRecord, JobRecord } from "../../jobs/rows.ts";
import { MAX_SPECULATIVE_COPIES, planAssignments } from "../../jobs/scheduler.ts";
import { shardFromWire } from "../../jobs/shard-codec.ts";
import type { Store } from "../../store/db.ts";
import { errorMessage, InvalidInputError, TimeoutError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { type CapabilityRecord, offerFor, unitPriceMsat } from "../protocols/capability/messages.ts";
import { MAX_DEADLINE_MS } from "../protocols/infer/messages.ts";
import { RemoteShardError } from "../protocols/shard/index.ts";
import { decode } from "../wire.ts";
import { Backoff } from "./backoff.ts";
import { BATCH_SHARD_MS, batches, MAX_BATCH_SHARDS, single } from "./batches.ts";
import type { CanarySupply } from "./canary-supply.ts";
import { Intake } from "./intake.ts";
import type { AggregatorNetwork } from "./network.ts";
import type { AggregatorPayments } from "./payments.ts";
import { clientRefusal, planJob } from "./plan-job.ts";
import { ReturnedCopies } from "./returned-copies.ts";
import type { AggregatorStore } from "./store.ts";
import { TextReview } from "./text-review.ts";
import { Trust } from "./trust.ts";

/**
 * The aggregator's engine room: every tick it expires lost leases, fails overdue jobs, renews the
 * leases of copies whose providers are still talking, asks the planner (jobs/scheduler.ts) what to
 * lease to whom, and runs each leased copy on its provider over /infernet/shard/1.0.0. A returned
 * copy is stored and its shard settled (settle.ts); a verified job is handed to `onVerified` for
 * merging. Every state change goes through the store in a transaction first, so a SIGKILL at any
 * point leaves a state that `recover()` turns back into work.
 */
const log = logger("aggregator");

export { BATCH_SHARD_MS, BATCH_TARGET_MS, MAX_BATCH_SHARDS } from "./batches.ts";

/** Tiny copies one provider holds at once: four batches' worth, well within its stream queue. */
export const MAX_BATCHED_IN_FLIGHT_PER_PROVIDER = 4 * MAX_BATCH_SHARDS;
/** The planner runs at least this often (lease expiry, silent providers, new providers). */
export const TICK_MS = 250;
/**
 * Kicks (a copy returned or was lost) plan again at most this often: planning reads the job's
 * unfinished shards, and a burst of returns is better served by one plan than by one each.
 */
export const MIN_PLAN_GAP_MS = 5;
/**
 * A copy whose provider sent nothing (not even a keepalive, which comes every second) for this long
 * is given up: the provider vanished. Measured on a loaded 2-core machine, 3 s cut off live providers.
 */
export const QUIET_TIMEOUT_MS = 5_000;
/** Until the provider's first frame the call also dials and opens a stream, which takes longer under load. */
export const FIRST_FRAME_TIMEOUT_MS = 15_000;
/** An active copy's lease is renewed when it has less than this left. */
export const RENEW_MARGIN_MS = 2_000;
/**
 * Streams (copies, or batches of tiny ones) one provider holds at once: under the shard protocol's
 * default slots plus queue (10), leaving room for a stream that is still closing, so none is refused as busy.
 */
export const MAX_IN_FLIGHT_PER_PROVIDER = 8;
/** A job the planner cannot place (no provider, too expensive) is failed after this long, not at once. */
export const UNPLACEABLE_GRACE_MS = 30_000;
/** Provider records are looked up again this often while a job needs them. */
export const PROVIDER_REFRESH_MS = 5_000;

export interface CoordinatorInit {
  network: AggregatorNetwork;
  /** Signs evidence of faults (the node's key). */
  privateKey?: PrivateKey;
  store: AggregatorStore;
  db: Store;
  now?: () => number;
  tickMs?: number;
  quietTimeoutMs?: number;
  firstFrameTimeoutMs?: number;
  maxInFlight?: number;
  unplaceableGraceMs?: number;
  /** A job changed (for watchers). */
  onChange: (jobId: string) => void;
  /** Every shard of a job is verified: merge it. */
  onVerified: (jobId: string) => void;
  /** The books, when this aggregator takes payment (escrow, releases, refunds, forfeits). */
  payments?: AggregatorPayments;
}

/** One stream to a provider, carrying one shard or a batch of tiny ones. */
interface Link {
  controller: AbortController;
  lastActivity: number;
  /** Whether the provider has sent anything yet. */
  heard: boolean;
}

/** One copy in flight, on its link. */
interface Call {
  assignment: AssignmentRecord;
  link: Link;
  leaseDeadline: number;
  leaseMs: number;
}

export class Coordinator {
  private readonly calls = new Map<string, Call>();
  private readonly running = new Set<Promise<void>>();
  private readonly returned: ReturnedCopies;
  readonly trust: Trust;
  private readonly intake: Intake;
  /** Aborted on stop: work the coordinator started on its own (canaries computed here). */
  private readonly lifetime = new AbortController();
  private readonly backoff = new Backoff();
  private readonly unplaceableSince = new Map<string, number>();
  private readonly lookups = new Map<string, number>();
  readonly late = new Set<string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private scheduled = false;
  private lastStep = 0;
  private stopping = false;
  private readonly now: () => number;

  constructor(private readonly init: CoordinatorInit) {
    this.now = init.now ?? Date.now;
    this.trust = new Trust({
      store: init.store,
      db: init.db,
      self: init.network.self,
      now: this.now,
      ...(init.privateKey ? { privateKey: init.privateKey } : {}),
      ...(init.network.reference ? { reference: init.network.reference } : {}),
      ...(init.payments ? { payments: init.payments } : {}),
    });
    this.returned = new ReturnedCopies(init.store, init.db.db, this.trust, init.onVerified, init.payments);
    this.intake = new Intake({
      trust: this.trust,
      returned: this.returned,
      review: new TextReview(init.store, init.network.rescore, init.network.reference?.bind(init.network)),
      rescores: init.network.rescore !== undefined,
      signal: this.lifetime.signal,
      // Proof of a fault: the provider is banned; back off and give up its other calls at once.
      onConvicted: (provider) => {
        this.backoff.failed(provider, this.now(), "severe");
        this.abandon(provider, `${provider} was banned`);
      },
    });
  }

  /**
   * Picks up where a previous process stopped: copies it had in flight died with it (their streams
   * are gone), so they are released at once, not counted as the providers' failures.
   */
  recover(): void {
    const { jobs } = this.init.store;
    for (const job of jobs.unfinishedJobs()) {
      for (const a of jobs.inFlight(job.id)) {
        jobs.release(a.id, "aggregator restarted", { countRetry: false });
      }
      this.init.onChange(job.id);
    }
  }

  start(): void {
    this.stopping = false;
    this.timer = setInterval(() => this.step(true), this.init.tickMs ?? TICK_MS);
    this.kick();
  }

  /** Stops leasing, cancels the copies in flight and releases them (they did not fail). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.lifetime.abort(new TimeoutError("the aggregator is stopping"));
    for (const call of this.calls.values()) call.link.controller.abort(new TimeoutError("the aggregator is stopping"));
    await Promise.allSettled([...this.running]);
  }

  /** Plans soon (coalesced): after a submission, a returned copy or a lost one. */
  kick(): void {
    // Not started (no timer) or stopping: nothing is leased.
    if (this.scheduled || this.stopping || this.timer === undefined) return;
    this.scheduled = true;
    const wait = Math.max(0, this.lastStep + MIN_PLAN_GAP_MS - performance.now());
    setTimeout(() => {
      this.scheduled = false;
      this.step(false);
    }, wait);
  }

  /** Copies in flight now, by provider (for status and tests). */
  inFlight(): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.calls.values()) out.set(c.assignment.provider, (out.get(c.assignment.provider) ?? 0) + 1);
    return out;
  }

  /**
   * One round: on the periodic tick (`maintain`) also expire leases, fail overdue jobs and watch the
   * calls in flight; on a kick (a copy came back or was lost) only plan, which is what it changed.
   */
  private step(maintain = false): void {
    if (this.stopping) return;
    this.lastStep = performance.now();
    try {
      this.stepOnce(this.now(), maintain);
    } catch (err) {
      log.error("aggregator step failed", { err: errorMessage(err) });
    }
  }

  private stepOnce(now: number, maintain: boolean): void {
    const { jobs } = this.init.store;
    const touched = new Set<string>();
    if (maintain) {
      for (const a of jobs.expireLeases(now)) {
        this.calls.get(a.id)?.link.controller.abort(new TimeoutError(`the lease on shard copy ${a.id} expired`));
        // A missed deadline costs the provider score (completion), not a ban.
        this.trust.lost(a);
        touched.add(a.jobId);
      }
      for (const job of jobs.overdueJobs(now)) {
        jobs.failJob(job.id, "its deadline passed");
        touched.add(job.id);
      }
      // Escrow left in jobs that ended (verified, failed, past their deadline) goes back to clients.
      this.init.payments?.refundEnded();
      this.watchCalls(now, touched);
    }

    const unfinished = jobs.unfinishedJobs();
    const live = new Set(unfinished.map((j) => j.id));
    for (const call of this.calls.values()) {
      if (!live.has(call.assignment.jobId)) call.link.controller.abort(new TimeoutError("the job ended"));
    }
    // A job's first copies wait until its canaries are ready (computed here when the pool is short).
    const ready = unfinished.filter((j) => {
      if (this.trust.supply.ready(j.id)) return true;
      void this.trust.supply.prepareJob(j, this.lifetime.signal).then(() => this.kick());
      return false;
    });
    if (ready.length > 0) this.plan(ready, now, touched);
    for (const id of touched) this.init.onChange(id);
  }

  /** Gives up copies whose providers went silent; renews the leases of those still talking. */
  private watchCalls(now: number, touched: Set<string>): void {
    for (const call of this.calls.values()) {
      const { link } = call;
      const quiet = link.heard
        ? (this.init.quietTimeoutMs ?? QUIET_TIMEOUT_MS)
        : (this.init.firstFrameTimeoutMs ?? FIRST_FRAME_TIMEOUT_MS);
      if (now - link.lastActivity > quiet) {
        link.controller.abort(new TimeoutError(`${call.assignment.provider} sent nothing for ${quiet} ms`));
      } else if (call.leaseDeadline - now < RENEW_MARGIN_MS) {
        try {
          const renewed = this.init.store.jobs.renew(call.assignment.id, call.leaseMs);
          call.leaseDeadline = renewed.leaseDeadline;
        } catch (err) {
          if (!(err instanceof LeaseLostError)) throw err;
          // Decided here (superseded by copies that verified its shard, disowned), not the provider's
          // doing: the call is dropped, and its stream given up only when it carries nothing else live
          // (a batch's other copies go on; a late result for this one is refused harmlessly).
          this.calls.delete(call.assignment.id);
          if (![...this.calls.values()].some((c) => c.link === link)) {
            link.controller.abort(new TimeoutError("the lease was lost"));
          }
          touched.add(call.assignment.jobId);
        }
      }
    }
  }

  private plan(unfinished: JobRecord[], now: number, touched: Set<string>): void {
    const { store, network } = this.init;
    const models = [...new Set(unfinished.map((j) => j.spec.model.sha256))];
    for (const sha of models) this.refreshProviders(sha, now);
    for (const sha of models) this.trust.observe(sha, network.knownProviders(sha));
    const records = dedupe(models.flatMap((sha) => network.knownProviders(sha)));
    const snapshots = unfinished.map((j) => planJob(store, this.init.db.db, j));
    const jobsById = new Map(unfinished.map((j) => [j.id, j]));
    const issued = new Map(records.map((r) => [r.peerId, r.issuedAt]));
    // This node is among the providers when it serves the model (its copies run on its own engines).
    // A provider without the bond this aggregator asks for (payments.ts) is left out like a banned one.
    const unbonded = this.init.payments?.unbonded(records.map((r) => r.peerId).filter((p) => p !== network.self)) ?? [];
    const exclude = new Set([...this.backoff.excluded(now, (p) => issued.get(p)), ...this.trust.banned(), ...unbonded]);
    const plan = planAssignments({ jobs: snapshots }, records, now, {
      exclude,
      // Reputation places copies: a provider that loses copies or is slow gets fewer (scheduler.ts).
      score: (provider, sha256) => this.trust.reputation.score(provider, sha256),
      maxInFlight: this.init.maxInFlight ?? MAX_IN_FLIGHT_PER_PROVIDER,
      batch: { belowMs: BATCH_SHARD_MS, maxInFlight: MAX_BATCHED_IN_FLIGHT_PER_PROVIDER },
    });
    const refused = new Set(plan.refused.map((r) => r.jobId));
    for (const id of [...this.unplaceableSince.keys()]) if (!refused.has(id)) this.unplaceableSince.delete(id);
    const banned = new Set([...this.trust.banned(), ...unbonded]);
    for (const { jobId, error } of plan.refused) {
      // Enough providers, some only paused (backoff.ts: busy, or lost until they announce again):
      // the job waits for them without counting towards its grace. A provider that is really gone
      // stops counting when its record expires.
      const snapshot = snapshots.find((j) => j.id === jobId);
      if (snapshot && placeableIgnoringPauses(snapshot, records, now, banned)) {
        this.unplaceableSince.delete(jobId);
        continue;
      }
      if (!this.unplaceableSince.has(jobId)) {
        log.info("job cannot be placed now", {
          job: jobId,
          reason: error.message,
          excluded: [...exclude],
          known: records.filter((r) => r.expiresAt > now).map((r) => r.peerId),
        });
      }
      const since = this.unplaceableSince.get(jobId) ?? now;
      this.unplaceableSince.set(jobId, since);
      if (now - since >= (this.init.unplaceableGraceMs ?? UNPLACEABLE_GRACE_MS)) {
        const job = unfinished.find((j) => j.id === jobId) as JobRecord;
        store.jobs.failJob(jobId, clientRefusal(error, job.spec.maxPriceMsat, store.meta(jobId).feePercent).message);
        this.unplaceableSince.delete(jobId);
        touched.add(jobId);
      }
    }
    this.late.clear();
    for (const l of plan.late) this.late.add(l.jobId);
    const byPeer = new Map(records.map((r) => [r.peerId, r]));
    // Every lease of this tick in one transaction (with its price), then the calls.
    const leased = this.init.db.db
      .transaction(() => {
        const out: { a: AssignmentRecord; expectedMs: number }[] = [];
        for (const lease of plan.leases) {
          try {
            const a = lease.speculative
              ? store.jobs.leaseExtra(lease.shardId, lease.provider, lease.leaseMs, MAX_SPECULATIVE_COPIES)
              : store.jobs.lease(lease.shardId, lease.provider, lease.leaseMs);
            // Adaptive replication: the shard's first copy decides how many it gets (trust.ts).
            if (store.jobs.shard(a.shardId).target === undefined) {
              store.jobs.setTarget(a.shardId, this.trust.targetFor(jobsById.get(a.jobId) as JobRecord, a.provider));
            }
            const record = byPeer.get(lease.provider);
            const sha = (jobsById.get(a.jobId) as JobRecord).spec.model.sha256;
            if (record) store.setPrice(a.id, offerFor(record, sha)?.price ?? {}, unitPriceMsat(record, sha));
            out.push({ a, expectedMs: lease.expectedMs });
          } catch (err) {
            if (!(err instanceof LeaseRefusedError || err instanceof IllegalTransitionError)) throw err;
          }
        }
        return out;
      })
      .immediate();
    for (const group of batches(leased)) {
      const job = jobsById.get(group[0]?.jobId as string) as JobRecord;
      touched.add(job.id);
      this.dispatch(group, job, now);
    }
  }

  private refreshProviders(sha256: string, now: number): void {
    const last = this.lookups.get(sha256) ?? 0;
    if (now - last < PROVIDER_REFRESH_MS) return;
    this.lookups.set(sha256, now);
    this.init.network.findProviders(sha256).then(
      () => this.kick(),
      (err: unknown) => log.debug("provider lookup failed", { sha256, err: errorMessage(err) }),
    );
  }

  /** Runs a group of copies (one shard, or a batch of tiny ones) on their provider over one stream. */
  private dispatch(group: AssignmentRecord[], job: JobRecord, now: number): void {
    const link: Link = { controller: new AbortController(), lastActivity: now, heard: false };
    for (const a of group) {
      this.calls.set(a.id, {
        assignment: a,
        link,
        leaseDeadline: a.leaseDeadline,
        leaseMs: a.leaseDeadline - a.leasedAt,
      });
    }
    const done = this.runGroup(group, link, job)
      .catch((err: unknown) => log.error("shard copy bookkeeping failed", { job: job.id, err: errorMessage(err) }))
      .finally(() => {
        for (const a of group) this.calls.delete(a.id);
        this.running.delete(done);
        this.init.onChange(job.id);
        this.kick();
      });
    this.running.add(done);
  }

  private async runGroup(group: AssignmentRecord[], link: Link, job: JobRecord): Promise<void> {
    const { store, network } = this.init;
    const { jobs } = store;
    const provider = group[0]?.provider as string;
    const pending = new Map<number, AssignmentRecord>();
    const started = new Set<string>();
    const stored: Promise<void>[] = [];
    const sent = new Map<number, ReturnType<CanarySupply["mix"]>>();
    try {
      // Each copy goes out with canaries mixed in; what comes back is checked and stripped of them.
      const mixed = group.map((a) => this.trust.supply.mix(job, shardFromWire(decode(store.shardInput(a.shardId)))));
      const shards: Shard[] = mixed.map((m) => m.shard);
      for (const [i, shard] of shards.entries()) {
        pending.set(shard.index, group[i] as AssignmentRecord);
        sent.set(shard.index, mixed[i] as (typeof mixed)[number]);
      }
      const options = {
        signal: link.controller.signal,
        deadlineMs: Math.max(1, Math.min(MAX_DEADLINE_MS, job.spec.deadlineMs - this.now())),
        onActivity: () => {
          link.lastActivity = this.now();
          link.heard = true;
        },
      };
      const events =
        shards.length === 1
          ? single(network.runShard(provider, job.spec.model, shards[0] as Shard, options), shards[0] as Shard)
          : network.runShards(provider, job.spec.model, shards, options);
      for await (const event of events) {
        const a = pending.get(event.shard);
        if (!a) continue;
        if (event.type === "partial") {
          // A shard whose whole result comes at once goes from leased to returned directly.
          if (!started.has(a.id) && jobs.assignment(a.id).state === "leased") jobs.start(a.id);
          started.add(a.id);
          continue;
        }
        pending.delete(event.shard);
        // Checked and stored with whatever else returns meanwhile; the stream goes on to the next shard.
        const taken = this.intake.take(a, job, event, sent.get(event.shard) as ReturnType<CanarySupply["mix"]>);
        stored.push(
          taken.then(
            (outcome) => {
              if (outcome === "stored") this.backoff.succeeded(provider);
            },
            (err: unknown) => this.lost(a, err),
          ),
        );
      }
      if (pending.size > 0) {
        throw new RemoteShardError("protocol", provider, `${provider} left ${pending.size} shards undone`);
      }
    } catch (err) {
      for (const a of pending.values()) this.lost(a, err);
    }
    await Promise.all(stored);
  }

  /** A copy did not come back: decide what its provider's failure means for the copy and the provider. */
  private lost(a: AssignmentRecord, err: unknown): void {
    const { jobs } = this.init.store;
    const current = jobs.assignment(a.id);
    if (current.state !== "leased" && current.state !== "running") return; // settled elsewhere (expired, job over)
    const message = errorMessage(err);
    if (this.stopping) {
      jobs.release(a.id, "aggregator stopped", { countRetry: false });
      return;
    }
    const now = this.now();
    if (err instanceof RemoteShardError) {
      if (err.code === "bad-result") {
        jobs.reject(a.id, message);
        this.trust.lost(a);
        this.backoff.failed(a.provider, now, "severe");
      } else if (err.code === "busy") {
        jobs.release(a.id, "provider busy", { countRetry: false });
        this.backoff.failed(a.provider, now, "busy");
      } else {
        jobs.release(a.id, message);
        this.trust.lost(a);
        this.backoff.failed(a.provider, now, "lost");
        this.abandon(a.provider, message);
      }
    } else if (err instanceof InvalidInputError) {
      // The shard itself cannot be sent (too large): no provider will do better.
      jobs.failJob(a.jobId, message);
    } else {
      jobs.release(a.id, message);
      this.trust.lost(a);
      this.backoff.failed(a.provider, now, "lost");
      this.abandon(a.provider, message);
    }
    log.info("shard copy lost", { assignment: a.id, provider: a.provider, reason: message });
  }

  /**
   * A copy was lost with its provider (silent, stream broken, lease not renewed): the provider's other
   * calls share its connection, so they are given up now rather than one timeout each (a SIGKILLed
   * provider's copies all go elsewhere at once, those it has not answered yet included).
   */
  private abandon(provider: string, reason: string): void {
    for (const call of this.calls.values()) {
      if (call.assignment.provider !== provider || call.link.controller.signal.aborted) continue;
      call.link.controller.abort(new TimeoutError(`given up with ${provider}: another stream to it broke (${reason})`));
    }
  }
}

function placeableIgnoringPauses(
  job: JobTerms,
  records: readonly CapabilityRecord[],
  now: number,
  banned: ReadonlySet<string>,
): boolean {
  try {
    eligibleProviders(job, records, now, banned);
    return true;
  } catch {
    return false;
  }
}

function dedupe(records: CapabilityRecord[]): CapabilityRecord[] {
  return [...new Map(records.map((r) => [r.peerId, r])).values()];
}
