import { type EnsuredFile, ensureModel } from "../models/cache.ts";
import { requireModel } from "../models/catalog.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { formatBytes, ProgressBar } from "./progress.ts";

/** What `pull --json` prints for each model. */
export interface PullResult {
  model: string;
  /** `downloaded` when any file was fetched now, `present` when all were already verified. */
  status: "downloaded" | "present";
  /** The model file. */
  path: string;
  files: {
    role: string;
    file: string;
    path: string;
    size: number;
    sha256: string;
    /** Where the bytes came from (absent when the file was already present). */
    source?: string;
    transferred?: number;
    resumedFrom?: number;
    seconds?: number;
  }[];
}

export const pullCommand = defineCommand({
  name: "pull",
  usage: ["pull <model>... [--json]"],
  details: `Files go to INFERNET_MODELS_DIR (default INFERNET_HOME/models)/<model>/. Sources are tried in order:
INFERNET_MODEL_MIRROR (a folder or http(s) URL holding the files by name), then the public URLs.
An interrupted pull resumes where it stopped; large files come over INFERNET_DOWNLOAD_PARTS
parallel connections. A file is used only after its sha256 matches the catalog.

Examples:
  infernet pull stories260k
  INFERNET_MODEL_MIRROR=/srv/models infernet pull llama3 qwen2.5-0.5b
  infernet pull mnist --json`,
  options: {
    json: { type: "boolean", description: "Print the results as JSON on stdout" },
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length === 0) {
      throw new UsageError("pull: name at least one model", { hint: "`infernet models` lists the catalog" });
    }
    // Resolve every name first, so a typo in the third name fails before two downloads.
    const entries = positionals.map((name) => requireModel(name));
    const config = ctx.config();
    const store = ctx.store();
    const results: PullResult[] = [];
    for (const entry of entries) {
      const bar = new ProgressBar(ctx.stderr, entry.name);
      let files: EnsuredFile[];
      try {
        files = await ensureModel(entry, { config, store, signal: ctx.signal, onProgress: (p) => bar.update(p) });
      } finally {
        bar.clear();
      }
      const result = describe(entry.name, files);
      results.push(result);
      if (!values.json) {
        const size = formatBytes(result.files.reduce((s, f) => s + f.size, 0));
        const verb = result.status === "present" ? "already present" : "ready";
        ctx.stdout.write(`${entry.name}: ${verb}, ${size} verified, ${result.path}\n`);
      }
    }
    if (values.json) ctx.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return 0;
  },
});

function describe(model: string, files: EnsuredFile[]): PullResult {
  return {
    model,
    status: files.some((f) => f.download) ? "downloaded" : "present",
    path: files.find((f) => f.file.role === "model")?.path ?? "",
    files: files.map((f) => ({
      role: f.file.role,
      file: f.file.file,
      path: f.path,
      size: f.file.size,
      sha256: f.file.sha256,
      ...(f.download
        ? {
            source: f.download.source,
            transferred: f.download.transferred,
            resumedFrom: f.download.resumedFrom,
            seconds: Math.round(f.download.seconds * 1000) / 1000,
          }
        : {}),
    })),
  };
}
