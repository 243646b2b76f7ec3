import { unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/index.ts";
import type { Store } from "../store/db.ts";
import { logger } from "../util/logger.ts";
import type { CatalogEntry, CatalogFile } from "./catalog.ts";
import { type DownloadOptions, type DownloadProgress, type DownloadResult, downloadFile } from "./download.ts";
import { sha256File } from "./hash.ts";
import { fileStamp, forgetVerified, recordVerified, verifiedRecord } from "./verified.ts";

const log = logger("models:cache");

/**
 * The local model cache: `config.modelsDir/<model>/<file>`, each file trusted only once its sha256
 * has been checked against the catalog (and re-checked whenever its size or mtime changes).
 */
export interface CacheDeps {
  config: Config;
  store: Store;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** Download tuning (tests lower the parallel threshold and the stall timeout). */
  download?: Pick<DownloadOptions, "partThreshold" | "stallTimeoutMs">;
}

export function cachedPath(config: Config, entry: CatalogEntry, file: CatalogFile): string {
  return join(config.modelsDir, entry.name, file.file);
}

/** Status of a catalog file in the cache, from the store alone (never hashes; for listings). */
export function cacheStatus(
  config: Config,
  store: Store,
  entry: CatalogEntry,
  file: CatalogFile,
): "verified" | "unverified" | "missing" {
  const path = cachedPath(config, entry, file);
  if (!fileStamp(path)) return "missing";
  return verifiedRecord(store, path)?.sha256 === file.sha256 ? "verified" : "unverified";
}

/** Whether every file of a catalog model is here and verified (so it runs without a download). */
export function isDownloaded(config: Config, store: Store, entry: CatalogEntry): boolean {
  return entry.files.every((f) => cacheStatus(config, store, entry, f) === "verified");
}

/**
 * True when the cached file is there and has the catalog's sha256: from the store when the file is
 * unchanged, otherwise by hashing it. A file with the wrong content is deleted, so it gets downloaded again.
 */
export async function isCachedValid(
  store: Store,
  entry: CatalogEntry,
  file: CatalogFile,
  path: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const stamp = fileStamp(path);
  if (!stamp) return false;
  const record = verifiedRecord(store, path);
  if (record) {
    if (record.sha256 === file.sha256) return true;
  } else if (stamp.size === file.size) {
    const actual = await sha256File(path, signal ? { signal } : {});
    if (actual === file.sha256) {
      recordVerified(store, path, entry.name, actual);
      return true;
    }
  }
  log.warn("cached file does not match the catalog; deleting it", { path, model: entry.name });
  forgetVerified(store, path);
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
  return false;
}

export interface EnsuredFile {
  file: CatalogFile;
  path: string;
  /** The download, when one was needed. */
  download: DownloadResult | undefined;
}

/** Makes one catalog file present and verified in the cache, downloading it if needed. */
export async function ensureFile(entry: CatalogEntry, file: CatalogFile, deps: CacheDeps): Promise<EnsuredFile> {
  const path = cachedPath(deps.config, entry, file);
  if (await isCachedValid(deps.store, entry, file, path, deps.signal)) return { file, path, download: undefined };
  const result = await downloadFile(file, path, {
    mirror: deps.config.modelMirror,
    parts: deps.config.downloadParts,
    ...deps.download,
    ...(deps.signal ? { signal: deps.signal } : {}),
    ...(deps.onProgress ? { onProgress: deps.onProgress } : {}),
    isPresent: () => isCachedValid(deps.store, entry, file, path, deps.signal),
  });
  if (result.source === undefined) return { file, path, download: undefined };
  recordVerified(deps.store, path, entry.name, file.sha256);
  return { file, path, download: result };
}

/** Makes every file of a catalog model present and verified; the model file first. */
export async function ensureModel(entry: CatalogEntry, deps: CacheDeps): Promise<EnsuredFile[]> {
  const ordered = [...entry.files].sort((a, b) => Number(b.role === "model") - Number(a.role === "model"));
  const out: EnsuredFile[] = [];
  for (const file of ordered) out.push(await ensureFile(entry, file, deps));
  return out;
}
