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
];
