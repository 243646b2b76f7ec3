import { dlopen, FFIType } from "bun:ffi";
import { logger } from "../../util/logger.ts";

/**
 * Asks the CUDA driver API (libcuda, installed with the NVIDIA driver) for facts nvidia-smi does
 * not print, chiefly each GPU's SM count. Everything here is best effort: no library, an old
 * driver, a GPU hidden by CUDA_VISIBLE_DEVICES, or any error gives `undefined`, never a throw.
 */
const log = logger("runtime:hardware:cuda");

/** `CUdevice_attribute` values from cuda.h. */
export const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
const CUDA_SUCCESS = 0;
/** Longest device name we read back (cuda.h documents no limit; nvidia-smi names are < 96). */
const DEVICE_NAME_BYTES = 256;

/** The driver library's name on each platform that has one. */
export function defaultCudaLibrary(platform: NodeJS.Platform = process.platform): string | undefined {
  if (platform === "linux") return "libcuda.so.1";
  if (platform === "win32") return "nvcuda.dll";
  return undefined;
}

/** A GPU as nvidia-smi identified it, to be found again through the driver. */
export interface CudaLookup {
  index: number;
  name: string;
  pciBusId?: string;
}

export interface CudaDeviceFacts {
  smCount: number;
  computeCapability: string;
}

export interface CudaQueryOptions {
  /** Library to load (default: libcuda.so.1 on Linux, nvcuda.dll on Windows). */
  libraryPath?: string;
}

/**
 * nvidia-smi prints an 8-digit PCI domain ("00000000:00:06.0"); the driver documents
 * "[domain]:[bus]:[device].[function]" with the 4-digit domain it prints itself.
 */
export function cudaBusId(pciBusId: string): string {
  const m = /^([0-9a-f]+):([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f])$/i.exec(pciBusId.trim());
  if (!m) return pciBusId.trim();
  const domain = (m[1] ?? "").replace(/^0+/, "").padStart(4, "0");
  return `${domain}:${m[2]}:${m[3]}.${m[4]}`;
}

const SYMBOLS = {
  cuInit: { args: [FFIType.u32], returns: FFIType.i32 },
  cuDeviceGetCount: { args: [FFIType.ptr], returns: FFIType.i32 },
  cuDeviceGet: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  cuDeviceGetByPCIBusId: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  cuDeviceGetName: { args: [FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  cuDeviceGetAttribute: { args: [FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
} as const;

/**
 * SM count and compute capability for each GPU, in the order given (undefined where the driver
 * could not say). A GPU is found by PCI bus id; by index only when it has none and the driver's
 * device at that index has the same name (CUDA may order devices differently from nvidia-smi).
 */
export function queryCudaDevices(
  gpus: readonly CudaLookup[],
  options: CudaQueryOptions = {},
): (CudaDeviceFacts | undefined)[] {
  const none = gpus.map(() => undefined);
  const path = options.libraryPath ?? defaultCudaLibrary();
  if (!path || gpus.length === 0) return none;
  let lib: ReturnType<typeof dlopen<typeof SYMBOLS>>;
  try {
    lib = dlopen(path, SYMBOLS);
  } catch (err) {
    log.debug("CUDA driver library not loadable", { path, err });
    return none;
  }
  try {
    const cu = lib.symbols;
    const status = cu.cuInit(0);
    if (status !== CUDA_SUCCESS) {
      log.debug("cuInit failed", { status });
      return none;
    }
    const count = new Int32Array(1);
    if (cu.cuDeviceGetCount(count) !== CUDA_SUCCESS) return none;
    const attribute = (device: number, attr: number): number | undefined => {
      const out = new Int32Array(1);
      return cu.cuDeviceGetAttribute(out, attr, device) === CUDA_SUCCESS ? out[0] : undefined;
    };
    const deviceName = (device: number): string | undefined => {
      const buf = new Uint8Array(DEVICE_NAME_BYTES);
      if (cu.cuDeviceGetName(buf, DEVICE_NAME_BYTES, device) !== CUDA_SUCCESS) return undefined;
      const end = buf.indexOf(0);
      return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
    };
    const find = (gpu: CudaLookup): number | undefined => {
      const handle = new Int32Array(1);
      if (gpu.pciBusId) {
        const id = new TextEncoder().encode(`${cudaBusId(gpu.pciBusId)}\0`);
        return cu.cuDeviceGetByPCIBusId(handle, id) === CUDA_SUCCESS ? handle[0] : undefined;
      }
      if (gpu.index >= (count[0] ?? 0) || cu.cuDeviceGet(handle, gpu.index) !== CUDA_SUCCESS) return undefined;
      const device = handle[0] ?? 0;
      return deviceName(device) === gpu.name ? device : undefined;
    };
    return gpus.map((gpu) => {
      const device = find(gpu);
      if (device === undefined) return undefined;
      const sms = attribute(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
      const major = attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
      const minor = attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
      if (sms === undefined || sms <= 0 || major === undefined || minor === undefined) return undefined;
      return { smCount: sms, computeCapability: `${major}.${minor}` };
    });
  } catch (err) {
    log.debug("CUDA driver query failed", { err });
    return none;
  } finally {
    lib.close();
  }
}
