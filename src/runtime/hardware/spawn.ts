import { abortReason, throwIfAborted } from "../../util/abort.ts";

/** What a bounded child process produced. */
export interface CappedRun {
  /** null when the process was killed for running past the deadline. */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Output beyond `maxBytes` was dropped. */
  truncated: boolean;
}

export interface CappedRunOptions {
  timeoutMs: number;
  /** Bytes kept from each of stdout and stderr. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** A wedged driver can leave a process unkillable (state D); never wait on it longer than this. */
const EXIT_GRACE_MS = 500;

async function readCapped(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  onOverflow: () => void,
): Promise<[string, boolean]> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > maxBytes) {
        chunks.push(value.subarray(0, maxBytes - size));
        size = maxBytes;
        truncated = true;
        // A child blocked on a full pipe would never exit: stop it, the rest is not wanted.
        onOverflow();
        break;
      }
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    reader.releaseLock();
  }
  return [Buffer.concat(chunks).toString("utf8"), truncated];
}

/**
 * Runs `cmd` with a deadline and a cap on what is read back, for probing tools such as nvidia-smi
 * that can hang when a driver is unwell. Throws only if `signal` is aborted (or the spawn itself
 * fails, e.g. the executable is missing).
 */
export async function runCapped(cmd: string[], options: CappedRunOptions): Promise<CappedRun> {
  throwIfAborted(options.signal);
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  let giveUp: () => void = () => {};
  const stopped = new Promise<"stopped">((resolve) => {
    giveUp = () => {
      proc.kill("SIGKILL");
      resolve("stopped");
    };
  });
  const timer = setTimeout(() => {
    timedOut = true;
    giveUp();
  }, options.timeoutMs);
  const onAbort = () => giveUp();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const kill = () => proc.kill("SIGKILL");
    const outputs = Promise.all([
      readCapped(proc.stdout, options.maxBytes, kill),
      readCapped(proc.stderr, options.maxBytes, kill),
      proc.exited,
    ]);
    const result = await Promise.race([outputs, stopped]);
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (result === "stopped") {
      await Promise.race([proc.exited, Bun.sleep(EXIT_GRACE_MS)]);
      return { exitCode: null, stdout: "", stderr: "", timedOut, truncated: false };
    }
    const [[stdout, outCut], [stderr, errCut], exitCode] = result;
    return { exitCode, stdout, stderr, timedOut, truncated: outCut || errCut };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}
