import { describe, expect, test } from "bun:test";
import type { DownloadProgress } from "../models/download.ts";
import type { Output } from "./command.ts";
import { formatBytes, formatDuration, ProgressBar } from "./progress.ts";

/** A terminal or a pipe that keeps what was written, as stderr would show it. */
function output(isTTY: boolean, columns = 100): Output & { text: string } {
  const out = {
    text: "",
    isTTY,
    columns,
    write(t: string) {
      out.text += t;
    },
  };
  return out;
}

const base: DownloadProgress = {
  file: "model.gguf",
  phase: "download",
  source: "https://example.org/model.gguf",
  done: 0,
  total: 800_000_000,
  rate: 0,
  etaSeconds: undefined,
};

describe("formatting", () => {
  test("bytes in decimal units, durations compact", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1_185_376)).toBe("1.19 MB");
    expect(formatBytes(807_694_464)).toBe("807.7 MB");
    expect(formatBytes(2_393_232_672)).toBe("2.39 GB");
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(3720)).toBe("1h02m");
  });
});

describe("ProgressBar", () => {
  test("on a TTY it redraws one line with bar, percent, bytes, rate and ETA, then leaves a summary", async () => {
    const out = output(true);
    const bar = new ProgressBar(out, "llama3");
    bar.update({ ...base, done: 0 });
    await Bun.sleep(120);
    bar.update({ ...base, done: 400_000_000, rate: 50_000_000, etaSeconds: 8 });
    const line = bar.render({ ...base, done: 400_000_000, rate: 50_000_000, etaSeconds: 8 });
    expect(line).toBe(
      "pulling llama3 model.gguf [############------------]  50%  400.0 MB/800.0 MB  50.0 MB/s  ETA 8s",
    );
    expect(out.text).toContain(`\r${line}\x1b[K`);
    bar.update({ ...base, phase: "verify", done: base.total });
    const summary = "\r\x1b[Kllama3: model.gguf 800.0 MB verified (from https://example.org/model.gguf, ";
    expect(out.text).toContain(summary);
    expect(out.text.endsWith("\n")).toBe(true);
  });

  test("the line fits a narrow terminal", () => {
    const bar = new ProgressBar(output(true, 60), "qwen2.5-0.5b");
    const line = bar.render({ ...base, done: 1, rate: 1, etaSeconds: 100000 });
    expect(line.length).toBeLessThan(60);
  });

  test("when not a TTY only the final line of each file is written", () => {
    const out = output(false);
    const bar = new ProgressBar(out, "stories260k");
    bar.update({ ...base, done: 0 });
    bar.update({ ...base, done: 500 });
    bar.update({ ...base, phase: "verify", done: 10 });
    expect(out.text).toBe("");
    bar.update({ ...base, phase: "verify", done: base.total });
    bar.update({ ...base, phase: "verify", done: base.total });
    expect(out.text.split("\n").filter(Boolean)).toHaveLength(1);
    expect(out.text).toStartWith("stories260k: model.gguf 800.0 MB verified (from https://example.org/model.gguf");
  });

  test("waiting for another process is said once", () => {
    const out = output(false);
    const bar = new ProgressBar(out, "tinyllama");
    bar.update({ ...base, phase: "wait" });
    bar.update({ ...base, phase: "wait" });
    expect(out.text).toBe("tinyllama: waiting for another infernet process downloading model.gguf\n");
  });
});
