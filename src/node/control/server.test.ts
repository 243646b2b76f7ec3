import { expect, test } from "bun:test";
import { tempDir } from "../../../test/helpers/paths.ts";
import type { InferenceEvent } from "../../runtime/engine.ts";
import type { InfernetNode } from "../node.ts";
import { ControlClient } from "./client.ts";
import { startControlServer } from "./server.ts";

// Bun's server drops a connection idle for 10 s; a run that is silent longer (a queue, a slow first
// token) must still reach its client. The node here is a stand-in that serves one slow model: the
// subject is the control transport, not inference.
test("a run silent for longer than the server's idle timeout still streams to the end", async () => {
  using dir = tempDir();
  const sha = "a".repeat(64);
  const node = {
    status: () => ({}),
    peers: async () => [],
    serves: (s: string) => s === sha,
    async *runServed(): AsyncGenerator<InferenceEvent> {
      yield { type: "token", text: "early", tokens: [1] };
      await Bun.sleep(11_000);
      yield { type: "token", text: "late", tokens: [2] };
      yield {
        type: "done",
        finishReason: "stop",
        usage: { inputTokens: 1, outputTokens: 1, computeMs: 1, firstOutputMs: 1 },
      };
    },
  } as unknown as InfernetNode;
  await using _server = await startControlServer(node, dir.path);
  const client = await ControlClient.require(dir.path);
  const events = [];
  for await (const e of client.run({ name: "slow", sha256: sha }, { kind: "generate", prompt: "x" })) events.push(e);
  expect(events.map((e) => e.type)).toEqual(["token", "token", "done"]);
}, 30_000);
