import type { OptionSpecs } from "./args.ts";

/** `infernet run` flags for ONNX models, apart from the engine so `run` loads onnxruntime only when needed. */

/** Classes listed per record unless `--top` says otherwise. */
export const DEFAULT_TOP = 5;

/** Records per engine call unless `--batch` says otherwise: large enough to amortise, small enough to print early. */
export const DEFAULT_BATCH = 64;

/** Bounds for `--top` and `--batch`. */
export const MAX_TOP = 1000;
export const MAX_BATCH = 65_536;

export const RUN_ONNX_OPTIONS = {
  input: {
    type: "string",
    value: "PATH",
    description: "ONNX models: a PNG/JPEG image, a folder of images, an IDX file (.gz or raw) or a .npy array",
  },
  labels: {
    type: "string",
    value: "PATH",
    description: "ONNX classifiers: the expected class per record (IDX, .npy, or one per line); reports accuracy",
  },
  top: {
    type: "string",
    value: "K",
    description: `ONNX classifiers: classes listed per record (default ${DEFAULT_TOP})`,
  },
  batch: {
    type: "string",
    value: "N",
    description: `ONNX models: records per inference call (default ${DEFAULT_BATCH})`,
  },
} as const satisfies OptionSpecs;
