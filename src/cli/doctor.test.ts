import { describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { infernet } from "../../test/helpers/cli.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import { loadConfig } from "../config/index.ts";
import { loadOrCreateIdentity } from "../node/identity.ts";
import { Store } from "../store/db.ts";
import { checkClock, checkConfig, checkDatabase, checkDisk, checkIdentity } from "./doctor-checks.ts";
import { checkPorts } from "./doctor-ports.ts";
import { checkGpu, checkLlama, checkOnnx } from "./doctor-runtime.ts";

/** `infernet doctor`: every check's ok path and, where it can be provoked, its failing path. */

interface Report {
  ok: boolean;
  checks: { name: string; status: string; summary: string; fix?: string }[];
}

const check = (r: Report, name: string) => r.checks.find((c) => c.name === name);

describe("doctor checks", () => {
  test("config: defaults are valid; a bad config.json fails with its fix", () => {
    using dir = tempDir();
    expect(checkConfig({ INFERNET_HOME: dir.path }).result.status).toBe("ok");
    writeFileSync(join(dir.path, "config.json"), '{"gpu": "quantum"}');
    const { result, config } = checkConfig({ INFERNET_HOME: dir.path });
    expect(config).toBeUndefined();
    expect(result.status).toBe("fail");
    expect(result.summary).toContain('at "gpu"');
    expect(result.fix).toContain("infernet config");
  });

  test("identity: absent is fine, 0600 ok, 0644 fails with chmod as the fix", async () => {
    using dir = tempDir();
    expect((await checkIdentity(dir.path)).status).toBe("ok");
    await loadOrCreateIdentity(dir.path);
    expect((await checkIdentity(dir.path)).summary).toContain("mode 600");
    const key = join(dir.path, "identity.key");
    chmodSync(key, 0o644);
    const r = await checkIdentity(dir.path);
    expect(r.status).toBe("fail");
    expect(r.summary).toContain("mode 644");
    expect(r.fix).toBe(`run: chmod 600 ${key}`);
  });

  test("database: opens and migrates; a file that is not SQLite fails", () => {
    using dir = tempDir();
    const good = checkDatabase(dir.path);
    expect(good.status).toBe("ok");
    expect(good.summary).toMatch(/schema version (\d+) of \1$/);
    using other = tempDir();
    writeFileSync(join(other.path, "infernet.db"), "this is not a database, just text long enough to be a header");
    const bad = checkDatabase(other.path);
    expect(bad.status).toBe("fail");
    expect(bad.fix).toContain("move");
  });

  test("disk: free space against the minimum (a folder not made yet is measured where it would be)", () => {
    using dir = tempDir();
    expect(checkDisk("disk: home", join(dir.path, "not/yet")).status).toBe("ok");
    const tooLittle = checkDisk("disk: models", dir.path, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    expect(tooLittle.status).toBe("fail");
    expect(tooLittle.fix).toContain("INFERNET_MODELS_DIR");
  });

  test("clock: now is plausible and agrees with file times; 1970 is a warning", () => {
    using dir = tempDir();
    expect(checkClock(dir.path).status).toBe("ok");
    const r = checkClock(dir.path, () => 0);
    expect(r.status).toBe("warn");
    expect(r.summary).toContain("1970-01-01");
    expect(r.fix).toContain("timedatectl");
  });

  test("gpu: no nvidia-smi means CPU only, a warning", async () => {
    const r = await checkGpu({ command: "/nonexistent/nvidia-smi" });
    expect(r.status).toBe("warn");
    expect(r.summary).toStartWith("CPU only");
  });

  test("ports: free ports bind; a UDP or TCP port held by another program fails", async () => {
    using dir = tempDir();
    const udp = createSocket("udp4");
    await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    try {
      const udpPort = udp.address().port;
      const tcpPort = (tcp.address() as { port: number }).port;
      const config = loadConfig({
        env: {
          INFERNET_HOME: dir.path,
          INFERNET_LISTEN: `/ip4/127.0.0.1/udp/${udpPort}/quic-v1,/ip4/127.0.0.1/tcp/${tcpPort},/ip4/127.0.0.1/tcp/0`,
        },
      });
      const [u, t, zero] = await checkPorts(config);
      expect(u?.status).toBe("fail");
      expect(u?.summary).toBe(`UDP port ${udpPort} is in use by another program`);
      expect(t?.status).toBe("fail");
      expect(t?.fix).toContain("INFERNET_LISTEN");
      expect(zero?.status).toBe("ok");
    } finally {
      udp.close();
      tcp.close();
    }
    const free = loadConfig({ env: { INFERNET_HOME: dir.path, INFERNET_LISTEN: "/ip4/127.0.0.1/udp/0/quic-v1" } });
    expect((await checkPorts(free))[0]?.status).toBe("ok");
  });

  test("runtimes: a model not downloaded is skipped with the pull command", async () => {
    using dir = tempDir();
    const config = loadConfig({ env: { INFERNET_HOME: dir.path } });
    using store = Store.open(dir.path);
    const llama = await checkLlama(config, store);
    expect(llama.status).toBe("skip");
    expect(llama.fix).toContain("infernet pull stories260k");
    expect((await checkOnnx(config, store)).fix).toContain("infernet pull mnist-8");
  });
});

describe("infernet doctor", () => {
  test("with the tiny models pulled: both runtimes run them, nothing fails, exit 0", async () => {
    using dir = tempDir();
    expect((await infernet(["pull", "stories260k", "mnist-8"], { home: dir.path })).code).toBe(0);
    const r = await infernet(["doctor", "--json"], {
      home: dir.path,
      env: { INFERNET_LISTEN: "/ip4/127.0.0.1/tcp/0" },
    });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.ok).toBe(true);
    expect(check(report, "runtime: llama")?.summary).toContain("generated 8 tokens with stories260k");
    expect(check(report, "runtime: onnx")?.summary).toContain("10 outputs");
    for (const c of report.checks) if (c.status !== "ok") expect(c.fix).toBeString();
  });

  test("a bad config and a key others can read: both fail, each with a fix line, non-zero exit", async () => {
    using dir = tempDir();
    mkdirSync(dir.path, { recursive: true });
    writeFileSync(join(dir.path, "config.json"), "{ not json");
    await loadOrCreateIdentity(dir.path);
    chmodSync(join(dir.path, "identity.key"), 0o644);
    const r = await infernet(["doctor"], { home: dir.path });
    expect(r.code).toBe(8);
    expect(r.stdout).toContain("FAIL  config");
    expect(r.stdout).toContain("is not valid JSON");
    expect(r.stdout).toContain("FAIL  identity");
    expect(r.stdout).toContain(`fix: run: chmod 600 ${join(dir.path, "identity.key")}`);
    expect(r.stdout).toContain("2 check(s) failed");
  });
});
