import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import type { Config } from "../config/index.ts";
import type { LocalModel, RuntimeName } from "../runtime/engine.ts";
import type { Store } from "../store/db.ts";
import { FileNotFoundError, InvalidInputError } from "../util/errors.ts";
import { type CacheDeps, ensureModel } from "./cache.ts";
import { type CatalogEntry, catalog, modelFile, requireModel } from "./catalog.ts";
import type { DownloadProgress } from "./download.ts";
import { sha256File } from "./hash.ts";
import { recordVerified, verifiedRecord } from "./verified.ts";

export interface ResolveDeps {
  config: Config;
  store: Store;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Download tuning, for tests. */
  download?: CacheDeps["download"];
}

export interface ResolvedModel extends LocalModel {
  /** The catalog entry: for a catalog name, or a file whose sha256 is a catalog model's. */
  entry?: CatalogEntry;
}

const RUNTIME_BY_EXTENSION: Record<string, RuntimeName> = { ".gguf": "llama", ".onnx": "onnx" };

/** Whether the argument names a file rather than a catalog model. */
export function looksLikePath(arg: string): boolean {
  return /[/\\]/.test(arg) || extname(arg).toLowerCase() in RUNTIME_BY_EXTENSION;
}

/**
 * A catalog name/alias (downloaded on first use from the mirror or sources, verified) or a path to a
 * .gguf/.onnx file.
 */
export async function resolveLocalModel(nameOrPath: string, deps: ResolveDeps): Promise<ResolvedModel> {
  if (looksLikePath(nameOrPath)) return resolvePath(nameOrPath, deps);
  const entry = requireModel(nameOrPath);
  const files = await ensureModel(entry, deps);
  const extras: Record<string, string> = {};
  let path = "";
  for (const f of files) {
    if (f.file.role === "model") path = f.path;
    else extras[f.file.role] = f.path;
  }
  return {
    name: entry.name,
    runtime: entry.runtime,
    path,
    sha256: modelFile(entry).sha256,
    chat: entry.chat,
    ...(Object.keys(extras).length ? { extras } : {}),
    entry,
  };
}

async function resolvePath(arg: string, deps: ResolveDeps): Promise<ResolvedModel> {
  const path = resolve(arg.startsWith("~/") ? join(homedir(), arg.slice(2)) : arg);
  if (!existsSync(path)) {
    throw new FileNotFoundError(`model file ${arg} does not exist`, {
      hint: "check the path, or give a catalog name (`infernet models` lists them)",
    });
  }
  if (!statSync(path).isFile()) {
    throw new FileNotFoundError(`${arg} is not a file`, { hint: "give the path of a .gguf or .onnx file" });
  }
  const runtime = RUNTIME_BY_EXTENSION[extname(path).toLowerCase()];
  if (!runtime) {
    throw new InvalidInputError(`cannot tell which runtime runs ${arg}`, {
      hint: "model files must end in .gguf (llama.cpp) or .onnx (onnxruntime)",
    });
  }
  const sha256 = await hashOnce(path, deps);
  // A catalog model given by path keeps its catalog settings (chat template, vision spec, labels beside it).
  const entry = catalog().find((m) => m.runtime === runtime && modelFile(m).sha256 === sha256);
  const extras: Record<string, string> = {};
  for (const f of entry?.files ?? []) {
    if (f.role === "model") continue;
    const beside = join(dirname(path), f.file);
    if (existsSync(beside) && (await hashOnce(beside, deps)) === f.sha256) extras[f.role] = beside;
  }
  return {
    name: entry?.name ?? basename(path),
    runtime,
    path,
    sha256,
    ...(entry ? { chat: entry.chat, entry } : {}),
    ...(Object.keys(extras).length ? { extras } : {}),
  };
}

/** The sha256 of a user-named file, hashed once and remembered while its size and mtime stay the same. */
async function hashOnce(path: string, deps: ResolveDeps): Promise<string> {
  const known = verifiedRecord(deps.store, path);
  if (known) return known.sha256;
  const sha256 = await sha256File(path, deps.signal ? { signal: deps.signal } : {});
  recordVerified(deps.store, path, basename(path), sha256);
  return sha256;
}
