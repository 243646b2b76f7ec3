import type { Database } from "bun:sqlite";
import type { BenchmarkResult } from "../runtime/hardware/self-bench.ts";

/**
 * Self-benchmark results kept in the `benchmarks` table (migration 1), one row per benchmark name
 * and machine fingerprint; a re-measure replaces the row. Providers announce these later.
 */
export interface BenchmarkStore {
  put(machine: string, result: BenchmarkResult): void;
  /** Every stored result for `machine`, by name. */
  list(machine: string): BenchmarkResult[];
}

/** Largest detail_json we will parse back (we write a few hundred bytes). */
const MAX_DETAIL_JSON_CHARS = 64 * 1024;

interface Row {
  name: string;
  value: number;
  unit: string;
  detail_json: string;
  measured_at: number;
}

function parseDetail(text: string): Record<string, unknown> {
  if (text.length > MAX_DETAIL_JSON_CHARS) return {};
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

/** A `BenchmarkStore` on the node's SQLite database (`Store.db`). */
export function sqliteBenchmarkStore(db: Database): BenchmarkStore {
  const upsert = db.query<unknown, [string, string, number, string, string, number]>(
    `INSERT INTO benchmarks (name, machine, value, unit, detail_json, measured_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (name, machine) DO UPDATE SET
       value = excluded.value, unit = excluded.unit, detail_json = excluded.detail_json, measured_at = excluded.measured_at`,
  );
  const select = db.query<Row, [string]>(
    "SELECT name, value, unit, detail_json, measured_at FROM benchmarks WHERE machine = ? ORDER BY name",
  );
  return {
    put(machine, r) {
      upsert.run(r.name, machine, r.value, r.unit, JSON.stringify(r.detail), r.measuredAt);
    },
    list(machine) {
      return select.all(machine).map((row) => ({
        name: row.name,
        value: row.value,
        unit: row.unit,
        detail: parseDetail(row.detail_json),
        measuredAt: row.measured_at,
      }));
    },
  };
}
