import { cachedPath, cacheStatus } from "../models/cache.ts";
import { type CatalogEntry, catalog, modelFile } from "../models/catalog.ts";
import { defineCommand } from "./command.ts";
import { formatBytes } from "./progress.ts";

/** What `models --json` prints for each catalog model. */
export interface ModelListing {
  name: string;
  aliases: string[];
  description: string;
  runtime: CatalogEntry["runtime"];
  task: CatalogEntry["task"];
  chat: boolean;
  licence: string;
  contextLength?: number;
  parameters?: string;
  quantization?: string;
  /** Bytes of all the model's files. */
  size: number;
  /** Every file is present and verified. */
  downloaded: boolean;
  /** Where the model file is (or will be once pulled). */
  path: string;
  files: { role: string; file: string; size: number; sha256: string; status: string; sources: string[] }[];
}

export const modelsCommand = defineCommand({
  name: "models",
  usage: ["models [--json]"],
  details: `"downloaded" means every file of the model is in INFERNET_MODELS_DIR and its sha256 was verified;
"unverified" means a file is there but has changed since (it is checked again on first use).
Any .gguf or .onnx file also works by path: infernet run ./my-model.gguf "Hello"`,
  options: {
    json: { type: "boolean", description: "Print the catalog as JSON (for scripts)" },
  },
  async run(ctx, { values }) {
    const config = ctx.config();
    const store = ctx.store();
    const listings: ModelListing[] = catalog().map((entry) => {
      const files = entry.files.map((f) => ({
        role: f.role,
        file: f.file,
        size: f.size,
        sha256: f.sha256,
        status: cacheStatus(config, store, entry, f),
        sources: f.sources,
      }));
      return {
        name: entry.name,
        aliases: entry.aliases,
        description: entry.description,
        runtime: entry.runtime,
        task: entry.task,
        chat: entry.chat,
        licence: entry.licence,
        ...(entry.contextLength ? { contextLength: entry.contextLength } : {}),
        ...(entry.parameters ? { parameters: entry.parameters } : {}),
        ...(entry.quantization ? { quantization: entry.quantization } : {}),
        size: entry.files.reduce((s, f) => s + f.size, 0),
        downloaded: files.every((f) => f.status === "verified"),
        path: cachedPath(config, entry, modelFile(entry)),
        files,
      };
    });
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify(listings, null, 2)}\n`);
      return 0;
    }
    ctx.stdout.write(`${table(listings)}\nModels directory: ${config.modelsDir}\n`);
    return 0;
  },
});

function table(listings: ModelListing[]): string {
  const header = ["NAME", "ALIASES", "RUNTIME", "TASK", "SIZE", "LICENCE", "DOWNLOADED"];
  const rows = listings.map((m) => [
    m.name,
    m.aliases.join(", ") || "-",
    m.runtime,
    m.chat ? `${m.task} (chat)` : m.task,
    formatBytes(m.size),
    m.licence,
    downloadedCell(m),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function downloadedCell(m: ModelListing): string {
  if (m.downloaded) return `yes  ${m.path}`;
  if (m.files.some((f) => f.status === "unverified")) return `unverified  ${m.path}`;
  return "no";
}
