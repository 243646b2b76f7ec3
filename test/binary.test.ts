import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { BuildError } from "../scripts/build.ts";
import { release } from "../scripts/release.ts";
import { archiveName, LATEST_FILE, RUNTIME_DIR, releaseName, SUMS_FILE } from "../src/release/layout.ts";
import { sha256File } from "../src/release/runtime.ts";
import { RACY_WINDOW_NS, VERDICTS_FILE, VERDICTS_FORMAT } from "../src/release/verdicts.ts";
import { VERSION } from "../src/version.ts";
import { copyRelease, firstLine, pathWithoutRuntimes, runBinary, spawnBinary } from "./helpers/binary.ts";
import { infernet } from "./helpers/cli.ts";
import { TEST_LISTEN } from "./helpers/network.ts";
import { SHARED, SHARED_MODELS, STORIES_GREEDY_PREFIX, tempDir } from "./helpers/paths.ts";
import { SANE, TMUX, Tmux } from "./helpers/tmux.ts";

/**
 * The compiled release, as a user gets it: built once (scripts/release.ts, CPU llama.cpp only: CI has no
 * GPU), extracted from its archive into an empty temporary folder and run with a PATH that has no node or
 * bun, no node_modules above it and none of this process's environment.
 */
const DIGIT = join(SHARED, "data/reference/mnist-winml/mnist_28.png");
const PROMPT = ["stories260k", "Once upon a time", "--max-tokens", "20"];
/** Longest wait for a provider started from the binary to be found through its bootstrap. */
const DISCOVERY_TIMEOUT_MS = 30_000;
/** Building, packing and extracting (~10-60 s on 2 cores) is beyond the default per-hook timeout. */
const BUILD_TIMEOUT_MS = 300_000;

const tar = Bun.which("tar");
const tmp = tempDir("infernet-binary-");
let binary: string;
let releaseDir: string;
let path: string;

describe.skipIf(!tar)("the compiled binary", () => {
  beforeAll(async () => {
    const built = await release({ llama: "cpu", out: join(tmp.path, "dist") }).catch((err: unknown) => {
      // A missing toolchain is reported, not hidden; any other build failure fails the suite.
      if (err instanceof BuildError) throw new Error(`the release could not be built: ${err.message}`);
      throw err;
    });
    const sums = await Bun.file(join(built.root, VERSION, SUMS_FILE)).text();
    expect(sums).toBe(`${built.sha256}  ${archiveName(VERSION, "linux", "x64")}\n`);
    expect(await Bun.file(join(built.root, LATEST_FILE)).text()).toBe(`${VERSION}\n`);
    expect(sha256File(built.archive)).toBe(built.sha256);

    const user = join(tmp.path, "user");
    mkdirSync(user);
    const untar = Bun.spawnSync([tar!, "-xzf", built.archive, "-C", user], { stderr: "pipe" });
    expect(untar.stderr.toString()).toBe("");
    releaseDir = join(user, releaseName(VERSION, "linux", "x64"));
    binary = join(releaseDir, "bin/infernet");
    path = pathWithoutRuntimes(join(tmp.path, "path"));
    expect(Bun.which("node", { PATH: path })).toBeNull();
    expect(Bun.which("bun", { PATH: path })).toBeNull();
    for (let dir = releaseDir; dir !== dirname(dir); dir = dirname(dir)) {
      expect(existsSync(join(dir, "node_modules"))).toBe(false);
    }
  }, BUILD_TIMEOUT_MS);

  afterAll(() => tmp[Symbol.dispose]());

  const env = (name: string, extra: Record<string, string> = {}) => ({
    home: join(tmp.path, "homes", name),
    path,
    env: extra,
  });

  test("--version prints the version baked in from package.json", async () => {
    const r = await runBinary(binary, ["--version"], env("version"));
    expect(r.stderr).toBe("");
    expect(r).toMatchObject({ code: 0, stdout: `infernet ${VERSION}\n` });
  });

  test("stories260k runs with llama.cpp from the runtime folder: the same greedy text as from source", async () => {
    const compiled = await runBinary(binary, ["run", ...PROMPT], env("llama"));
    expect(compiled.stderr).not.toContain("infernet:");
    expect(compiled.stderr).not.toContain("node-llama-cpp");
    expect(compiled.code).toBe(0);
    const source = await infernet(["run", ...PROMPT], { home: join(tmp.path, "homes", "source") });
    expect(source.code).toBe(0);
    expect(compiled.stdout).toBe(source.stdout);
    expect(STORIES_GREEDY_PREFIX.startsWith(compiled.stdout.trim())).toBe(true);
  });

  test("mnist-8 runs with onnxruntime from the runtime folder", async () => {
    const r = await runBinary(binary, ["run", "mnist-8", "--input", DIGIT], env("onnx"));
    expect(r.stderr).not.toContain("infernet:");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("8");
    expect(lines[1]).toMatch(/^ {2}1\.0000 {2}8$/);
  });

  test("two copies of the binary: a provider and a client exchange over QUIC", async () => {
    const providerBinary = copyRelease(releaseDir, join(tmp.path, "copy-provider"));
    const clientBinary = copyRelease(releaseDir, join(tmp.path, "copy-client"));
    const listen = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--no-mdns"];
    const provider = spawnBinary(
      providerBinary,
      ["start", "--json", ...listen, "--provider", "--models", "stories260k"],
      env("provider"),
    );
    try {
      const status = JSON.parse(await firstLine(provider)) as { addresses: string[] };
      const quic = status.addresses.find((a) => a.includes("/quic-v1/"));
      expect(quic).toBeDefined();
      // The client has no model mirror: the text can only come from the provider.
      const client = env("client", { INFERNET_MODEL_MIRROR: "" });
      const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
      for (;;) {
        const peers = await runBinary(
          clientBinary,
          ["peers", "--model", "stories260k", "--json", "--bootstrap", quic!],
          client,
        );
        if (peers.code === 0 && (JSON.parse(peers.stdout) as unknown[]).length > 0) break;
        if (Date.now() > deadline) throw new Error(`the provider was not found: ${peers.stdout}${peers.stderr}`);
        await Bun.sleep(200);
      }
      const r = await runBinary(
        clientBinary,
        ["run", ...PROMPT, "--remote", "--verbose", "--bootstrap", quic!, "--no-mdns"],
        client,
      );
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/running on provider 12D3Koo\w+/);
      expect(STORIES_GREEDY_PREFIX.startsWith(r.stdout.trim())).toBe(true);
      expect(r.stdout.length).toBeGreaterThan(20);
    } finally {
      provider.kill("SIGTERM");
      await provider.exited;
    }
  });

  test.skipIf(!TMUX)("on a terminal, start opens the dashboard (Ink in the binary); q stops the node", async () => {
    const tmux = new Tmux();
    try {
      const home = join(tmp.path, "homes", "dashboard");
      mkdirSync(home, { recursive: true });
      const vars = { HOME: home, PATH: path, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: SHARED_MODELS, TERM: "xterm" };
      const start = [binary, "start", "--provider", "--models", "mnist-8", ...TEST_LISTEN];
      tmux.session("binary", 120, 40);
      const line = `env -i ${Object.entries(vars)
        .map(([k, v]) => `${k}='${v}'`)
        .join(" ")} ${start.map((a) => `'${a}'`).join(" ")}`;
      tmux.command("binary", line, "BIN-EXIT=");
      await tmux.until("binary", (s) => s.includes("▸ Hardware") && s.includes("serving mnist-8"));
      tmux.send("binary", "q");
      expect(await tmux.exited("binary", "BIN-EXIT=")).toMatch(/Infernet node 12D3Koo\w+ stopped\.\s+BIN-EXIT=0/);
      expect(await tmux.terminalState("binary")).toEqual(SANE);
    } finally {
      tmux.kill();
    }
  });

  test("a runtime file changed after the build is refused, and so is one added", async () => {
    const changed = copyRelease(releaseDir, join(tmp.path, "copy-changed"));
    appendFileSync(join(dirname(dirname(changed)), RUNTIME_DIR, "onnx/onnxruntime_binding.node"), "x");
    const r = await runBinary(changed, ["run", "mnist-8", "--input", DIGIT], env("changed"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("runtime/onnx/onnxruntime_binding.node does not match its sha256 in the manifest");

    const added = copyRelease(releaseDir, join(tmp.path, "copy-added"));
    writeFileSync(join(dirname(dirname(added)), RUNTIME_DIR, "onnx/libextra.so"), "not ours");
    const a = await runBinary(added, ["run", "mnist-8", "--input", DIGIT], env("added"));
    expect(a.code).not.toBe(0);
    expect(a.stderr).toContain("runtime/onnx/libextra.so is not part of this release");
  });

  describe("runtime verdicts: a later process skips hashing what an earlier one verified", () => {
    const ONNX_BINDING = "onnx/onnxruntime_binding.node";
    const ONNX_FILES = 2;

    /** The onnx piece's "native runtime verified" debug lines in a run's stderr: files and how many were hashed. */
    function onnxChecks(stderr: string): { files: number; hashed: number }[] {
      return stderr
        .split("\n")
        .filter((line) => line.startsWith("{") && line.includes('"native runtime verified"'))
        .map((line) => JSON.parse(line) as { piece: string; files: number; hashed: number })
        .filter((entry) => entry.piece === "onnx")
        .map(({ files, hashed }) => ({ files, hashed }));
    }

    async function mnist(bin: string, name: string) {
      const r = await runBinary(bin, ["run", "mnist-8", "--input", DIGIT], env(name, { INFERNET_LOG: "debug" }));
      return { ...r, checks: onnxChecks(r.stderr) };
    }

    /**
     * A copy of the release whose onnx files already have verdicts: copied, left until the racy window
     * has passed (files changed within it get none, see src/release/verdicts.ts), then run once.
     */
    async function cachedCopy(name: string): Promise<{ bin: string; release: string }> {
      const bin = copyRelease(releaseDir, join(tmp.path, name));
      await Bun.sleep(Number(RACY_WINDOW_NS / 1_000_000n));
      const first = await mnist(bin, name);
      expect(first.code).toBe(0);
      expect(first.checks).toEqual([{ files: ONNX_FILES, hashed: ONNX_FILES }]);
      return { bin, release: dirname(dirname(bin)) };
    }

    test("a second process hashes none of the files the first verified", async () => {
      const { bin } = await cachedCopy("verdicts-reuse");
      const second = await mnist(bin, "verdicts-reuse");
      expect(second.code).toBe(0);
      expect(second.stdout.split("\n")[0]).toBe("8");
      expect(second.checks).toEqual([{ files: ONNX_FILES, hashed: 0 }]);
    });

    test("a byte appended after its verdict was cached is refused", async () => {
      const { bin, release } = await cachedCopy("verdicts-append");
      appendFileSync(join(release, RUNTIME_DIR, ONNX_BINDING), "x");
      const r = await mnist(bin, "verdicts-append");
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`runtime/${ONNX_BINDING} does not match its sha256 in the manifest`);
    });

    test("touching a file's mtime hashes it again, and it passes", async () => {
      const { bin, release } = await cachedCopy("verdicts-touch");
      const then = new Date(Date.now() - 3_600_000);
      utimesSync(join(release, RUNTIME_DIR, ONNX_BINDING), then, then);
      const r = await mnist(bin, "verdicts-touch");
      expect(r.code).toBe(0);
      expect(r.stdout.split("\n")[0]).toBe("8");
      expect(r.checks).toEqual([{ files: ONNX_FILES, hashed: 1 }]);
    });

    test("a corrupted cache file is ignored (every file hashed) and replaced", async () => {
      const { bin, release } = await cachedCopy("verdicts-corrupt");
      const cache = join(release, VERDICTS_FILE);
      writeFileSync(cache, '{"format":"infernet-runtime-verdicts/1","verdicts":{"/x":');
      const r = await mnist(bin, "verdicts-corrupt");
      expect(r.code).toBe(0);
      expect(r.checks).toEqual([{ files: ONNX_FILES, hashed: ONNX_FILES }]);
      expect((JSON.parse(readFileSync(cache, "utf8")) as { format: string }).format).toBe(VERDICTS_FORMAT);
      const again = await mnist(bin, "verdicts-corrupt");
      expect(again.checks).toEqual([{ files: ONNX_FILES, hashed: 0 }]);
    });
  });
});

if (!tar) {
  test.skip("the compiled binary: skipped, `tar` is not on PATH (needed to pack and unpack the release)", () => {});
}
