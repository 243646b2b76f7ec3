import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { queryCudaDevices } from "./cuda.ts";
import { fp32CoresPerSm, knownSmCount } from "./gpu-specs.ts";
import { type GpuInfo, parseQueryCsv, parseSmiXml, QUERY_FIELDS } from "./nvidia-smi.ts";
import { runCapped } from "./spawn.ts";

/**
 * Finds NVIDIA GPUs by running nvidia-smi. A machine without one, without the driver, or with a
 * driver that fails or hangs gets an empty list and a reason, never an exception: "no GPU" is a
 * normal answer, and inference then runs on the CPU.
 */
const log = logger("runtime:hardware:nvidia");

/** nvidia-smi normally answers in well under a second; a wedged driver can make it hang forever. */
export const NVIDIA_SMI_TIMEOUT_MS = 5_000;
/** More than any real report (the XML for 8 GPUs is ~250 KB). */
export const MAX_NVIDIA_SMI_OUTPUT_BYTES = 4 * 1024 * 1024;
/** What nvidia-smi prints (exit code 6) when the driver is loaded but sees no GPU. */
const NO_DEVICES = /^No devices were found/m;
/** Longest excerpt of nvidia-smi's own words kept in a reason. */
const MAX_REASON_CHARS = 200;

export interface NvidiaDetection {
  gpus: GpuInfo[];
  driverVersion?: string;
  /** Highest CUDA version the driver supports (from `nvidia-smi -q -x`). */
  cudaVersion?: string;
  /** Why the list is empty, in words; absent when GPUs were found. */
  reason?: string;
}

export interface DetectNvidiaOptions {
  /** The nvidia-smi executable: a name looked up on PATH, or a path (default "nvidia-smi"). */
  command?: string;
  /** Deadline for each nvidia-smi run (default `NVIDIA_SMI_TIMEOUT_MS`). */
  timeoutMs?: number;
  /** Also read `nvidia-smi -q -x` for architecture and CUDA version (default true). */
  xml?: boolean;
  /** CUDA driver library to ask for SM counts; `false` skips the driver (default: the platform's). */
  cudaLibrary?: string | false;
  signal?: AbortSignal;
}

function firstLine(text: string): string {
  return (
    text
      .split(/\r?\n/)
      .find((l) => l.trim() !== "")
      ?.trim()
      .slice(0, MAX_REASON_CHARS) ?? ""
  );
}

/** Fills SM count (driver, then published table) and CUDA cores. */
export function addComputeUnits(gpus: GpuInfo[], cudaLibrary: string | false | undefined): GpuInfo[] {
  const fromDriver =
    cudaLibrary === false
      ? gpus.map(() => undefined)
      : queryCudaDevices(gpus, cudaLibrary === undefined ? {} : { libraryPath: cudaLibrary });
  return gpus.map((gpu, i) => {
    const out: GpuInfo = { ...gpu };
    const facts = fromDriver[i];
    if (facts) {
      out.smCount = facts.smCount;
      out.smCountSource = "cuda";
      out.computeCapability ??= facts.computeCapability;
    } else {
      const sms = knownSmCount(gpu.name, gpu.memoryTotalBytes);
      out.smCountSource = sms === undefined ? "unknown" : "known-table";
      if (sms !== undefined) out.smCount = sms;
    }
    const perSm = fp32CoresPerSm(out.computeCapability);
    if (out.smCount !== undefined && perSm !== undefined) out.cudaCores = out.smCount * perSm;
    return out;
  });
}

/** Runs nvidia-smi and describes every NVIDIA GPU; see `NvidiaDetection.reason` for an empty list. */
export async function detectNvidia(options: DetectNvidiaOptions = {}): Promise<NvidiaDetection> {
  const command = options.command ?? "nvidia-smi";
  const executable = command.includes("/") || command.includes("\\") ? command : Bun.which(command);
  if (!executable) return { gpus: [], reason: `${command} not available` };
  const run = (args: string[]) =>
    runCapped([executable, ...args], {
      timeoutMs: options.timeoutMs ?? NVIDIA_SMI_TIMEOUT_MS,
      maxBytes: MAX_NVIDIA_SMI_OUTPUT_BYTES,
      ...(options.signal ? { signal: options.signal } : {}),
    });

  let result: Awaited<ReturnType<typeof run>>;
  try {
    result = await run([`--query-gpu=${QUERY_FIELDS.join(",")}`, "--format=csv,noheader,nounits"]);
  } catch (err) {
    if (options.signal?.aborted) throw err;
    log.warn("nvidia-smi could not be started", { err });
    return { gpus: [], reason: `${command} could not be started: ${errorMessage(err)}` };
  }
  if (result.timedOut) {
    return {
      gpus: [],
      reason: `${command} did not answer within ${(options.timeoutMs ?? NVIDIA_SMI_TIMEOUT_MS) / 1000} s`,
    };
  }
  if (result.truncated) {
    return { gpus: [], reason: `${command} printed more than ${MAX_NVIDIA_SMI_OUTPUT_BYTES} bytes` };
  }
  if (NO_DEVICES.test(result.stdout) || NO_DEVICES.test(result.stderr)) {
    return { gpus: [], reason: `${command} lists no GPU` };
  }
  if (result.exitCode !== 0) {
    const said = firstLine(result.stdout) || firstLine(result.stderr);
    return { gpus: [], reason: `${command} failed (exit ${result.exitCode})${said ? `: ${said}` : ""}` };
  }
  let gpus: GpuInfo[];
  try {
    gpus = parseQueryCsv(result.stdout);
  } catch (err) {
    log.warn("unexpected nvidia-smi output", { err, output: result.stdout.slice(0, MAX_REASON_CHARS) });
    return { gpus: [], reason: `could not read ${command} output: ${errorMessage(err)}` };
  }
  if (gpus.length === 0) return { gpus: [], reason: `${command} lists no GPU` };

  const detection: NvidiaDetection = { gpus };
  const driver = gpus.find((g) => g.driverVersion)?.driverVersion;
  if (driver) detection.driverVersion = driver;
  if (options.xml !== false) await addXmlFacts(detection, run, options.signal);
  detection.gpus = addComputeUnits(detection.gpus, options.cudaLibrary);
  return detection;
}

async function addXmlFacts(
  detection: NvidiaDetection,
  run: (args: string[]) => ReturnType<typeof runCapped>,
  signal: AbortSignal | undefined,
): Promise<void> {
  try {
    const result = await run(["-q", "-x"]);
    if (result.exitCode !== 0 || result.timedOut || result.truncated) return;
    const report = parseSmiXml(result.stdout);
    if (report.cudaVersion) detection.cudaVersion = report.cudaVersion;
    detection.driverVersion ??= report.driverVersion;
    for (const gpu of detection.gpus) {
      const match = report.gpus.find((x) => (gpu.uuid ? x.uuid === gpu.uuid : x.index === gpu.index));
      if (match?.architecture) gpu.architecture = match.architecture;
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    // The XML only adds detail; the CSV already answered.
    log.debug("nvidia-smi -q -x unusable", { err });
  }
}
