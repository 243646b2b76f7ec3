/**
 * The one boundary between Infernet and its inference runtimes. Every runtime (llama.cpp for GGUF
 * language models, onnxruntime for ONNX models) implements `Engine`: given a model file on disk and a
 * request, it streams events, ending with one `done` event that carries usage. The network layer
 * forwards these events unchanged, so a remote run looks exactly like a local one.
 */
export type RuntimeName = "llama" | "onnx";

/** A model file that is present on disk and verified (or named directly by the user). */
export interface LocalModel {
  /** Catalog name, or the file name for a model given by path. */
  name: string;
  runtime: RuntimeName;
  /** Absolute path of the main model file. */
  path: string;
  /** sha256 of the file when known (catalog models always; files given by path after hashing). */
  sha256?: string;
  /** Whether the model expects chat-formatted input (instruct models). */
  chat?: boolean;
  /** Other verified files that belong to the model, by role (e.g. "labels"). */
  extras?: Record<string, string>;
}

/** A constraint on generated text (see GenerateRequest.format). */
export type OutputFormat = { type: "json_object" } | { type: "json_schema"; schema: Record<string, unknown> };

/** Largest JSON schema a request may carry, in characters of its JSON. */
export const MAX_SCHEMA_CHARS = 16_384;

/** One earlier message of a chat. */
export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
}

/** Text generation. Temperature 0 (the default) is greedy decoding and gives identical output everywhere. */
export interface GenerateRequest {
  kind: "generate";
  prompt: string;
  /** Format the prompt with the model's chat template (default: the model's `chat` flag). */
  chat?: boolean;
  /** System prompt for chat models. */
  system?: string;
  /** Earlier turns of a chat, oldest first; `prompt` is the user's next message. Chat only. */
  history?: ChatTurn[];
  maxTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Seed for sampling when temperature > 0; same seed, same output. */
  seed?: number;
  /** Generation stops before any of these strings; they are not part of the output. */
  stop?: string[];
  /**
   * Constrain the output to JSON (any object) or to a JSON schema (node-llama-cpp's grammar for it,
   * GBNF under llama.cpp's sampler): the text is then always such JSON unless `maxTokens` cuts it.
   */
  format?: OutputFormat;
  /**
   * Also report each generated token's log-probability and this many likeliest alternatives (0 to
   * MAX_TOP_LOGPROBS): one `logprobs` event after the last token.
   */
  logprobs?: number;
  /**
   * Continue a generation another runtime started: the tokens (and their text) it already produced.
   * The model reads prompt + these tokens and generates what follows, so greedy output is the same as
   * an uninterrupted run. `maxTokens` counts new tokens only.
   */
  resume?: { tokens: number[]; text: string };
}

export type TensorType = "float32" | "float16" | "int32" | "int64" | "uint8" | "int8" | "bool";

/**
 * A dense tensor. `float16` data is a `Uint16Array` of IEEE half bits (see runtime/onnx), never a
 * `Float16Array`. `int64` data is a `BigInt64Array`.
 */
export interface Tensor {
  type: TensorType;
  dims: number[];
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;
}

/** Named input tensors; dimension 0 is the batch. */
export interface TensorRequest {
  kind: "tensor";
  inputs: Record<string, Tensor>;
  /** Output names to return (default: all). */
  outputs?: string[];
}

/**
 * Embeddings of texts (llama.cpp's embedding context): one `tensors` event whose `embeddings` output
 * is float32 [inputs, dimensions], then `done` with the tokens read as input and the vectors as output.
 */
export interface EmbedRequest {
  kind: "embed";
  inputs: string[];
}

export type InferenceRequest = GenerateRequest | TensorRequest | EmbedRequest;

export interface Usage {
  /** Prompt tokens (llama) or input records (onnx). */
  inputTokens: number;
  /** Generated tokens (llama) or output records (onnx). */
  outputTokens: number;
  /** Time spent in the runtime, in milliseconds. */
  computeMs: number;
  /** Time from the request to the first token or output, in milliseconds. */
  firstOutputMs: number;
}

export type FinishReason = "stop" | "length" | "aborted";

/** Most alternatives a generation may report per token (`logprobs`; OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

/** A token's natural log-probability given everything before it, and its likeliest alternatives. */
export interface TokenLogprob {
  token: number;
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

export type InferenceEvent =
  /** Text and the token ids it decodes from (ids let another runtime resume exactly here). */
  | { type: "token"; text: string; tokens: number[] }
  | { type: "tensors"; outputs: Record<string, Tensor> }
  /** Every generated token's log-probability (resumed ones included), when the request asked. */
  | { type: "logprobs"; tokens: TokenLogprob[] }
  | { type: "done"; usage: Usage; finishReason: FinishReason };

export interface RunOptions {
  signal?: AbortSignal;
}

export interface Engine extends AsyncDisposable {
  readonly runtime: RuntimeName;
  /**
   * Runs one request. The iterator yields tokens or tensors as they are produced and ends with a
   * `done` event. Breaking out of the loop, or aborting `signal`, stops the computation.
   */
  run(model: LocalModel, request: InferenceRequest, options?: RunOptions): AsyncIterable<InferenceEvent>;
  /** Loads (or keeps loaded) a model ahead of its first request. */
  preload(model: LocalModel, options?: RunOptions): Promise<void>;
  dispose(): Promise<void>;
}
