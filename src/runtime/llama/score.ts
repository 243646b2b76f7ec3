import type {
  ChatHistoryItem,
  ControlledEvaluateInputItem,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
  Token,
} from "node-llama-cpp";
import { InvalidInputError, RuntimeError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { GenerateRequest, LocalModel } from "../engine.ts";

/**
 * Re-scoring of a completion another runtime generated: the prompt and the returned text go through
 * the model in one prefill pass (no sampling loop), and every output position reports how the model
 * ranks the token that was returned. Much cheaper than generating the text again, and tolerant of
 * llama.cpp's run-to-run differences across CPU/GPU builds, thread counts and batch sizes, which make
 * comparing two providers' texts byte for byte only a fast path. The verdict is `jobs/verify/text.ts`.
 */
const log = logger("runtime:llama:score");

/** What a provider was asked to generate, and the text it returned. */
export interface ScoreRequest {
  prompt: string;
  /** The text the provider returned (the generated part only, stop string excluded). */
  output: string;
  /** Format the prompt with the model's chat template (default: the model's `chat` flag). */
  chat?: boolean;
  /** System prompt for chat models. */
  system?: string;
  /** Earlier turns of a chat (see GenerateRequest). */
  history?: GenerateRequest["history"];
  /** The request's token limit (default: the engine's, capped by the context as generation caps it). */
  maxTokens?: number;
  /** 0 (default) = greedy: scored against the model's likeliest tokens; above 0, against the sampler's support. */
  temperature?: number;
  /** Sampling truncation; unset means node-llama-cpp's defaults, as in generation. */
  topK?: number;
  topP?: number;
  /** Stop strings of the request: an output that ends early may end where one of them begins. */
  stop?: string[];
}

/**
 * One output token as the model sees it. For greedy requests the distribution is the model's
 * SCORE_TOP_K most likely tokens (renormalised among themselves, so gaps between two of them are
 * exact and absolute log-probabilities read slightly high); for sampled ones it is the sampler's own
 * distribution: llama.cpp's chain top-k, then top-p (on the untempered probabilities), then
 * temperature over what is left, i.e. exactly the tokens a seeded generation with these settings
 * could have drawn.
 */
export interface TokenScore {
  token: number;
  /** Natural log-probability of `token` in that distribution (LOGPROB_FLOOR when outside it). */
  logprob: number;
  /** The distribution's most likely token, and its log-probability. */
  topToken: number;
  topLogprob: number;
  /** Place of `token` in the distribution, 0 for the most likely; -1 when outside it. */
  rank: number;
  /** Whether the distribution holds `token`: the sampling support, or for greedy the top SCORE_TOP_K. */
  inSupport: boolean;
}

/** A candidate for the position after the last output token. */
export interface EndCandidate {
  token: number;
  logprob: number;
  inSupport: boolean;
}

/** The position after the last output token: would the model have ended there? */
export interface EndScore {
  topToken: number;
  topLogprob: number;
  /** The most likely end-of-generation token (EOS, EOT, a chat template's end token). */
  eos: EndCandidate;
  /**
   * The most likely token of the distribution in which one of the stop strings begins (only the stop
   * string's first token is checked); absent when none.
   */
  stop?: EndCandidate;
}

export interface CompletionScore {
  /** One per output token, in order; its length is the output's token count. */
  tokens: TokenScore[];
  end: EndScore;
  /** Tokens the model read before the output (chat template and BOS included). */
  promptTokens: number;
  /** The token limit generation applied: the request's (or the default), capped by the context. */
  maxTokens: number;
  /** Whether the request sampled (temperature > 0), i.e. which distribution the scores are in. */
  sampled: boolean;
  /**
   * Whether the scored tokenisation gives the output's first word a leading space. Returned text
   * cannot say: node-llama-cpp decodes a generation's first token without its SentencePiece space
   * (", there" and " a" both come back bare), so both readings are tried and the model's likelier
   * first token wins.
   */
  leadingSpace: boolean;
}

/** Log-probabilities below this are reported as this: float32 softmax underflows to 0 near e^-103. */
export const LOGPROB_FLOOR = -100;
/** Output tokens evaluated per native call; aborts take effect between calls. */
export const SCORE_CHUNK_TOKENS = 512;
/**
 * Tokens of the model's distribution read at each greedy position. A near tie is a matter of the top
 * two or three, so 40 (node-llama-cpp's default top-k) loses nothing a verdict needs, while the full
 * vocabulary costs a native sort and a JS map of every token per position: on stories260k's 512-token
 * vocabulary 69 positions took 24.7-27.7 ms that way against 10.8-11.9 ms for the top 40 (Bun 1.4.4,
 * AMD EPYC, threads 1), and the full map grows with the vocabulary (150k on current models).
 */
export const SCORE_TOP_K = 40;
/**
 * How far below the model's top a greedy reading's token must be before other spellings of the text
 * are tried (scoreOutput): e^1, 2.7 times less likely, far beyond any honest near tie (bench/rescore.ts
 * measured those under 0.05), so a token an honest run picked at a near tie is never re-spelled away.
 */
export const RESEGMENT_MIN_GAP = 1;
/**
 * Greedy candidates are the tokens within this log-probability of the top: a token further below
 * would be rejected wherever it stood, so re-spelling the text around it only changes the reason.
 * Wider than any near-tie margin a verdict allows (jobs/verify/text.ts), so none is missed.
 */
export const RESEGMENT_CANDIDATE_GAP = 0.25;
/** Candidates tried per position (the likeliest; a sampled read may hold the whole vocabulary). */
export const RESEGMENT_CANDIDATES = SCORE_TOP_K;
/** Re-spellings per scored output at most: each costs a re-read of the rest of its chunk. */
export const MAX_RESEGMENTS = 32;
/** Tokens of context given to the detokeniser so a candidate's leading space decodes right. */
const DETOKENIZE_CONTEXT_TOKENS = 8;

export interface ScoreContext {
  defaultMaxTokens: number;
  signal?: AbortSignal;
}

interface Scorable {
  model: LlamaModel;
  context: LlamaContext;
}

type Distribution = Map<Token, number>;

interface SamplingOptions {
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
}

/** Reads the top SCORE_TOP_K untempered: llama.cpp's greedy sampler would return the whole vocabulary. */
const GREEDY_READ: SamplingOptions = { temperature: 1, topK: SCORE_TOP_K, topP: 1, minP: 0 };

/**
 * Scores `request.output` as a continuation of `request.prompt` on a loaded model. The caller holds
 * the model's pool lease, so this runs alone on the context, like a generation.
 */
export async function scoreCompletion(
  loaded: Scorable,
  model: LocalModel,
  request: ScoreRequest,
  ctx: ScoreContext,
): Promise<CompletionScore> {
  const started = performance.now();
  const native = loaded.model;
  const sampled = (request.temperature ?? 0) > 0;
  const options: SamplingOptions = sampled
    ? {
        temperature: request.temperature ?? 0,
        ...(request.topK !== undefined ? { topK: request.topK } : {}),
        ...(request.topP !== undefined ? { topP: request.topP } : {}),
      }
    : GREEDY_READ;
  const sequence = loaded.context.getSequence();
  try {
    const input = await promptInput(sequence, request, request.chat ?? model.chat ?? false);
    const stops = [...(request.stop ?? []), ...input.stops];
    const room = loaded.context.contextSize - input.tokens.length - 1;
    if (room < 1) {
      throw new InvalidInputError(
        `the prompt is ${input.tokens.length} tokens; ${model.name} runs with a context of ${loaded.context.contextSize}`,
        { hint: "shorten the prompt" },
      );
    }
    const maxTokens = Math.min(request.maxTokens ?? ctx.defaultMaxTokens, room);
    const readings = outputReadings(native, request.output);
    const longest = Math.max(...readings.map((r) => r.tokens.length));
    if (input.tokens.length + longest > loaded.context.contextSize) {
      throw new InvalidInputError(
        `prompt and output are ${input.tokens.length + longest} tokens; ${model.name} runs with a context of ${loaded.context.contextSize}`,
      );
    }

    ctx.signal?.throwIfAborted();
    const last = input.tokens.length - 1;
    const promptItems: ControlledEvaluateInputItem[] = input.tokens.map((t, i) =>
      i === last ? [t, { generateNext: { probabilities: true, options } }] : t,
    );
    const first = (await sequence.controlledEvaluate(promptItems))[last]?.next.probabilities;
    if (!first) throw new RuntimeError(`${model.name} returned no probabilities after the prompt`);
    // The reading whose first token the model prefers is the one a generation would have produced.
    const reading = readings.reduce((best, r) =>
      (first.get(r.tokens[0] as Token) ?? 0) > (first.get(best.tokens[0] as Token) ?? 0) ? r : best,
    );
    const scored = await scoreOutput(sequence, native, first, reading.tokens, {
      options,
      sampled,
      promptTokens: input.tokens.length,
      contextSize: loaded.context.contextSize,
      endTokens: input.endTokens,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    const { output, tokens, endDistribution } = scored;
    if (tokens.length !== output.length) {
      throw new RuntimeError(`${model.name} scored ${tokens.length} of ${output.length} output tokens`);
    }
    const end = endScore(native, endDistribution, output, stops, input.endTokens);
    log.debug("scored", {
      model: model.name,
      promptTokens: input.tokens.length,
      outputTokens: output.length,
      resegmented: scored.resegmented,
      ms: Math.round(performance.now() - started),
    });
    return {
      tokens,
      end,
      promptTokens: input.tokens.length,
      maxTokens,
      sampled,
      leadingSpace: reading.leadingSpace,
    };
  } finally {
    await sequence.dispose();
  }
}

interface PromptInput {
  tokens: Token[];
  /** Text stop triggers of the chat template. */
  stops: string[];
  /** First tokens of the chat template's special-token stop triggers. */
  endTokens: Set<Token>;
}

/** Earlier chat turns as node-llama-cpp's chat history holds them (generation and replay alike). */
export function chatHistoryItems(history: NonNullable<GenerateRequest["history"]>): ChatHistoryItem[] {
  return history.map((m) =>
    m.role === "user" ? { type: "user", text: m.content } : { type: "model", response: [m.content] },
  );
}

/** The prompt's tokens exactly as generation feeds them (engine.ts: LlamaCompletion or LlamaChatSession). */
export async function promptInput(
  sequence: LlamaContextSequence,
  request: Pick<ScoreRequest, "prompt" | "system" | "history">,
  chat: boolean,
): Promise<PromptInput> {
  const model = sequence.model;
  if (!chat) {
    // LlamaCompletion (node-llama-cpp 3.21.1, utils/tokenizerUtils.js resolveBeginningTokenToPrepend):
    // BOS when the vocabulary asks for it, then the prompt without SentencePiece's leading space.
    const bos = beginningToken(model);
    const text = model.tokenize(request.prompt, false, bos === null ? undefined : "trimLeadingSpace");
    return { tokens: bos === null ? [...text] : [bos, ...text], stops: [], endTokens: new Set() };
  }
  const { LlamaChatSession } = await import("node-llama-cpp");
  // The session resolves the chat wrapper and the initial history the way a generation's session does.
  const session = new LlamaChatSession({
    contextSequence: sequence,
    autoDisposeSequence: false,
    ...(request.system ? { systemPrompt: request.system } : {}),
  });
  try {
    const state = session.chatWrapper.generateContextState({
      chatHistory: [
        ...session.getChatHistory(),
        ...chatHistoryItems(request.history ?? []),
        { type: "user", text: request.prompt },
        { type: "model", response: [] },
      ],
    });
    const stops: string[] = [];
    const endTokens = new Set<Token>();
    for (const trigger of state.stopGenerationTriggers) {
      if (trigger.values.every((v) => typeof v === "string")) stops.push(trigger.values.join(""));
      else {
        const first = trigger.tokenize(model.tokenizer, "trimLeadingSpace")[0];
        if (first !== undefined) endTokens.add(first);
      }
    }
    return { tokens: state.contextText.tokenize(model.tokenizer), stops: stops.filter((s) => s !== ""), endTokens };
  } finally {
    session.dispose({ disposeSequence: false });
  }
}

function beginningToken(model: LlamaModel): Token | null {
  const type = model.vocabularyType;
  if (type === "rwkv" || type === "ugm") return null;
  if (type === "wpm") return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

interface OutputScoring {
  options: SamplingOptions;
  sampled: boolean;
  promptTokens: number;
  contextSize: number;
  /** The chat template's end tokens (never inserted: a generation stops there). */
  endTokens: ReadonlySet<Token>;
  signal?: AbortSignal;
}

interface ScoredOutput {
  /** The tokens scored: the reading, re-segmented where the model spells the same text otherwise. */
  output: Token[];
  tokens: TokenScore[];
  /** The distribution after the last output token. */
  endDistribution: Distribution;
  resegmented: number;
}

/**
 * Evaluates the output tokens after the prompt in chunks, scoring each position. Returned text does
 * not say which tokens spelled it, and the tokeniser's reading of it can differ from the generation's:
 * a generated token that decodes to nothing (stories260k emits BOS to begin a new story: the text
 * keeps no trace of it) or a word the generation built from two pieces where the tokeniser takes
 * one. So at a position where the reading's token is one the sampling could not have picked (greedy:
 * RESEGMENT_MIN_GAP below the model's top; sampled: outside the support), the likelier tokens that
 * spell the same text are tried (one that decodes to nothing is inserted), and the rest is read again
 * after it. Sound both ways: the text never changes, and only a segmentation whose every token the
 * model ranks first (greedy) or could draw (sampled) passes the verdict, so a text passes only when
 * the model generates it.
 */
async function scoreOutput(
  sequence: LlamaContextSequence,
  model: LlamaModel,
  first: Distribution,
  reading: Token[],
  how: OutputScoring,
): Promise<ScoredOutput> {
  let output = reading;
  const tokens: TokenScore[] = [];
  let endDistribution = first;
  let resegmented = 0;
  /** Output tokens fed to the sequence so far. */
  let evaluated = 0;
  /** Positions that could not be re-segmented, in order; only later ones are tried again. */
  let tried = -1;
  /** Positions of the last chunk the sampling could not have produced, with their distributions. */
  let suspects: { position: number; distribution: Distribution }[] = [];
  const suspect = (score: TokenScore) =>
    how.sampled ? !score.inSupport : score.rank !== 0 && score.topLogprob - score.logprob > RESEGMENT_MIN_GAP;
  const place = (position: number, distribution: Distribution) => {
    const score = tokenScore(distribution, output[position] as Token);
    tokens[position] = score;
    if (suspect(score) && position > tried) suspects.push({ position, distribution });
  };
  if (output.length > 0) place(0, first);
  for (;;) {
    const fix = suspects.length > 0 && resegmented < MAX_RESEGMENTS ? suspects : [];
    suspects = [];
    let fixed = false;
    for (const { position, distribution } of fix) {
      const tail = resegment(model, output, position, distribution, how);
      tried = position;
      if (!tail || how.promptTokens + position + tail.length > how.contextSize) continue;
      if (evaluated > position) {
        await sequence.eraseContextTokenRanges([
          { start: how.promptTokens + position, end: how.promptTokens + evaluated },
        ]);
        evaluated = position;
      }
      output = [...output.slice(0, position), ...tail];
      tokens.length = position;
      resegmented++;
      place(position, distribution);
      fixed = true;
      break;
    }
    if (!fixed && evaluated >= output.length) break;
    if (fixed) continue;
    how.signal?.throwIfAborted();
    const start = evaluated;
    const chunk = output.slice(start, start + SCORE_CHUNK_TOKENS);
    const items: ControlledEvaluateInputItem[] = chunk.map((t) => [
      t,
      { generateNext: { probabilities: true, options: how.options } },
    ]);
    await sequence.controlledEvaluate(items, {
      onTokenResult(index, result) {
        const distribution = result.next.probabilities;
        if (!distribution) return;
        const position = start + index + 1;
        if (position < output.length) place(position, distribution);
        else endDistribution = distribution;
        // Only suspects keep their distribution: a sampled read without top-k holds the whole vocabulary.
        if (!suspects.some((x) => x.distribution === distribution)) delete result.next.probabilities;
      },
    });
    evaluated = start + chunk.length;
  }
  return { output, tokens, endDistribution, resegmented };
}

/**
 * Another spelling of the output from `position` on that begins with a token the sampling prefers
 * to the reading's: the likeliest token near the top (greedy) or in the support (sampled) whose text
 * begins what is left, then the rest read again. A token that decodes to nothing (BOS, a control
 * token) is inserted as it is; an end-of-generation token never (a generation stops there).
 */
function resegment(
  model: LlamaModel,
  output: readonly Token[],
  position: number,
  distribution: Distribution,
  how: OutputScoring,
): Token[] | undefined {
  const current = output[position] as Token;
  const context = output.slice(Math.max(0, position - DETOKENIZE_CONTEXT_TOKENS), position);
  const rest = model.detokenize(output.slice(position), false, context);
  let tried = 0;
  const [top] = distribution;
  const floor = how.sampled || !top ? 0 : top[1] * Math.exp(-RESEGMENT_CANDIDATE_GAP);
  for (const [candidate, p] of distribution) {
    if (candidate === current || p < floor || tried++ >= RESEGMENT_CANDIDATES) break;
    if (model.isEogToken(candidate) || how.endTokens.has(candidate)) continue;
    const piece = model.detokenize([candidate], false, context);
    if (piece === "") return [candidate, ...output.slice(position)];
    if (!rest.startsWith(piece)) continue;
    const after = rest.slice(piece.length);
    if (after === "") return [candidate];
    const spelled = spelling(model, after, [...context, candidate].slice(-DETOKENIZE_CONTEXT_TOKENS));
    if (spelled) return [candidate, ...spelled];
  }
  return undefined;
}

/** Tokens that decode to `text` after `context` (the tokeniser's readings of it, checked). */
function spelling(model: LlamaModel, text: string, context: Token[]): Token[] | undefined {
  const bare = [...model.tokenize(text, false, "trimLeadingSpace")];
  const readings = [bare, [...model.tokenize(text, false)], bare.slice(1)];
  return readings.find((r) => r.length > 0 && model.detokenize(r, false, context) === text);
}

interface Reading {
  tokens: Token[];
  leadingSpace: boolean;
}

/** The output's tokenisations: without and (where the tokeniser adds one) with a leading space. */
function outputReadings(model: LlamaModel, output: string): Reading[] {
  if (output === "") return [{ tokens: [], leadingSpace: false }];
  const bare = { tokens: [...model.tokenize(output, false, "trimLeadingSpace")], leadingSpace: false };
  const spaced = { tokens: [...model.tokenize(output, false)], leadingSpace: true };
  const same = spaced.tokens.length === bare.tokens.length && spaced.tokens.every((t, i) => t === bare.tokens[i]);
  return same ? [bare] : [bare, spaced];
}

export function logprobOf(p: number | undefined): number {
  return p === undefined || p <= 0 ? LOGPROB_FLOOR : Math.max(LOGPROB_FLOOR, Math.log(p));
}

/** The distribution is sorted, most likely first (node-llama-cpp sorts it natively). */
function tokenScore(distribution: Distribution, token: Token): TokenScore {
  let rank = -1;
  let topToken = -1;
  let topP = 0;
  let i = 0;
  for (const [t, p] of distribution) {
    if (i === 0) {
      topToken = t;
      topP = p;
    }
    if (t === token) {
      rank = i;
      break;
    }
    i++;
  }
  const p = distribution.get(token);
  return {
    token,
    logprob: logprobOf(p),
    topToken,
    topLogprob: logprobOf(topP),
    rank,
    inSupport: p !== undefined,
  };
}

function endScore(
  model: LlamaModel,
  distribution: Distribution,
  output: readonly Token[],
  stops: readonly string[],
  endTokens: ReadonlySet<Token>,
): EndScore {
  const [top] = distribution;
  let eos: EndCandidate | undefined;
  for (const [t, p] of distribution) {
    if (model.isEogToken(t) || endTokens.has(t)) {
      eos = { token: t, logprob: logprobOf(p), inSupport: true };
      break;
    }
  }
  let stop: EndCandidate | undefined;
  if (stops.length > 0) {
    const context = output.slice(-DETOKENIZE_CONTEXT_TOKENS);
    for (const [t, p] of distribution) {
      if (beginsStop(model.detokenize([t], false, context), stops)) {
        stop = { token: t, logprob: logprobOf(p), inSupport: true };
        break;
      }
    }
  }
  return {
    topToken: top?.[0] ?? -1,
    topLogprob: logprobOf(top?.[1]),
    eos: eos ?? { token: model.tokens.eos ?? -1, logprob: LOGPROB_FLOOR, inSupport: false },
    ...(stop ? { stop } : {}),
  };
}

/**
 * Whether a stop string begins inside `text`: a generation stopped by a stop string returns the text
 * before the token in which the stop string starts, so that token is what follows the output.
 */
export function beginsStop(text: string, stops: readonly string[]): boolean {
  for (let k = 0; k < text.length; k++) {
    const tail = text.slice(k);
    if (stops.some((s) => tail.startsWith(s) || s.startsWith(tail))) return true;
  }
  return false;
}
