import { expect, test } from "bun:test";
import type { Engine, InferenceEvent } from "./engine.ts";
import { tappedEngines, unitsProduced } from "./engine-tap.ts";

const EVENTS: InferenceEvent[] = [
  { type: "token", text: "Once", tokens: [101, 102] },
  { type: "tensors", outputs: {} },
  {
    type: "done",
    usage: { inputTokens: 1, outputTokens: 2, computeMs: 3, firstOutputMs: 1 },
    finishReason: "length",
  },
];

/** An engine that yields EVENTS, or throws after the first when `fail` is set. */
function engine(runtime: Engine["runtime"], fail = false): Engine {
  return {
    runtime,
    async *run() {
      for (const [i, event] of EVENTS.entries()) {
        if (fail && i === 1) throw new Error("engine failed");
        yield event;
      }
    },
    preload: async () => {},
    dispose: async () => {},
    [Symbol.asyncDispose]: async () => {},
  };
}

test("a tapped run reports its start, every event and its end, and yields the events unchanged", async () => {
  const calls: string[] = [];
  const tapped = tappedEngines(
    { llama: engine("llama"), onnx: engine("onnx", true) },
    { start: () => calls.push("start"), event: (e) => calls.push(e.type), end: () => calls.push("end") },
  );
  const seen: InferenceEvent[] = [];
  for await (const e of tapped.llama.run({ name: "m", runtime: "llama", path: "" }, { kind: "generate", prompt: "" }))
    seen.push(e);
  expect(seen).toEqual(EVENTS);
  expect(calls).toEqual(["start", "token", "tensors", "done", "end"]);

  calls.length = 0;
  const failing = async () => {
    for await (const _ of tapped.onnx.run({ name: "m", runtime: "onnx", path: "" }, { kind: "generate", prompt: "" }));
  };
  await expect(failing()).rejects.toThrow("engine failed");
  expect(calls).toEqual(["start", "token", "end"]);
});

test("units produced: tokens of a token event, one per tensor output, nothing for done", () => {
  expect(EVENTS.map(unitsProduced)).toEqual([2, 1, 0]);
});
