import type { ControlledEvaluateInputItem, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { InvalidInputError, RuntimeError } from "../../util/errors.ts";
import { type GenerateRequest, MAX_TOP_LOGPROBS, type TokenLogprob } from "../engine.ts";
import { logprobOf, promptInput, SCORE_CHUNK_TOKENS } from "./score.ts";

/**
 * Log-probabilities of tokens a generation produced: prompt (as the generation fed it, chat template
 * included) and output replayed in one pass, reading the model's distribution before each output
 * token. The distribution is the LOGPROB_TOP_K likeliest tokens renormalised among themselves (the
 * whole vocabulary of a large model per token would be too much to keep), so a token's log-probability
 * reads a little high, and one outside them reads LOGPROB_FLOOR; greedy tokens are always inside.
 */

/** Tokens of the distribution read at each position. */
export const LOGPROB_TOP_K = 100;

const READ = { temperature: 1, topK: LOGPROB_TOP_K, topP: 1, minP: 0 };

export async function tokenLogprobs(
  loaded: { model: LlamaModel; context: LlamaContext },
  request: Pick<GenerateRequest, "prompt" | "system" | "history">,
  chat: boolean,
  output: readonly number[],
  top: number,
  signal?: AbortSignal,
): Promise<TokenLogprob[]> {
  if (!Number.isInteger(top) || top < 0 || top > MAX_TOP_LOGPROBS) {
    throw new InvalidInputError(`logprobs: 0 to ${MAX_TOP_LOGPROBS} alternatives, got ${top}`);
  }
  if (output.length === 0) return [];
  const native = loaded.model;
  const sequence = loaded.context.getSequence();
  try {
    const prompt = (await promptInput(sequence, request, chat)).tokens;
    if (prompt.length + output.length > loaded.context.contextSize) {
      throw new RuntimeError("prompt and output no longer fit the context for log-probabilities");
    }
    const read = { generateNext: { probabilities: true, options: READ } } as const;
    // The distribution before output[i] comes from the token evaluated just before it.
    const items: ControlledEvaluateInputItem[] = [
      ...prompt.slice(0, -1),
      [prompt.at(-1) as Token, read],
      ...output.slice(0, -1).map((t): ControlledEvaluateInputItem => [t as Token, read]),
    ];
    const out: TokenLogprob[] = [];
    const text = (t: number, before: number) =>
      native.detokenize([t as Token], false, output.slice(Math.max(0, before - 8), before) as Token[]);
    for (let start = 0; start < items.length; start += SCORE_CHUNK_TOKENS) {
      signal?.throwIfAborted();
      const chunk = items.slice(start, start + SCORE_CHUNK_TOKENS);
      await sequence.controlledEvaluate(chunk, {
        onTokenResult(index, result) {
          const distribution = result.next.probabilities;
          if (!distribution) return;
          const position = start + index - (prompt.length - 1);
          const token = output[position];
          if (token === undefined) return;
          const alternatives = [...distribution].slice(0, top);
          out.push({
            token,
            text: text(token, position),
            logprob: logprobOf(distribution.get(token as Token)),
            top: alternatives.map(([t, p]) => ({ token: t, text: text(t, position), logprob: logprobOf(p) })),
          });
          delete result.next.probabilities;
        },
      });
    }
    if (out.length !== output.length) {
      throw new RuntimeError(`read ${out.length} of ${output.length} tokens' log-probabilities`);
    }
    return out;
  } finally {
    await sequence.dispose();
  }
}
