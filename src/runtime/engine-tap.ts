import type { Engine, InferenceEvent, RuntimeName } from "./engine.ts";

/**
 * Engines that report their runs to `tap` and otherwise behave as the engines they wrap: `start`
 * as a run begins, `event` for every event it yields, `end` however it ends (done, failed, cancelled).
 * A provider uses it to announce load changes and to count what it produces.
 */
export interface EngineTap {
  start?(): void;
  event?(event: InferenceEvent): void;
  end?(): void;
}

export function tappedEngines(engines: Record<RuntimeName, Engine>, tap: EngineTap): Record<RuntimeName, Engine> {
  const wrap = (engine: Engine): Engine => ({
    runtime: engine.runtime,
    async *run(model, request, options) {
      tap.start?.();
      try {
        for await (const event of engine.run(model, request, options)) {
          tap.event?.(event);
          yield event;
        }
      } finally {
        tap.end?.();
      }
    },
    preload: (model, options) => engine.preload(model, options),
    dispose: () => engine.dispose(),
    [Symbol.asyncDispose]: () => engine.dispose(),
  });
  return { llama: wrap(engines.llama), onnx: wrap(engines.onnx) };
}

/** What an event adds to the work produced: its tokens, or one record per tensor output. */
export function unitsProduced(event: InferenceEvent): number {
  if (event.type === "token") return event.tokens.length;
  if (event.type === "tensors") return 1;
  return 0;
}
