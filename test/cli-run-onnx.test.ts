import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnxModel } from "../src/runtime/onnx/test-models.ts";
import { BUN, CLI, infernet } from "./helpers/cli.ts";
import { MNIST_DIR, SHARED, SHARED_MODELS } from "./helpers/paths.ts";

/**
 * `infernet run` on ONNX models end to end: the real CLI in a child process, catalog models from
 * the shared mirror, the real MNIST test set and the WinML reference images.
 */
const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const LABELS = join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz");
const DIGIT = join(SHARED, "data/reference/mnist-winml/mnist_28.png");
const FISH = join(SHARED, "data/reference/squeezenet-fish/fish.png");

let tmp: string;
let home: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "infernet-cli-onnx-"));
  home = join(tmp, "home");
  mkdirSync(home);
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const run = (args: string[]) => infernet(["run", ...args], { home });

describe("image classifiers", () => {
  test("one image: the label, then the top 5 scores", async () => {
    const { code, stdout, stderr } = await run(["mnist-8", "--input", DIGIT]);
    expect(stderr).not.toContain("infernet:");
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("8");
    expect(lines).toHaveLength(6);
    expect(lines[1]).toMatch(/^ {2}1\.0000 {2}8$/);
  });

  test("all 10,000 MNIST test images: one line per record, exactly 9,890 right, accuracy on stderr", async () => {
    const { code, stdout, stderr } = await run(["mnist-8", "--input", IMAGES, "--labels", LABELS]);
    expect(code).toBe(0);
    const rows = stdout
      .trimEnd()
      .split("\n")
      .map((l) => l.split("\t"));
    expect(rows).toHaveLength(10_000);
    expect(rows[0]).toEqual(["0", "7", "1.0000", "7"]);
    expect(rows.map((r) => r[0])).toEqual(Array.from({ length: 10_000 }, (_, i) => String(i)));
    expect(rows.filter((r) => r[1] === r[3]).length).toBe(9_890);
    expect(stderr).toContain("accuracy: 9890/10000 (98.90%)");
  });

  test("--json: one object per record, then a summary", async () => {
    const { code, stdout } = await run([
      "mnist-8",
      "--input",
      IMAGES,
      "--labels",
      LABELS,
      "--json",
      "--top",
      "3",
      "--batch",
      "500",
    ]);
    expect(code).toBe(0);
    const lines = stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(10_001);
    expect(lines.at(-1)).toEqual({ summary: { records: 10_000, correct: 9_890, accuracy: 0.989 } });
    const first = lines[0];
    expect(first).toMatchObject({ index: 0, class: 7, label: "7", expected: "7", expectedClass: 7, correct: true });
    expect(first.top).toHaveLength(3);
    expect(lines.slice(0, -1).filter((l) => l.correct).length).toBe(9_890);
  });

  test("squeezenet on the WinML fish: tench at 0.7378, names from its labels file", async () => {
    const { code, stdout } = await run(["squeezenet", "--input", FISH, "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.class).toBe(0);
    expect(result.label).toBe("tench, Tinca tinca");
    expect(Math.abs(result.score - 0.7378)).toBeLessThan(2e-3);
    expect(result.top).toHaveLength(5);
  });

  test("a model file given by path keeps its catalog vision spec (found by sha256)", async () => {
    const { code, stdout } = await run([join(SHARED_MODELS, "mnist-8.onnx"), "--input", DIGIT]);
    expect(code).toBe(0);
    expect(stdout.split("\n")[0]).toBe("8");
  });

  test("a folder of images: one line per file, named, in name order", async () => {
    const folder = join(tmp, "digits");
    mkdirSync(folder);
    writeFileSync(join(folder, "b.png"), readFileSync(DIGIT));
    writeFileSync(join(folder, "a.png"), readFileSync(DIGIT));
    const { code, stdout } = await run(["mnist-8", "--input", folder]);
    expect(code).toBe(0);
    expect(stdout).toBe("a.png\t8\t1.0000\nb.png\t8\t1.0000\n");
  });
});

describe("tensor models", () => {
  test("a model without a vision spec takes a .npy and prints its outputs as JSON", async () => {
    const model = join(tmp, "double.onnx");
    writeFileSync(
      model,
      onnxModel({
        inputs: [{ name: "x", type: "float32", shape: ["N", 3] }],
        outputs: [{ name: "y", type: "float32", shape: ["N", 3] }],
        nodes: [{ op: "Mul", inputs: ["x", "two"], outputs: ["y"] }],
        constants: [{ name: "two", dims: [], values: [2] }],
      }),
    );
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    const padded = `${header}${" ".repeat(63 - ((10 + header.length) % 64))}\n`;
    const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, padded.length & 0xff, padded.length >> 8]);
    const npy = join(tmp, "x.npy");
    writeFileSync(
      npy,
      Buffer.concat([prefix, Buffer.from(padded, "latin1"), Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6]).buffer)]),
    );
    const { code, stdout } = await run([model, "--input", npy]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({
      index: 0,
      outputs: { y: { type: "float32", dims: [2, 3], data: [2, 4, 6, 8, 10, 12] } },
    });

    const image = await run([model, "--input", DIGIT]);
    expect(image.code).toBe(2);
    expect(image.stderr).toContain("takes a .npy array, not an image");
  });
});

describe("mistakes give one line and the right exit code", () => {
  test("no --input", async () => {
    const { code, stderr } = await run(["mnist-8"]);
    expect(code).toBe(2);
    expect(stderr).toContain("infernet: run: mnist-8 is an ONNX model and needs --input");
  });

  test("an unreadable image names the file", async () => {
    const broken = join(tmp, "broken.png");
    writeFileSync(broken, readFileSync(DIGIT).subarray(0, 60));
    const { code, stderr } = await run(["mnist-8", "--input", broken]);
    expect(code).toBe(4);
    expect(stderr).toContain(`cannot decode image ${broken}`);
    expect(stderr).not.toContain("    at ");
  });

  test("labels that do not match the records", async () => {
    const { code, stderr } = await run(["mnist-8", "--input", DIGIT, "--labels", LABELS]);
    expect(code).toBe(4);
    expect(stderr).toContain("--labels has 10000 labels for 1 input records");
  });

  test("a corrupted ONNX file", async () => {
    const bad = join(tmp, "corrupt.onnx");
    writeFileSync(bad, readFileSync(join(SHARED_MODELS, "mnist-8.onnx")).subarray(0, 5_000));
    const { code, stderr } = await run([bad, "--input", DIGIT]);
    expect(code).toBe(6);
    expect(stderr).toContain("is not a valid ONNX model");
  });

  test("a missing input file", async () => {
    const { code, stderr } = await run(["mnist-8", "--input", join(tmp, "nope.png")]);
    expect(code).toBe(3);
    expect(stderr).toContain("does not exist");
  });
});

test("Ctrl-C stops a long run between batches with exit code 130", async () => {
  const proc = Bun.spawn(
    [BUN, CLI, "run", "mnist-8", "--input", join(MNIST_DIR, "train-images-idx3-ubyte.gz"), "--batch", "1"],
    {
      env: { ...process.env, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: SHARED_MODELS },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const reader = proc.stdout.getReader();
  let seen = "";
  while (!seen.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  proc.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  expect(await proc.exited).toBe(130);
  expect(seen.split("\n").length).toBeLessThan(60_000);
});
