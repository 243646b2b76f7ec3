import { z } from "zod";
import catalogJson from "../../models/catalog.json" with { type: "json" };
import { UnknownModelError } from "../util/errors.ts";

/**
 * The model catalog (`models/catalog.json`): every model Infernet knows by name, where to get it,
 * how big it is and its sha256. Bundled into the executable; validated when first used.
 */
const SHA256 = z.string().regex(/^[0-9a-f]{64}$/, "a lowercase hex sha256");

export const CatalogFileSchema = z.object({
  /** What the file is for: the model itself, or a companion such as class labels. */
  role: z.enum(["model", "labels"]),
  /** File name on disk and in a mirror folder. */
  file: z.string().regex(/^[A-Za-z0-9._-]+$/, "a plain file name"),
  sha256: SHA256,
  size: z.number().int().positive(),
  /** Public URLs, tried in order after the mirror. */
  sources: z.array(z.url()).min(1),
});

/** How to turn an image into the model's input tensor, and its output into labels. */
export const VisionSpecSchema = z.object({
  input: z.string(),
  /** Element type of the input tensor (lets a client without the model file prepare input for a provider). */
  inputType: z.enum(["float32", "float16"]),
  output: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** Channel order of the input tensor (NCHW). */
  channels: z.enum(["grey", "rgb", "bgr"]),
  /** Multiplier applied to 0-255 pixel values. */
  scale: z.number().positive(),
  /** Per-channel mean subtracted after scaling, then divided by std. */
  mean: z.array(z.number()).optional(),
  std: z.array(z.number()).optional(),
  /** Whether the output is raw logits (softmax applied for scores) or already probabilities. */
  outputKind: z.enum(["logits", "probabilities"]),
  /** Class names inline, or the role of a file holding them. */
  labels: z.array(z.string()).optional(),
  labelsFile: z.string().optional(),
});

export const CatalogEntrySchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
  aliases: z.array(z.string()).default([]),
  description: z.string(),
  runtime: z.enum(["llama", "onnx"]),
  task: z.enum(["text-generation", "image-classification", "tensor"]),
  /** Instruct model: prompts go through its chat template. */
  chat: z.boolean().default(false),
  licence: z.string(),
  /** Context length the model was trained for (llama). */
  contextLength: z.number().int().positive().optional(),
  /** Parameter count, for display. */
  parameters: z.string().optional(),
  /** Quantisation, for display. */
  quantization: z.string().optional(),
  vision: VisionSpecSchema.optional(),
  /**
   * How closely two providers' float outputs must agree to count as the same answer
   * (|a - b| <= atol + rtol * |b|, jobs/verify/compare.ts); the verifier's defaults otherwise.
   */
  verify: z.strictObject({ atol: z.number().nonnegative(), rtol: z.number().nonnegative() }).optional(),
  files: z.array(CatalogFileSchema).min(1),
});

export const CatalogSchema = z.object({
  version: z.literal(1),
  models: z.array(CatalogEntrySchema),
});

export type CatalogFile = z.infer<typeof CatalogFileSchema>;
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>;
export type VisionSpec = z.infer<typeof VisionSpecSchema>;

let cached: CatalogEntry[] | undefined;

/** All catalog entries (parsed once; a broken bundled catalog is a programming error and throws). */
export function catalog(): CatalogEntry[] {
  cached ??= CatalogSchema.parse(catalogJson).models;
  return cached;
}

/** Finds a model by name or alias, case-insensitively; undefined when unknown. */
export function findModel(nameOrAlias: string): CatalogEntry | undefined {
  const key = nameOrAlias.trim().toLowerCase();
  return catalog().find((m) => m.name === key || m.aliases.some((a) => a.toLowerCase() === key));
}

/** Like `findModel`, but an unknown name is a user error with suggestions. */
export function requireModel(nameOrAlias: string): CatalogEntry {
  const entry = findModel(nameOrAlias);
  if (entry) return entry;
  const close = suggest(nameOrAlias);
  throw new UnknownModelError(`unknown model "${nameOrAlias}"`, {
    hint: close.length
      ? `did you mean ${close.map((n) => `"${n}"`).join(" or ")}? \`infernet models\` lists the catalog`
      : "`infernet models` lists the catalog; a path to a .gguf or .onnx file also works",
  });
}

/** The catalog entry whose model file has this sha256. */
export function findModelBySha(sha256: string): CatalogEntry | undefined {
  return catalog().find((m) => m.files.some((f) => f.role === "model" && f.sha256 === sha256));
}

export function modelFile(entry: CatalogEntry): CatalogFile {
  const file = entry.files.find((f) => f.role === "model");
  if (!file) throw new Error(`catalog entry ${entry.name} has no model file`);
  return file;
}

function suggest(input: string): string[] {
  const key = input.toLowerCase();
  const names = catalog().flatMap((m) => [m.name, ...m.aliases]);
  return names
    .map((n) => ({ n, d: editDistance(key, n.toLowerCase()) }))
    .filter(({ n, d }) => d <= Math.max(2, Math.floor(n.length / 3)) || n.startsWith(key) || key.startsWith(n))
    .sort((a, b) => a.d - b.d)
    .slice(0, 2)
    .map(({ n }) => n);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
