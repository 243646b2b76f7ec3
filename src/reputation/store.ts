import type { Store } from "../store/db.ts";
import { freshStats, type ProviderStats, scoreParts } from "./score.ts";

/**
 * What this node remembers about providers, in SQLite so a restart forgets nothing: per provider and
 * model the counts the score is made of (score.ts), the bans (escalating, each with its evidence),
 * and the ledger of penalties that the payments issue will apply to bonds and pending earnings.
 */

/** The first ban lasts this long... */
export const BAN_BASE_MS = 60 * 60_000;
/** ...each further one BAN_ESCALATION times longer... */
export const BAN_ESCALATION = 4;
/** ...up to this. */
export const BAN_MAX_MS = 30 * 24 * 60 * 60_000;
/** A proven fault is owed back as this many times the faulty copy's price (the slashing rate). */
export const FAULT_PENALTY_MULTIPLIER = 10;

export interface Ban {
  provider: string;
  /** How many times it has been banned (the escalation step). */
  count: number;
  until: number;
  reason: string;
  evidenceId: string | undefined;
  /** The node whose evidence it rests on. */
  source: string;
  bannedAt: number;
  /** Copies it returned to this node (since its previous ban) up to the one that got it banned. */
  copiesBefore: number | undefined;
}

export interface Penalty {
  id: number;
  provider: string;
  jobId: string | undefined;
  kind: string;
  amountMsat: number;
  evidenceId: string | undefined;
  createdAt: number;
  appliedAt: number | undefined;
}

/** One returned copy, as the stats take it. */
export interface CopyOutcome {
  /** Lease to return. */
  latencyMs: number;
  /** Work units (generated tokens or records). */
  units: number;
}

interface StatsRow {
  provider: string;
  model_sha256: string;
  verified: number;
  faulty: number;
  lost: number;
  streak: number;
  latency_ms: number;
  returned: number;
  units: number;
  wall_ms: number;
  announced_ups: number | null;
  seen: number;
  missed: number;
  first_seen: number;
  updated_at: number;
}

interface BanRow {
  provider: string;
  count: number;
  until: number;
  reason: string;
  evidence_id: string | null;
  source: string;
  banned_at: number;
  copies_before: number | null;
}

/** How long the `count`-th ban lasts. */
export function banDurationMs(count: number): number {
  return Math.min(BAN_MAX_MS, BAN_BASE_MS * BAN_ESCALATION ** Math.max(0, count - 1));
}

export class ReputationStore {
  private readonly db: Store["db"];

  constructor(
    store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.db = store.db;
  }

  stats(provider: string, modelSha256: string): ProviderStats {
    const row = this.db
      .query<StatsRow, [string, string]>("SELECT * FROM provider_stats WHERE provider = ? AND model_sha256 = ?")
      .get(provider, modelSha256);
    return row ? toStats(row) : freshStats(provider, modelSha256, this.now());
  }

  /** Every provider and model seen, best score first. */
  all(): ProviderStats[] {
    const rows = this.db.query<StatsRow, []>("SELECT * FROM provider_stats").all().map(toStats);
    const now = this.now();
    const scored = rows.map((s) => ({ s, score: scoreParts(s, this.banned(s.provider, now) !== undefined).score }));
    return scored.sort((a, b) => b.score - a.score || (a.s.provider < b.s.provider ? -1 : 1)).map((x) => x.s);
  }

  /** The provider's score for a model, 0 while it is banned. */
  score(provider: string, modelSha256: string): number {
    return scoreParts(this.stats(provider, modelSha256), this.banned(provider) !== undefined).score;
  }

  /** A copy's result was accepted: one more verified, the streak grows. */
  verified(provider: string, modelSha256: string, copy: CopyOutcome): void {
    this.bump(provider, modelSha256, "verified = verified + 1, streak = streak + 1", copy);
  }

  /** A copy's result was proven wrong: one more fault, the streak starts again. */
  faulty(provider: string, modelSha256: string, copy: CopyOutcome): void {
    this.bump(provider, modelSha256, "faulty = faulty + 1, streak = 0", copy);
  }

  /** A copy never came back (silent, stream broken, lease expired, deadline missed). */
  lost(provider: string, modelSha256: string): void {
    this.bump(provider, modelSha256, "lost = lost + 1");
  }

  /** An uptime probe: the provider announced itself (or answered) in time, or did not. */
  probed(provider: string, modelSha256: string, up: boolean): void {
    this.bump(provider, modelSha256, up ? "seen = seen + 1" : "missed = missed + 1");
  }

  /** What the provider announces it does, in work units per second, for the honest-hardware check. */
  announced(provider: string, modelSha256: string, unitsPerSecond: number): void {
    this.ensure(provider, modelSha256);
    this.db
      .query("UPDATE provider_stats SET announced_ups = ? WHERE provider = ? AND model_sha256 = ?")
      .run(unitsPerSecond, provider, modelSha256);
  }

  /**
   * Bans the provider for the next step of its escalation (`copiesBefore`: how many of its copies it
   * took to catch it); returns the ban. A provider banned now
   * keeps the ban it has: another fault found in work it did before the ban (copies settled after
   * it) is the same offence, not a second one.
   */
  ban(provider: string, reason: string, evidenceId: string | undefined, source: string, copiesBefore?: number): Ban {
    const now = this.now();
    const current = this.banned(provider, now);
    if (current) return current;
    const count = (this.banRow(provider)?.count ?? 0) + 1;
    const until = now + banDurationMs(count);
    this.db
      .query(
        `INSERT OR REPLACE INTO bans (provider, count, until, reason, evidence_id, source, banned_at, copies_before)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(provider, count, until, reason, evidenceId ?? null, source, now, copiesBefore ?? null);
    return this.banned(provider, now) as Ban;
  }

  /** The provider's ban while it lasts. */
  banned(provider: string, now = this.now()): Ban | undefined {
    const row = this.banRow(provider);
    return row && row.until > now ? toBan(row) : undefined;
  }

  /** Every ban ever given (expired ones too: they set the next ban's length). */
  bans(): Ban[] {
    return this.db.query<BanRow, []>("SELECT * FROM bans ORDER BY banned_at DESC").all().map(toBan);
  }

  /** Providers banned now. */
  bannedNow(now = this.now()): Set<string> {
    const rows = this.db.query<{ provider: string }, [number]>("SELECT provider FROM bans WHERE until > ?").all(now);
    return new Set(rows.map((r) => r.provider));
  }

  /** Records a penalty owed; returns its id (the payments ledger applies it once, by that id). */
  penalize(provider: string, jobId: string | undefined, kind: string, amountMsat: number, evidenceId?: string): number {
    const { lastInsertRowid } = this.db
      .query(
        `INSERT INTO penalties (provider, job_id, kind, amount_msat, evidence_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(provider, jobId ?? null, kind, Math.ceil(amountMsat), evidenceId ?? null, this.now());
    return Number(lastInsertRowid);
  }

  /** The penalty was applied: the provider's bond and earnings were forfeited in the ledger. */
  applied(penaltyId: number): void {
    this.db.query("UPDATE penalties SET applied_at = ? WHERE id = ? AND applied_at IS NULL").run(this.now(), penaltyId);
  }

  penalties(provider?: string): Penalty[] {
    const rows = this.db
      .query<
        {
          id: number;
          provider: string;
          job_id: string | null;
          kind: string;
          amount_msat: number;
          evidence_id: string | null;
          created_at: number;
          applied_at: number | null;
        },
        [string | null, string | null]
      >("SELECT * FROM penalties WHERE (? IS NULL OR provider = ?) ORDER BY id")
      .all(provider ?? null, provider ?? null);
    return rows.map((r) => ({
      id: r.id,
      provider: r.provider,
      jobId: r.job_id ?? undefined,
      kind: r.kind,
      amountMsat: r.amount_msat,
      evidenceId: r.evidence_id ?? undefined,
      createdAt: r.created_at,
      appliedAt: r.applied_at ?? undefined,
    }));
  }

  /** Stores signed evidence (reputation/evidence.ts) under its id. */
  saveEvidence(id: string, provider: string, modelSha256: string, jobId: string | undefined, body: Uint8Array): void {
    this.db
      .query(
        "INSERT OR IGNORE INTO evidence (id, provider, model_sha256, job_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(id, provider, modelSha256, jobId ?? null, body, this.now());
  }

  /** The signed envelope of a stored piece of evidence. */
  evidenceBytes(id: string): Uint8Array | undefined {
    return (
      this.db.query<{ body: Uint8Array }, [string]>("SELECT body FROM evidence WHERE id = ?").get(id)?.body ?? undefined
    );
  }

  /** Attaches evidence signed after the ban was given (signing is asynchronous). */
  attachEvidence(provider: string, jobId: string, evidenceId: string): void {
    this.db
      .query("UPDATE bans SET evidence_id = ? WHERE provider = ? AND evidence_id IS NULL")
      .run(evidenceId, provider);
    this.db
      .query("UPDATE penalties SET evidence_id = ? WHERE provider = ? AND job_id = ? AND evidence_id IS NULL")
      .run(evidenceId, provider, jobId);
  }

  private banRow(provider: string): BanRow | null {
    return this.db.query<BanRow, [string]>("SELECT * FROM bans WHERE provider = ?").get(provider);
  }

  private ensure(provider: string, modelSha256: string): void {
    const now = this.now();
    this.db
      .query(
        `INSERT OR IGNORE INTO provider_stats (provider, model_sha256, first_seen, updated_at) VALUES (?, ?, ?, ?)`,
      )
      .run(provider, modelSha256, now, now);
  }

  private bump(provider: string, modelSha256: string, sets: string, copy?: CopyOutcome): void {
    this.ensure(provider, modelSha256);
    const extra = copy
      ? ", returned = returned + 1, latency_ms = latency_ms + ?, units = units + ?, wall_ms = wall_ms + ?"
      : "";
    const args = copy ? [copy.latencyMs, copy.units, copy.latencyMs] : [];
    this.db
      .query(`UPDATE provider_stats SET ${sets}${extra}, updated_at = ? WHERE provider = ? AND model_sha256 = ?`)
      .run(...args, this.now(), provider, modelSha256);
  }
}

function toStats(r: StatsRow): ProviderStats {
  return {
    provider: r.provider,
    modelSha256: r.model_sha256,
    verified: r.verified,
    faulty: r.faulty,
    lost: r.lost,
    streak: r.streak,
    returned: r.returned,
    latencyMs: r.latency_ms,
    units: r.units,
    wallMs: r.wall_ms,
    announcedUps: r.announced_ups ?? undefined,
    seen: r.seen,
    missed: r.missed,
    firstSeen: r.first_seen,
    updatedAt: r.updated_at,
  };
}

function toBan(r: BanRow): Ban {
  return {
    provider: r.provider,
    count: r.count,
    until: r.until,
    reason: r.reason,
    evidenceId: r.evidence_id ?? undefined,
    source: r.source,
    bannedAt: r.banned_at,
    copiesBefore: r.copies_before ?? undefined,
  };
}
