import type { Engine, InferenceEvent, InferenceRequest, LocalModel, RunOptions } from "../../../runtime/engine.ts";

/**
 * Test support: a real engine seen from outside. Every call goes to the wrapped engine unchanged;
 * the wrapper only records, per run, how many token events it produced, whether the run's signal was
 * aborted and how the run ended, so tests can check what the provider's engine saw.
 */
export interface RunRecord {
  tokens: number;
  aborted: boolean;
  /** "stopped": the consumer stopped reading before the end. */
  ended: "done" | "error" | "stopped" | "running";
}

export interface ObservedEngine extends Engine {
  readonly runs: RunRecord[];
}

export function observed(engine: Engine): ObservedEngine {
  const runs: RunRecord[] = [];
  return {
    runtime: engine.runtime,
    runs,
    async *run(model: LocalModel, request: InferenceRequest, options: RunOptions = {}): AsyncIterable<InferenceEvent> {
      const record: RunRecord = { tokens: 0, aborted: false, ended: "running" };
      runs.push(record);
      try {
        for await (const event of engine.run(model, request, options)) {
          if (event.type === "token") record.tokens += 1;
          yield event;
        }
        record.ended = "done";
      } catch (err) {
        record.ended = "error";
        throw err;
      } finally {
        if (record.ended === "running") record.ended = "stopped";
        record.aborted = options.signal?.aborted ?? false;
      }
    },
    preload: (model, options) => engine.preload(model, options),
    dispose: () => engine.dispose(),
    [Symbol.asyncDispose]: () => engine.dispose(),
  };
}

/** Polls `check` every few milliseconds until it holds or `ms` pass; returns whether it held. */
export async function eventually(check: () => boolean, ms = 2_000): Promise<boolean> {
  const until = performance.now() + ms;
  while (!check()) {
    if (performance.now() > until) return false;
    await Bun.sleep(5);
  }
  return true;
}
