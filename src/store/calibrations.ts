import type { CalibrationKey, CalibrationResult, CalibrationStore } from "../runtime/llama/calibrate.ts";
import type { Store } from "./db.ts";

/** Thread calibrations on SQLite, one row per (model, machine, backend). */
export function sqliteCalibrationStore(store: Store): CalibrationStore {
  const select = store.db.query<
    { threads: number; tokens_per_s: number; results_json: string },
    [string, string, string]
  >("SELECT threads, tokens_per_s, results_json FROM calibrations WHERE model_sha256 = ? AND machine = ? AND gpu = ?");
  const upsert = store.db.query(
    `INSERT INTO calibrations (model_sha256, machine, gpu, threads, tokens_per_s, measured_at, results_json)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (model_sha256, machine, gpu) DO UPDATE SET
       threads = excluded.threads, tokens_per_s = excluded.tokens_per_s,
       measured_at = excluded.measured_at, results_json = excluded.results_json`,
  );
  return {
    get(key: CalibrationKey): CalibrationResult | undefined {
      const row = select.get(key.model, key.machine, key.gpu);
      if (!row) return undefined;
      return { threads: row.threads, tokensPerSecond: row.tokens_per_s, results: JSON.parse(row.results_json) };
    },
    put(key: CalibrationKey, result: CalibrationResult): void {
      upsert.run(
        key.model,
        key.machine,
        key.gpu,
        result.threads,
        result.tokensPerSecond,
        Date.now(),
        JSON.stringify(result.results),
      );
    },
  };
}
