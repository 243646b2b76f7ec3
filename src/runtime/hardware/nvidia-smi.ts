import { InvalidInputError } from "../../util/errors.ts";

/**
 * Pure parsers for nvidia-smi output: the `--query-gpu` CSV (with or without header and units) and
 * the `-q -x` XML report. No processes here (see nvidia.ts), so every branch is testable against
 * real captured output.
 */

/** Where a GPU's SM count came from: the CUDA driver, the table of published specs, or nowhere. */
export type SmCountSource = "cuda" | "known-table" | "unknown";

/** One NVIDIA GPU as nvidia-smi (and, for SMs, the CUDA driver) describes it. Absent = not reported. */
export interface GpuInfo {
  index: number;
  name: string;
  uuid?: string;
  /** PCI bus id as nvidia-smi prints it, e.g. "00000000:00:06.0". */
  pciBusId?: string;
  memoryTotalBytes?: number;
  memoryUsedBytes?: number;
  memoryFreeBytes?: number;
  utilizationPercent?: number;
  temperatureC?: number;
  powerDrawW?: number;
  powerLimitW?: number;
  smClockMhz?: number;
  smClockMaxMhz?: number;
  /** e.g. "9.0". */
  computeCapability?: string;
  driverVersion?: string;
  pcieGen?: number;
  pcieWidth?: number;
  /** e.g. "Hopper" (from the XML report). */
  architecture?: string;
  smCount?: number;
  smCountSource?: SmCountSource;
  /** SMs x FP32 cores per SM for the compute capability. */
  cudaCores?: number;
}

/** Fields asked of `nvidia-smi --query-gpu`, in this order. */
export const QUERY_FIELDS = [
  "index",
  "name",
  "uuid",
  "pci.bus_id",
  "memory.total",
  "memory.used",
  "memory.free",
  "utilization.gpu",
  "temperature.gpu",
  "power.draw",
  "power.limit",
  "clocks.sm",
  "clocks.max.sm",
  "compute_cap",
  "driver_version",
  "pcie.link.gen.current",
  "pcie.link.width.current",
] as const;

/** nvidia-smi prints some fields under a longer name in the CSV header. */
const HEADER_ALIASES: Readonly<Record<string, string>> = {
  "clocks.current.sm": "clocks.sm",
  "clocks.current.graphics": "clocks.gr",
  "clocks.current.memory": "clocks.mem",
  "clocks.max.graphics": "clocks.max.gr",
  "clocks.max.memory": "clocks.max.mem",
};

/** Values nvidia-smi prints for a field it cannot report. */
const MISSING = /^\[?(n\/a|not supported|unknown error|insufficient permissions|requested functionality.*)\]?$/i;
const MIB = 1024 * 1024;
/** A header cell: a field name, optionally followed by its unit in brackets. */
const HEADER_CELL = /^([a-z][a-z0-9_.]*)(\s*\[[^\]]*\])?$/;

function splitCsvLine(line: string): string[] {
  return line.split(",").map((cell) => cell.trim());
}

function isHeader(cells: string[]): boolean {
  return cells.length > 0 && cells.every((c) => HEADER_CELL.test(c)) && cells.some((c) => c.startsWith("name"));
}

function headerField(cell: string): string {
  const name = HEADER_CELL.exec(cell)?.[1] ?? cell;
  return HEADER_ALIASES[name] ?? name;
}

function present(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim();
  return value === "" || MISSING.test(value) ? undefined : value;
}

/** A number with an optional unit suffix ("81559 MiB", "0 %", "115.21 W", "16x"); undefined if missing. */
function numeric(raw: string | undefined, field: string): number | undefined {
  const value = present(raw);
  if (value === undefined) return undefined;
  const m = /^(-?\d+(?:\.\d+)?)\s*([A-Za-z%]*)$/.exec(value);
  if (!m) throw new InvalidInputError(`nvidia-smi: ${field} is "${value}", not a number`);
  const n = Number(m[1]);
  const unit = m[2] ?? "";
  if (unit === "GiB") return n * 1024;
  if (unit === "KiB") return n / 1024;
  return n;
}

function mibToBytes(mib: number | undefined): number | undefined {
  return mib === undefined ? undefined : Math.round(mib * MIB);
}

/** Builds a GpuInfo from field name -> raw text; the fields are the `--query-gpu` names. */
function gpuFromFields(fields: Map<string, string>, row: number): GpuInfo {
  const name = present(fields.get("name"));
  if (!name) throw new InvalidInputError(`nvidia-smi: row ${row} has no GPU name`);
  const indexRaw = numeric(fields.get("index"), "index");
  const index = indexRaw ?? row - 1;
  if (!Number.isInteger(index) || index < 0) throw new InvalidInputError(`nvidia-smi: row ${row} has index ${index}`);
  const gpu: GpuInfo = { index, name };
  const set = <K extends keyof GpuInfo>(key: K, value: GpuInfo[K] | undefined) => {
    if (value !== undefined) gpu[key] = value;
  };
  set("uuid", present(fields.get("uuid")));
  set("pciBusId", present(fields.get("pci.bus_id")));
  set("memoryTotalBytes", mibToBytes(numeric(fields.get("memory.total"), "memory.total")));
  set("memoryUsedBytes", mibToBytes(numeric(fields.get("memory.used"), "memory.used")));
  set("memoryFreeBytes", mibToBytes(numeric(fields.get("memory.free"), "memory.free")));
  set("utilizationPercent", numeric(fields.get("utilization.gpu"), "utilization.gpu"));
  set("temperatureC", numeric(fields.get("temperature.gpu"), "temperature.gpu"));
  set("powerDrawW", numeric(fields.get("power.draw"), "power.draw"));
  set("powerLimitW", numeric(fields.get("power.limit"), "power.limit"));
  set("smClockMhz", numeric(fields.get("clocks.sm"), "clocks.sm"));
  set("smClockMaxMhz", numeric(fields.get("clocks.max.sm"), "clocks.max.sm"));
  const cc = present(fields.get("compute_cap"));
  if (cc !== undefined && !/^\d+\.\d+$/.test(cc)) {
    throw new InvalidInputError(`nvidia-smi: compute_cap is "${cc}", not major.minor`);
  }
  set("computeCapability", cc);
  set("driverVersion", present(fields.get("driver_version")));
  set("pcieGen", numeric(fields.get("pcie.link.gen.current"), "pcie.link.gen.current"));
  set("pcieWidth", numeric(fields.get("pcie.link.width.current"), "pcie.link.width.current"));
  return gpu;
}

/**
 * Parses `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`. With a header line the
 * columns are matched by name (units in brackets and in values are understood); without one,
 * `fields` gives the column order. Blank output is no GPUs. Anything else that does not fit throws
 * `InvalidInputError`.
 */
export function parseQueryCsv(text: string, fields: readonly string[] = QUERY_FIELDS): GpuInfo[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (lines.length === 0) return [];
  let columns = [...fields];
  const first = splitCsvLine(lines[0] ?? "");
  let rows = lines;
  if (isHeader(first)) {
    columns = first.map(headerField);
    rows = lines.slice(1);
  }
  return rows.map((line, i) => {
    const cells = splitCsvLine(line);
    if (cells.length !== columns.length) {
      throw new InvalidInputError(
        `nvidia-smi: line "${line.slice(0, 80)}" has ${cells.length} fields, expected ${columns.length}`,
      );
    }
    const map = new Map<string, string>();
    columns.forEach((c, j) => {
      map.set(c, cells[j] ?? "");
    });
    return gpuFromFields(map, i + 1);
  });
}

/** What `nvidia-smi -q -x` adds to the CSV query: versions and each GPU's architecture. */
export interface SmiXmlReport {
  driverVersion?: string;
  cudaVersion?: string;
  gpus: GpuInfo[];
}

const ENTITIES: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ENTITIES[e] ?? "");
}

/** Inner text of the first `<tag>` element in `xml` (leaf or not), or undefined. */
function element(xml: string | undefined, tag: string): string | undefined {
  if (xml === undefined) return undefined;
  const m = new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m?.[1];
}

function leaf(xml: string | undefined, tag: string): string | undefined {
  const inner = element(xml, tag);
  return inner === undefined ? undefined : present(decode(inner));
}

/**
 * Parses `nvidia-smi -q -x`. Gives the CUDA version and architecture the CSV query lacks, plus the
 * same per-GPU facts (the XML has no compute capability). Throws `InvalidInputError` when the text
 * is not an nvidia-smi report.
 */
export function parseSmiXml(xml: string): SmiXmlReport {
  const root = element(xml, "nvidia_smi_log");
  if (root === undefined) throw new InvalidInputError("nvidia-smi: the XML report has no <nvidia_smi_log> element");
  const report: SmiXmlReport = { gpus: [] };
  const driver = leaf(root, "driver_version");
  const cuda = leaf(root, "cuda_version");
  if (driver) report.driverVersion = driver;
  if (cuda) report.cudaVersion = cuda;
  const blocks = root.matchAll(/<gpu\s+id="([^"]*)">([\s\S]*?)<\/gpu>/g);
  for (const [, id, body] of blocks) {
    const fields = new Map<string, string>();
    const put = (field: string, value: string | undefined) => {
      if (value !== undefined) fields.set(field, value);
    };
    const memory = element(body, "fb_memory_usage");
    const link = element(element(body, "pci"), "pci_gpu_link_info");
    const power = element(body, "gpu_power_readings");
    // nvidia-smi lists GPUs in index order; minor_number is the /dev node, not the index.
    put("index", String(report.gpus.length));
    put("name", leaf(body, "product_name"));
    put("uuid", leaf(body, "uuid"));
    put("pci.bus_id", leaf(element(body, "pci"), "pci_bus_id") ?? id);
    put("memory.total", leaf(memory, "total"));
    put("memory.used", leaf(memory, "used"));
    put("memory.free", leaf(memory, "free"));
    put("utilization.gpu", leaf(element(body, "utilization"), "gpu_util"));
    put("temperature.gpu", leaf(element(body, "temperature"), "gpu_temp"));
    put(
      "power.draw",
      leaf(power, "power_draw") ?? leaf(power, "average_power_draw") ?? leaf(power, "instant_power_draw"),
    );
    put("power.limit", leaf(power, "current_power_limit") ?? leaf(power, "power_limit"));
    put("clocks.sm", leaf(element(body, "clocks"), "sm_clock"));
    put("clocks.max.sm", leaf(element(body, "max_clocks"), "sm_clock"));
    put("driver_version", driver);
    put("pcie.link.gen.current", leaf(element(link, "pcie_gen"), "current_link_gen"));
    put("pcie.link.width.current", leaf(element(link, "link_widths"), "current_link_width"));
    const gpu = gpuFromFields(fields, report.gpus.length + 1);
    const architecture = leaf(body, "product_architecture");
    if (architecture) gpu.architecture = architecture;
    report.gpus.push(gpu);
  }
  return report;
}
