/**
 * Numbered schema migrations, applied in order inside one transaction each. Never edit a
 * migration that has shipped: add the next number.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "models and calibrations",
    sql: `
      -- Files whose sha256 we have verified; a file is trusted again without rehashing only
      -- while its size and mtime are unchanged.
      CREATE TABLE model_files (
        path        TEXT PRIMARY KEY,
        model       TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        mtime_ms    INTEGER NOT NULL,
        verified_at INTEGER NOT NULL
      );
      -- Measured best llama.cpp thread count per model and machine.
      CREATE TABLE calibrations (
        model_sha256  TEXT NOT NULL,
        machine       TEXT NOT NULL,
        gpu           TEXT NOT NULL,
        threads       INTEGER NOT NULL,
        tokens_per_s  REAL NOT NULL,
        measured_at   INTEGER NOT NULL,
        results_json  TEXT NOT NULL,
        PRIMARY KEY (model_sha256, machine, gpu)
      );
      -- Hardware self-benchmark results, announced by providers later.
      CREATE TABLE benchmarks (
        name        TEXT NOT NULL,
        machine     TEXT NOT NULL,
        value       REAL NOT NULL,
        unit        TEXT NOT NULL,
        detail_json TEXT NOT NULL,
        measured_at INTEGER NOT NULL,
        PRIMARY KEY (name, machine)
      );
    `,
  },
  {
    version: 2,
    name: "jobs, shards and assignments",
    sql: `
      -- One row per submitted job; idempotency_key makes a retried submission find it again.
      CREATE TABLE jobs (
        id              TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        spec_json       TEXT NOT NULL,
        model           TEXT NOT NULL,
        model_sha256    TEXT NOT NULL,
        redundancy      INTEGER NOT NULL CHECK (redundancy >= 1),
        max_price_msat  INTEGER NOT NULL,
        deadline_ms     INTEGER NOT NULL,
        state           TEXT NOT NULL,
        -- Counters kept in step with shards so progress and completion are O(1).
        shard_count     INTEGER NOT NULL,
        shards_returned INTEGER NOT NULL DEFAULT 0,
        shards_verified INTEGER NOT NULL DEFAULT 0,
        error           TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        finished_at     INTEGER
      );
      CREATE INDEX jobs_state ON jobs (state);
      -- A contiguous range of input records; state follows its assignments.
      CREATE TABLE shards (
        id           INTEGER PRIMARY KEY,
        job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        idx          INTEGER NOT NULL,
        first_record INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        state        TEXT NOT NULL,
        retries      INTEGER NOT NULL DEFAULT 0,
        -- Copies still to lease: redundancy minus live copies, 0 once verified or failed.
        missing      INTEGER NOT NULL,
        result_sha256 TEXT,
        updated_at   INTEGER NOT NULL,
        UNIQUE (job_id, idx)
      );
      CREATE INDEX shards_job_state ON shards (job_id, state);
      CREATE INDEX shards_open ON shards (job_id, idx) WHERE missing > 0;
      -- One provider's lease on one copy of a shard, and what it returned.
      CREATE TABLE assignments (
        id             TEXT PRIMARY KEY,
        shard_id       INTEGER NOT NULL REFERENCES shards (id) ON DELETE CASCADE,
        job_id         TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        provider       TEXT NOT NULL,
        state          TEXT NOT NULL,
        leased_at      INTEGER NOT NULL,
        lease_deadline INTEGER NOT NULL,
        started_at     INTEGER,
        returned_at    INTEGER,
        ended_at       INTEGER,
        reason         TEXT,
        result_sha256  TEXT,
        result_bytes   BLOB,
        result_path    TEXT
      );
      -- Never two live copies of one shard on the same provider.
      CREATE UNIQUE INDEX assignments_one_copy_per_provider ON assignments (shard_id, provider)
        WHERE state IN ('leased', 'running', 'returned', 'verified');
      CREATE INDEX assignments_in_flight ON assignments (lease_deadline) WHERE state IN ('leased', 'running');
      CREATE INDEX assignments_shard ON assignments (shard_id);
      CREATE INDEX assignments_job ON assignments (job_id, state);
    `,
  },
  {
    version: 3,
    name: "aggregator jobs, shard inputs, outputs and jobs submitted from here",
    sql: `
      -- Aggregator side: what it needs beyond the job model to run a job for a client.
      CREATE TABLE aggregator_jobs (
        job_id       TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        -- The submitting peer as authenticated by its connection; only it may watch or fetch the job.
        client_peer  TEXT NOT NULL,
        payload_kind TEXT NOT NULL,
        records      INTEGER NOT NULL,
        shard_size   INTEGER NOT NULL,
        fee_percent  REAL NOT NULL
      );
      -- Each shard's payload (CBOR, as sent to providers), written with the job in one transaction.
      CREATE TABLE shard_inputs (
        shard_id INTEGER PRIMARY KEY REFERENCES shards (id) ON DELETE CASCADE,
        payload  BLOB NOT NULL
      );
      -- Shards of an upload in progress; moved to shard_inputs when the job is committed.
      CREATE TABLE job_uploads (
        upload_id TEXT NOT NULL,
        idx       INTEGER NOT NULL,
        payload   BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (upload_id, idx)
      );
      -- The merged output of a verified job.
      CREATE TABLE job_outputs (
        job_id     TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        path       TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        records    INTEGER NOT NULL,
        written_at INTEGER NOT NULL
      );
      -- What each copy cost: the provider's price when leased and its reported usage.
      ALTER TABLE assignments ADD COLUMN unit_price_msat REAL;
      ALTER TABLE assignments ADD COLUMN compute_ms REAL;
      ALTER TABLE assignments ADD COLUMN input_tokens INTEGER;
      ALTER TABLE assignments ADD COLUMN output_tokens INTEGER;
      -- Client side: jobs this node submitted to an aggregator, for \`infernet jobs\` and reconnecting.
      CREATE TABLE submitted_jobs (
        job_id           TEXT NOT NULL,
        aggregator       TEXT NOT NULL,
        aggregator_addrs TEXT NOT NULL,
        idempotency_key  TEXT NOT NULL UNIQUE,
        model            TEXT NOT NULL,
        records          INTEGER NOT NULL,
        shard_count      INTEGER NOT NULL,
        output_path      TEXT NOT NULL,
        state            TEXT NOT NULL,
        error            TEXT,
        submitted_at     INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (job_id, aggregator)
      );
    `,
  },
  {
    version: 4,
    name: "trust: reputation, bans, evidence, penalties, canaries, adaptive replication",
    sql: `
      -- What this node has seen of each provider, per model it ran copies of (reputation/score.ts).
      CREATE TABLE provider_stats (
        provider      TEXT NOT NULL,
        model_sha256  TEXT NOT NULL,
        -- Copies whose results were accepted, proven wrong, lost (silent, broken, lease expired).
        verified      INTEGER NOT NULL DEFAULT 0,
        faulty        INTEGER NOT NULL DEFAULT 0,
        lost          INTEGER NOT NULL DEFAULT 0,
        -- Verified copies in a row since the last fault: adaptive replication reads it.
        streak        INTEGER NOT NULL DEFAULT 0,
        -- Lease-to-return latency of returned copies (sum and count, for the mean).
        latency_ms    REAL NOT NULL DEFAULT 0,
        returned      INTEGER NOT NULL DEFAULT 0,
        -- Work units delivered against what the provider announced it does per second.
        units         REAL NOT NULL DEFAULT 0,
        wall_ms       REAL NOT NULL DEFAULT 0,
        announced_ups REAL,
        -- Liveness probes: the provider's record was fresh / it answered, or not.
        seen          INTEGER NOT NULL DEFAULT 0,
        missed        INTEGER NOT NULL DEFAULT 0,
        first_seen    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (provider, model_sha256)
      );
      -- A provider caught wrong: banned until "until", for the "count"-th time (bans escalate).
      CREATE TABLE bans (
        provider    TEXT PRIMARY KEY,
        count       INTEGER NOT NULL,
        until       INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        evidence_id TEXT,
        -- The aggregator whose evidence it is (this node, or one whose evidence was re-checked).
        source      TEXT NOT NULL,
        banned_at   INTEGER NOT NULL
      );
      -- Signed evidence of a fault (reputation/evidence.ts): what was sent, returned and expected.
      CREATE TABLE evidence (
        id          TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        job_id      TEXT,
        body        BLOB NOT NULL,
        created_at  INTEGER NOT NULL
      );
      CREATE INDEX evidence_provider ON evidence (provider);
      -- Penalties owed by providers; the payments issue applies them (slashing bonds and earnings).
      CREATE TABLE penalties (
        id          INTEGER PRIMARY KEY,
        provider    TEXT NOT NULL,
        job_id      TEXT,
        kind        TEXT NOT NULL,
        amount_msat INTEGER NOT NULL,
        evidence_id TEXT,
        created_at  INTEGER NOT NULL,
        applied_at  INTEGER
      );
      -- Known-answer records mixed into shards (jobs/verify/canaries.ts).
      CREATE TABLE canaries (
        id           INTEGER PRIMARY KEY,
        model_sha256 TEXT NOT NULL,
        kind         TEXT NOT NULL,
        record       BLOB NOT NULL,
        answer       BLOB NOT NULL,
        source       TEXT NOT NULL,
        uses         INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL,
        UNIQUE (model_sha256, kind, record)
      );
      -- Copies a shard needs (adaptive replication); NULL until set, meaning the job's redundancy.
      ALTER TABLE shards ADD COLUMN target_copies INTEGER;
      -- How a copy was checked and the verdict (JSON, jobs/verify/verdict.ts).
      ALTER TABLE assignments ADD COLUMN verification TEXT;
    `,
  },
  {
    version: 5,
    name: "trust: copies until a ban",
    sql: `
      -- Copies the provider returned here (since its previous ban) up to the one that got it banned;
      -- NULL for a ban adopted from another aggregator's evidence.
      ALTER TABLE bans ADD COLUMN copies_before INTEGER;
    `,
  },
  {
    version: 6,
    name: "api: spend per key",
    sql: `
      -- What each API key has spent through the gateway, in millisatoshis (a price in sats per 1,000
      -- tokens is msat per token), and how many generations it ran.
      CREATE TABLE api_spend (
        key_id TEXT PRIMARY KEY,
        spent_msat INTEGER NOT NULL DEFAULT 0 CHECK (spent_msat >= 0),
        requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 7,
    name: "payments: the ledger",
    sql: `
      -- Double-entry accounts (payments/ledger.ts): id is kind:owner. Only money beyond this node
      -- (outside:<rail>) may be negative; every other balance is held at or above zero here too.
      CREATE TABLE ledger_accounts (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        owner        TEXT NOT NULL,
        balance_msat INTEGER NOT NULL DEFAULT 0 CHECK (kind = 'outside' OR balance_msat >= 0),
        updated_at   INTEGER NOT NULL
      );
      -- One movement of money, once: idem is what it is for ("release:<shard>", "refund:<job>").
      CREATE TABLE ledger_txns (
        id            INTEGER PRIMARY KEY,
        idem          TEXT NOT NULL UNIQUE,
        reason        TEXT NOT NULL,
        job_id        TEXT,
        shard_id      INTEGER,
        assignment_id TEXT,
        penalty_id    INTEGER,
        reference     TEXT,
        created_at    INTEGER NOT NULL
      );
      CREATE INDEX ledger_txns_job ON ledger_txns (job_id);
      -- A transaction's entries sum to zero.
      CREATE TABLE ledger_entries (
        txn_id     INTEGER NOT NULL REFERENCES ledger_txns (id),
        account    TEXT NOT NULL REFERENCES ledger_accounts (id),
        delta_msat INTEGER NOT NULL CHECK (delta_msat != 0)
      );
      CREATE INDEX ledger_entries_txn ON ledger_entries (txn_id);
      CREATE INDEX ledger_entries_account ON ledger_entries (account);
      -- A copy's price as its provider announced it for the model (payments/pricing.ts ModelPrice:
      -- whole msat per 1,000 units of each kind of work), so what it earns is exact.
      ALTER TABLE assignments ADD COLUMN price_json TEXT;
      -- The quote a job's client locked in escrow, and where the payments stand.
      ALTER TABLE aggregator_jobs ADD COLUMN escrow_msat INTEGER;
    `,
  },
  {
    version: 8,
    name: "payments: channels",
    sql: `
      -- Payment channels (payments/channel): one row per channel this node pays into (payer) or is
      -- paid through (payee). id is the funding outpoint "txid:vout". Public keys only: private keys
      -- stay with the wallet. Amounts are INTEGER sats or msat.
      CREATE TABLE channels (
        id             TEXT PRIMARY KEY,
        role           TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
        peer           TEXT NOT NULL,
        network        TEXT NOT NULL,
        funding_txid   TEXT NOT NULL,
        funding_vout   INTEGER NOT NULL CHECK (funding_vout >= 0),
        capacity_sats  INTEGER NOT NULL CHECK (capacity_sats > 0),
        fee_sats       INTEGER NOT NULL CHECK (fee_sats >= 0),
        payer_key      BLOB NOT NULL,
        payee_key      BLOB NOT NULL,
        refund_height  INTEGER NOT NULL,
        -- The raw funding transaction, where this node has it.
        funding_tx     BLOB,
        -- The latest state both sides hold: the payee accepted it (payee) or acknowledged it (payer);
        -- its unsigned commitment and the payer's signature on it (empty at sequence 0).
        sequence       INTEGER NOT NULL DEFAULT 0 CHECK (sequence >= 0),
        paid_msat      INTEGER NOT NULL DEFAULT 0 CHECK (paid_msat >= 0),
        commitment_tx  BLOB NOT NULL DEFAULT x'',
        payer_sig      BLOB NOT NULL DEFAULT x'',
        -- Payer side: the newest update signed and sent, not yet acknowledged (the payee may hold it).
        pending_sequence  INTEGER,
        pending_paid_msat INTEGER CHECK (pending_paid_msat >= 0),
        pending_tx        BLOB,
        pending_sig       BLOB,
        status         TEXT NOT NULL CHECK (status IN ('open', 'closing', 'closed')),
        -- The fully signed close (cooperative or the payee's unilateral one) once made.
        close_tx       BLOB,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
      );
      CREATE INDEX channels_peer ON channels (peer, role, status);
    `,
  },
  {
    version: 9,
    name: "payments: earnings multipliers",
    sql: `
      -- The share of its price a verified copy earned, in basis points (payments/earnings.ts: speed
      -- times reputation, at most 10000), set in the transaction that paid it; NULL: the whole price.
      ALTER TABLE assignments ADD COLUMN earn_bps INTEGER CHECK (earn_bps BETWEEN 0 AND 10000);
    `,
  },
  {
    version: 10,
    name: "payments: Lightning holds for jobs",
    sql: `
      -- One Lightning hold invoice per job (payments/lightning/escrow-store.ts reads and writes it).
      CREATE TABLE lightning_escrow (
        job_id       TEXT PRIMARY KEY,
        payment_hash TEXT NOT NULL UNIQUE CHECK (length(payment_hash) = 64),
        preimage     TEXT NOT NULL CHECK (length(preimage) = 64),
        amount_msat  INTEGER NOT NULL CHECK (amount_msat > 0),
        invoice      TEXT,
        state        TEXT NOT NULL CHECK (state IN ('open', 'settled', 'canceled')),
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        settled_at   INTEGER
      );
      -- The aggregator's job a hold paid for (its job_id column is the hold's key, made before the
      -- job exists: aggregator/lightning.ts), once the job was stored.
      ALTER TABLE lightning_escrow ADD COLUMN aggregator_job TEXT;
    `,
  },
];
