import type { CompletionScore, ScoreRequest } from "../../runtime/llama/score.ts";

/**
 * The verdict on a re-scored completion (runtime/llama/score.ts). llama.cpp's greedy output is not
 * bit-identical across CPU/CUDA builds, thread counts or batch sizes: where the top two tokens are
 * nearly tied, another machine may pick the other one and continue differently. So a greedy text is
 * accepted when, replayed through the same model, every token is the argmax or within a near-tie
 * margin of it, the mean log-probability is plausible, and an output that stops short of its token
 * limit stops where the model would end it (an end-of-generation token, or a stop string). Text that
 * fails is one a faithful run of the model could not have produced: another model, another prompt, a
 * truncation, an edit.
 *
 * Sampled text (temperature > 0) cannot be replayed without the provider's random draws, so the check
 * is membership: every token must lie inside the sampling support (llama.cpp's top-k, then top-p,
 * after which temperature only reshapes the kept tokens), and an early end must be an end-of-generation
 * token or a stop string the support holds. This catches tokens no sampler with these settings could
 * draw, not a biased choice among ones it could.
 */

/**
 * Largest gap, in nats, between the model's top token and the returned one that still counts as a
 * near tie. Calibrated by `bun bench/rescore.ts 60` (bench/RESULTS.md, "Text re-scoring"; AMD EPYC,
 * 2 cores, llama.cpp CPU build of node-llama-cpp 3.21.1, stories260k): between generation (decode,
 * one token a step) and the re-score (one batch) the gap between the top two tokens moved by up to
 * 0.0148 nats over 5,760 positions, at threads 1 and 2 alike; honest greedy outputs from threads 1 and
 * 2 and contexts 512 and 256 had 12 of 34,560 tokens that were not the scorer's argmax (2 positions,
 * seen by each of the 6 generator/scorer pairs), the worst 0.0026 nats below it. 0.05 is 3.4 times the
 * noise (the safety factor) and gave no false positive (an exact-argmax check would have rejected 12
 * of 360 honest outputs); the closest lazy outputs' first wrong tokens were 0.066 nats down (another
 * prompt's output; median 5.7) and 0.073 (sampled text for a greedy request; median 1.3). GPU builds
 * were not measured: a model whose CUDA and CPU runs drift further takes a wider margin through
 * `tolerance`.
 */
export const NEAR_TIE_LOGPROB_MARGIN = 0.05;

/**
 * Lowest mean log-probability per token (nats, within the scorer's top 40) accepted for greedy text.
 * The lowest honest mean in the same calibration was -0.849; the floor is about 3 times that. Greedy
 * text whose every token is a near tie of the argmax is rarely this improbable: the floor guards a
 * chain of ties against an implausible whole, and another model's scores against this one's.
 */
export const MIN_MEAN_LOGPROB = -2.5;

export interface TextTolerance {
  nearTieMargin: number;
  minMeanLogprob: number;
}

export const DEFAULT_TEXT_TOLERANCE: TextTolerance = {
  nearTieMargin: NEAR_TIE_LOGPROB_MARGIN,
  minMeanLogprob: MIN_MEAN_LOGPROB,
};

export type TextJudgement =
  | {
      ok: true;
      /** Mean log-probability per output token (0 for an empty output). */
      meanLogprob: number;
      /** Largest gap to the argmax over the output and, where checked, its end (nats). */
      worstGap: number;
    }
  | {
      ok: false;
      /** One line saying what the model would have done instead. */
      reason: string;
      /** Output token position at fault; tokens.length for the end of the output. */
      position: number;
    };

/** Judges a completion from its score; pure, so an aggregator can re-judge stored scores. */
export function judgeCompletion(
  score: CompletionScore,
  request: Omit<ScoreRequest, "output">,
  tolerance: Partial<TextTolerance> = {},
): TextJudgement {
  const { nearTieMargin, minMeanLogprob } = { ...DEFAULT_TEXT_TOLERANCE, ...tolerance };
  const sampled = (request.temperature ?? 0) > 0;
  if (sampled !== score.sampled) {
    return { ok: false, reason: "the score was computed for another sampling mode than the request's", position: 0 };
  }
  const n = score.tokens.length;
  if (n > score.maxTokens) {
    return {
      ok: false,
      reason: `the output is ${n} tokens; the request allowed ${score.maxTokens}`,
      position: score.maxTokens,
    };
  }
  let worstGap = 0;
  let sum = 0;
  for (const [i, t] of score.tokens.entries()) {
    sum += t.logprob;
    if (sampled) {
      if (!t.inSupport) {
        return { ok: false, reason: `token ${i} (id ${t.token}) is outside the sampling support`, position: i };
      }
      continue;
    }
    if (!t.inSupport) {
      return { ok: false, reason: `token ${i} (id ${t.token}) is not among the model's likeliest tokens`, position: i };
    }
    const gap = t.topLogprob - t.logprob;
    if (gap > nearTieMargin) {
      return {
        ok: false,
        reason: `token ${i} (id ${t.token}) is not the model's choice: id ${t.topToken} is ${gap.toFixed(3)} nats likelier`,
        position: i,
      };
    }
    worstGap = Math.max(worstGap, gap);
  }
  const meanLogprob = n === 0 ? 0 : sum / n;
  if (!sampled && meanLogprob < minMeanLogprob) {
    return {
      ok: false,
      reason: `mean log-probability ${meanLogprob.toFixed(3)} per token is below ${minMeanLogprob}`,
      position: 0,
    };
  }
  if (n < score.maxTokens) {
    const { end } = score;
    if (sampled) {
      if (!end.eos.inSupport && !end.stop?.inSupport) {
        return {
          ok: false,
          reason: `the output stops after ${n} of ${score.maxTokens} tokens, but no sampler could end it there`,
          position: n,
        };
      }
    } else {
      const endGap = Math.min(
        end.eos.inSupport ? end.topLogprob - end.eos.logprob : Infinity,
        end.stop?.inSupport ? end.topLogprob - end.stop.logprob : Infinity,
      );
      if (endGap > nearTieMargin) {
        const how = Number.isFinite(endGap)
          ? `ending is ${endGap.toFixed(3)} nats below id ${end.topToken}`
          : `no end-of-generation token is among its likeliest; id ${end.topToken} is its choice`;
        return {
          ok: false,
          reason: `the output stops after ${n} of ${score.maxTokens} tokens, but the model continues (${how})`,
          position: n,
        };
      }
      worstGap = Math.max(worstGap, endGap);
    }
  }
  return { ok: true, meanLogprob, worstGap };
}
