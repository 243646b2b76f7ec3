import { expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, CLI } from "./helpers/cli.ts";
import { MNIST_DIR, SHARED_MODELS, tempDir } from "./helpers/paths.ts";

// Output to a pipe is written asynchronously: a command must not exit before all of it is out,
// however slowly the reader reads (a script piping `--json` into a slow consumer). A shell pipe
// with a reader that starts late shows it (Bun's own spawn pipe reads eagerly and would hide it).
const SLOW_READER_S = 3;

test("10,000 JSON lines into a shell pipe whose reader starts late: every line arrives", async () => {
  using dir = tempDir();
  const images = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
  const command = `"${BUN}" "${CLI}" run mnist-8 --input "${images}" --json --local | (sleep ${SLOW_READER_S}; wc -l)`;
  const proc = Bun.spawn(["sh", "-c", command], {
    env: { ...process.env, INFERNET_HOME: dir.path, INFERNET_MODEL_MIRROR: SHARED_MODELS, INFERNET_MDNS: "false" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  expect(Number(out.trim())).toBe(10_000);
}, 60_000);
