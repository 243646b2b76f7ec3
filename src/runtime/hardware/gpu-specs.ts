/**
 * Published facts about NVIDIA GPUs that nvidia-smi does not report: streaming multiprocessor (SM)
 * counts by product, and FP32 CUDA cores per SM by compute capability. Used when the CUDA driver
 * cannot be asked directly (see cuda.ts).
 */

/**
 * FP32 lanes ("CUDA cores") per SM, by compute capability. Sources: the CUDA C++ Programming Guide,
 * "Throughput of Native Arithmetic Instructions" (32-bit floating-point add/multiply/multiply-add
 * results per clock per multiprocessor), and NVIDIA's cuda-samples `Common/helper_cuda.h`
 * `_ConvertSMVer2Cores`, whose current table lists 0xa0, 0xa1, 0xa3, 0xb0, 0xc0, 0xc1 (Blackwell,
 * compute capability 10.0-12.1) at 128.
 */
const FP32_CORES_PER_SM: Readonly<Record<string, number>> = {
  "3.0": 192,
  "3.2": 192,
  "3.5": 192,
  "3.7": 192,
  "5.0": 128,
  "5.2": 128,
  "5.3": 128,
  "6.0": 64, // GP100 (Tesla P100)
  "6.1": 128,
  "6.2": 128,
  "7.0": 64, // Volta
  "7.2": 64, // Xavier
  "7.5": 64, // Turing
  "8.0": 64, // GA100 (A100)
  "8.6": 128, // GA10x
  "8.7": 128, // Orin
  "8.9": 128, // Ada
  "9.0": 128, // Hopper
  "10.0": 128, // Blackwell B200/GB200
  "10.1": 128,
  "10.3": 128, // B300/GB300
  "11.0": 128, // Jetson Thor
  "12.0": 128, // RTX 50 series, RTX PRO Blackwell
  "12.1": 128, // GB10
};

/** CUDA cores per SM for a compute capability such as "9.0", or undefined when not published. */
export function fp32CoresPerSm(computeCapability: string | undefined): number | undefined {
  if (!computeCapability) return undefined;
  const m = /^(\d+)\.(\d+)$/.exec(computeCapability.trim());
  if (!m) return undefined;
  return FP32_CORES_PER_SM[`${Number(m[1])}.${Number(m[2])}`];
}

interface KnownGpu {
  /** The product name exactly as nvidia-smi prints it. */
  name: string;
  sms: number;
  /** Only for names shared by variants with different SM counts: the board's memory in GiB. */
  memoryGiB?: number;
}

/**
 * SM counts by product name. Figures from NVIDIA's architecture whitepapers and datasheets: Volta
 * (V100: 80 SMs), Turing/T4 datasheet (2,560 CUDA cores = 40 SMs x 64), A100 whitepaper (108 SMs),
 * A10 datasheet (9,216 cores = 72 x 128), A40 / RTX A6000 datasheets (10,752 = 84 x 128), GA102
 * whitepaper (RTX 3090: 82, 3090 Ti: 84, 3080 10 GB: 68, 3080 12 GB: 70, 3080 Ti: 80), Ada whitepaper
 * and datasheets (RTX 4090: 128, RTX 4080: 76, 4080 SUPER: 80, L40/L40S/RTX 6000 Ada: 18,176 = 142 x
 * 128, L4: 7,424 = 58 x 128), Hopper whitepaper (H100 SXM5: 132, H100 PCIe: 114; H200 and GH200 use
 * the same 132-SM GH100 configuration), RTX Blackwell whitepaper (RTX 5090: 170, RTX 5080: 84).
 */
const KNOWN_GPUS: readonly KnownGpu[] = [
  { name: "Tesla V100-SXM2-16GB", sms: 80 },
  { name: "Tesla V100-SXM2-32GB", sms: 80 },
  { name: "Tesla V100-PCIE-16GB", sms: 80 },
  { name: "Tesla V100-PCIE-32GB", sms: 80 },
  { name: "Tesla V100S-PCIE-32GB", sms: 80 },
  { name: "Tesla T4", sms: 40 },
  { name: "NVIDIA A100-SXM4-40GB", sms: 108 },
  { name: "NVIDIA A100-SXM4-80GB", sms: 108 },
  { name: "NVIDIA A100-PCIE-40GB", sms: 108 },
  { name: "NVIDIA A100 80GB PCIe", sms: 108 },
  { name: "NVIDIA A10", sms: 72 },
  { name: "NVIDIA A40", sms: 84 },
  { name: "NVIDIA RTX A6000", sms: 84 },
  { name: "NVIDIA GeForce RTX 3090", sms: 82 },
  { name: "NVIDIA GeForce RTX 3090 Ti", sms: 84 },
  { name: "NVIDIA GeForce RTX 3080", sms: 68, memoryGiB: 10 },
  { name: "NVIDIA GeForce RTX 3080", sms: 70, memoryGiB: 12 },
  { name: "NVIDIA GeForce RTX 3080 Ti", sms: 80 },
  { name: "NVIDIA L4", sms: 58 },
  { name: "NVIDIA L40", sms: 142 },
  { name: "NVIDIA L40S", sms: 142 },
  { name: "NVIDIA RTX 6000 Ada Generation", sms: 142 },
  { name: "NVIDIA GeForce RTX 4090", sms: 128 },
  { name: "NVIDIA GeForce RTX 4080", sms: 76 },
  { name: "NVIDIA GeForce RTX 4080 SUPER", sms: 80 },
  { name: "NVIDIA H100 80GB HBM3", sms: 132 },
  { name: "NVIDIA H100 PCIe", sms: 114 },
  { name: "NVIDIA H200", sms: 132 },
  { name: "NVIDIA GH200 480GB", sms: 132 },
  { name: "NVIDIA GeForce RTX 5090", sms: 170 },
  { name: "NVIDIA GeForce RTX 5080", sms: 84 },
];

/** How far a board's reported memory may be from its nominal size and still count as that variant. */
const MEMORY_MATCH_TOLERANCE_GIB = 1;

const normalise = (name: string) => name.trim().replace(/\s+/g, " ").toLowerCase();

/**
 * The published SM count for a product name as nvidia-smi prints it, or undefined. Names shared by
 * variants with different SM counts need `memoryBytes` to choose; without it they stay unknown.
 */
export function knownSmCount(name: string, memoryBytes?: number): number | undefined {
  const key = normalise(name);
  const matches = KNOWN_GPUS.filter((g) => normalise(g.name) === key);
  if (matches.length === 1 && matches[0]?.memoryGiB === undefined) return matches[0]?.sms;
  if (memoryBytes === undefined) return undefined;
  const gib = memoryBytes / 1024 ** 3;
  return matches.find((g) => g.memoryGiB !== undefined && Math.abs(g.memoryGiB - gib) <= MEMORY_MATCH_TOLERANCE_GIB)
    ?.sms;
}
