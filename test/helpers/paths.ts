import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** Repository root. */
export const ROOT = resolve(import.meta.dir, "../..");
/** The shared folder beside the checkout (real models and data; never copied into the repo). */
export const SHARED = resolve(ROOT, "../shared");
export const SHARED_MODELS = join(SHARED, "models");
export const MNIST_DIR = join(SHARED, "data/mnist");
export const STORIES_GGUF = join(SHARED_MODELS, "stories260K.gguf");
export const STORIES_SHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
/** What stories260k continues "Once upon a time" with under greedy decoding (shared/models/README.md). */
export const STORIES_GREEDY_PREFIX = ", there was a little girl named Lily. She loved to play outside in the park.";

/** A fresh temporary directory, removed by `using`. */
export function tempDir(prefix = "infernet-test-"): Disposable & { path: string } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}
