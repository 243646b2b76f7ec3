import { describe, expect, test } from "bun:test";
import type { CompletionScore, EndScore, TokenScore } from "../../runtime/llama/score.ts";
import { judgeCompletion, MIN_MEAN_LOGPROB, NEAR_TIE_LOGPROB_MARGIN } from "./text.ts";

// Synthetic scores: token ids are arbitrary, 2 is the end-of-generation token.
const EOS = 2;

/** A token the model ranks first, or `gap` nats below token 99. */
function tok(token: number, gap = 0, logprob = -0.5): TokenScore {
  return gap === 0
    ? { token, logprob, topToken: token, topLogprob: logprob, rank: 0, inSupport: true }
    : { token, logprob: logprob - gap, topToken: 99, topLogprob: logprob, rank: 1, inSupport: true };
}

/** The end position: EOS `gap` nats below the top token (0: EOS is the top). */
function endWith(gap: number | "absent"): EndScore {
  if (gap === "absent") {
    return { topToken: 7, topLogprob: -0.1, eos: { token: EOS, logprob: -100, inSupport: false } };
  }
  return { topToken: gap === 0 ? EOS : 7, topLogprob: -0.1, eos: { token: EOS, logprob: -0.1 - gap, inSupport: true } };
}

function score(tokens: TokenScore[], over: Partial<CompletionScore> = {}): CompletionScore {
  return {
    tokens,
    end: endWith("absent"),
    promptTokens: 5,
    maxTokens: tokens.length,
    sampled: false,
    leadingSpace: false,
    ...over,
  };
}

const greedy = { prompt: "p", temperature: 0 };
const sampled = { prompt: "p", temperature: 0.8 };

describe("judgeCompletion, greedy", () => {
  test("every token the argmax, at the token limit: accepted", () => {
    const j = judgeCompletion(score([tok(10), tok(11, 0, -1.5)]), greedy);
    expect(j).toEqual({ ok: true, meanLogprob: -1, worstGap: 0 });
  });

  test("a near tie within the margin is accepted and reported as the worst gap", () => {
    const gap = NEAR_TIE_LOGPROB_MARGIN / 2;
    const j = judgeCompletion(score([tok(10), tok(11, gap), tok(12)]), greedy);
    expect(j.ok).toBe(true);
    if (j.ok) expect(j.worstGap).toBeCloseTo(gap, 9);
  });

  test("a token beyond the margin is rejected at its position", () => {
    const j = judgeCompletion(score([tok(10), tok(11), tok(12, NEAR_TIE_LOGPROB_MARGIN * 3)]), greedy);
    expect(j).toMatchObject({ ok: false, position: 2 });
    if (!j.ok) expect(j.reason).toContain("not the model's choice");
  });

  test("a wider tolerance accepts what the default rejects", () => {
    const s = score([tok(10, 1)]);
    expect(judgeCompletion(s, greedy).ok).toBe(false);
    expect(judgeCompletion(s, greedy, { nearTieMargin: 2 }).ok).toBe(true);
  });

  test("a token outside the model's likeliest is rejected", () => {
    const outside: TokenScore = { token: 40, logprob: -100, topToken: 9, topLogprob: -0.2, rank: -1, inSupport: false };
    expect(judgeCompletion(score([tok(10), outside]), greedy)).toMatchObject({ ok: false, position: 1 });
  });

  test("an implausibly low mean log-probability is rejected", () => {
    const low = MIN_MEAN_LOGPROB - 1;
    const j = judgeCompletion(score([tok(10, 0, low), tok(11, 0, low)]), greedy);
    expect(j.ok).toBe(false);
    if (!j.ok) expect(j.reason).toContain("mean log-probability");
  });

  test("more tokens than the request allowed is rejected", () => {
    const j = judgeCompletion(score([tok(10), tok(11), tok(12)], { maxTokens: 2 }), greedy);
    expect(j).toMatchObject({ ok: false, position: 2 });
  });

  test("an early end is accepted where EOS is the argmax or a near tie", () => {
    const s = (gap: number) => score([tok(10)], { maxTokens: 8, end: endWith(gap) });
    expect(judgeCompletion(s(0), greedy).ok).toBe(true);
    const tie = judgeCompletion(s(NEAR_TIE_LOGPROB_MARGIN / 2), greedy);
    expect(tie.ok).toBe(true);
    if (tie.ok) expect(tie.worstGap).toBeCloseTo(NEAR_TIE_LOGPROB_MARGIN / 2, 9);
  });

  test("an early end where the model continues is rejected at the end position (a truncation)", () => {
    const far = judgeCompletion(score([tok(10), tok(11)], { maxTokens: 8, end: endWith(5) }), greedy);
    expect(far).toMatchObject({ ok: false, position: 2 });
    if (!far.ok) expect(far.reason).toContain("stops after 2 of 8 tokens");
    const absent = judgeCompletion(score([tok(10), tok(11)], { maxTokens: 8, end: endWith("absent") }), greedy);
    expect(absent).toMatchObject({ ok: false, position: 2 });
  });

  test("an early end where a stop string begins is accepted", () => {
    const end: EndScore = { ...endWith("absent"), stop: { token: 7, logprob: -0.1, inSupport: true } };
    expect(judgeCompletion(score([tok(10)], { maxTokens: 8, end }), greedy).ok).toBe(true);
    const unlikely: EndScore = { ...endWith("absent"), stop: { token: 8, logprob: -4, inSupport: true } };
    expect(judgeCompletion(score([tok(10)], { maxTokens: 8, end: unlikely }), greedy).ok).toBe(false);
  });

  test("an empty output is judged by its end alone", () => {
    expect(judgeCompletion(score([], { maxTokens: 8, end: endWith(0) }), greedy)).toEqual({
      ok: true,
      meanLogprob: 0,
      worstGap: 0,
    });
    expect(judgeCompletion(score([], { maxTokens: 8 }), greedy)).toMatchObject({ ok: false, position: 0 });
  });

  test("a score taken in the other sampling mode is refused", () => {
    expect(judgeCompletion(score([tok(10)], { sampled: true }), greedy).ok).toBe(false);
    expect(judgeCompletion(score([tok(10)]), sampled).ok).toBe(false);
  });
});

describe("judgeCompletion, sampled", () => {
  const s = (tokens: TokenScore[], over: Partial<CompletionScore> = {}) => score(tokens, { sampled: true, ...over });

  test("tokens far from the top are accepted while inside the support", () => {
    const j = judgeCompletion(s([tok(10, 3), tok(11, 6, -4)]), sampled);
    expect(j.ok).toBe(true);
  });

  test("a token outside the support is rejected at its position", () => {
    const outside: TokenScore = { token: 40, logprob: -100, topToken: 9, topLogprob: -0.2, rank: -1, inSupport: false };
    const j = judgeCompletion(s([tok(10), tok(11), outside]), sampled);
    expect(j).toMatchObject({ ok: false, position: 2 });
    if (!j.ok) expect(j.reason).toContain("outside the sampling support");
  });

  test("an early end needs an end-of-generation token or a stop string in the support", () => {
    expect(judgeCompletion(s([tok(10)], { maxTokens: 4, end: endWith(6) }), sampled).ok).toBe(true);
    expect(judgeCompletion(s([tok(10)], { maxTokens: 4, end: endWith("absent") }), sampled)).toMatchObject({
      ok: false,
      position: 1,
    });
    const end: EndScore = { ...endWith("absent"), stop: { token: 7, logprob: -3, inSupport: true } };
    expect(judgeCompletion(s([tok(10)], { maxTokens: 4, end }), sampled).ok).toBe(true);
  });

  test("the mean log-probability floor applies to greedy text only", () => {
    const low = MIN_MEAN_LOGPROB - 1;
    expect(judgeCompletion(s([tok(10, 0, low)]), sampled).ok).toBe(true);
  });
});
