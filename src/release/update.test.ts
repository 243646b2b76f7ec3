import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { infernet } from "../../test/helpers/cli.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import {
  fakeBinaryScript,
  makeTestArchive,
  publishRelease,
  type ReleaseServer,
  serveReleases,
} from "../../test/helpers/release-server.ts";
import { findInstallation, releasePlatform, type UpdateOptions, update } from "./update.ts";

/**
 * `infernet update` against a real local HTTP server serving real .tar.gz archives whose binary is a
 * tiny shell script (a good one prints its version; a broken one exits 1), installed in a temp dir.
 */
const { os, arch } = releasePlatform(process.platform, process.arch);

/** What a broken release's binary does: it cannot start. */
const BROKEN_BINARY = "#!/bin/sh\necho 'cannot load runtime' >&2\nexit 1\n";

/**
 * Publishes release `version` (a real .tar.gz from the shared test helpers) in a fresh folder and
 * serves it as a download server; `latest` may name another version.
 */
function serve(
  work: string,
  version: string,
  options: { broken?: boolean; wrongSum?: boolean; latest?: string } = {},
): ReleaseServer {
  const archive = makeTestArchive(version, os, arch, options.broken ? BROKEN_BINARY : fakeBinaryScript(version));
  const wrong = new Bun.CryptoHasher("sha256").update("something else").digest("hex");
  publishRelease(work, version, [archive], options.wrongSum ? { sums: `${wrong}  ${archive.name}\n` } : {});
  if (options.latest) writeFileSync(join(work, "latest"), `${options.latest}\n`);
  return serveReleases(work);
}

/** Serves several releases from one folder; `latest` names the last. */
function serveAll(work: string, versions: string[]): ReleaseServer {
  for (const v of versions) publishRelease(work, v, [makeTestArchive(v, os, arch)]);
  return serveReleases(work);
}

/** Version `v` extracted under `<dir>/.versions/`, as install.sh or an update leaves it; returns its folder. */
function place(dir: string, version: string): string {
  const bin = join(dir, ".versions", version, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "infernet"), fakeBinaryScript(version));
  chmodSync(join(bin, "infernet"), 0o755);
  return join(dir, ".versions", version);
}

/** An installed layout at version `v`, as install.sh leaves it. */
function install(dir: string, version: string): void {
  place(dir, version);
  symlinkSync(join(".versions", version, "bin/infernet"), join(dir, "infernet"));
}

const ROOT_USER = process.getuid?.() === 0;

/**
 * Makes a placed version impossible to remove, for real: its binary immutable (chattr +i) when
 * running as root, whom permissions do not stop, else its bin/ folder read-only. Undone on dispose.
 */
function lock(version: string): Disposable {
  const bin = join(version, "bin");
  if (!ROOT_USER) {
    chmodSync(bin, 0o555);
    return { [Symbol.dispose]: () => chmodSync(bin, 0o755) };
  }
  const chattr = (flag: string) => Bun.spawnSync(["chattr", flag, join(bin, "infernet")], { stderr: "ignore" });
  chattr("+i");
  return { [Symbol.dispose]: () => chattr("-i") };
}

/** Whether `lock` works here (chattr needs a filesystem and capabilities a container may lack). */
const CAN_LOCK = (() => {
  using dir = tempDir();
  const version = place(dir.path, "0.0.1");
  using _locked = lock(version);
  try {
    rmSync(version, { recursive: true });
    return false;
  } catch {
    return true;
  }
})();

function options(dir: string, url: string, extra: Partial<UpdateOptions> = {}): UpdateOptions {
  return { baseUrl: url, installation: findInstallation({ installDir: dir, execPath: "" }), os, arch, ...extra };
}

const run = (binary: string) => Bun.spawnSync([binary, "--version"]).stdout.toString().trim();

function readlinkSafe(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}

describe("update", () => {
  test("a good release is downloaded, checked, self-tested and the link switched to it", async () => {
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.1.0");
    await using server = serve(work.path, "0.2.0");
    const outcome = await update(options(dir.path, server.url));
    expect(outcome).toEqual({
      status: "updated",
      from: "0.1.0",
      to: "0.2.0",
      binary: join(dir.path, ".versions/0.2.0/bin/infernet"),
      pruned: { removed: [], failed: [] },
    });
    expect(readlinkSync(join(dir.path, "infernet"))).toBe(".versions/0.2.0/bin/infernet");
    expect(run(join(dir.path, "infernet"))).toBe("infernet 0.2.0");
    // The previous version stays for a manual rollback; no staging leftovers.
    expect(readdirSync(join(dir.path, ".versions")).sort()).toEqual(["0.1.0", "0.2.0"]);
    expect(readdirSync(dir.path).sort()).toEqual([".versions", "infernet"]);
  });

  test("a new binary that fails its self-test is rolled back: the link is unchanged and the error says so", async () => {
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.1.0");
    await using server = serve(work.path, "0.2.0", { broken: true });
    const err = await update(options(dir.path, server.url)).catch((e: unknown) => e);
    expect((err as Error).name).toBe("SelfTestError");
    expect((err as Error).message).toBe(
      "update: the new binary (0.2.0) failed its self-test: --version exited with code 1 (cannot load runtime); rolled back, still on 0.1.0",
    );
    expect(readlinkSync(join(dir.path, "infernet"))).toBe(".versions/0.1.0/bin/infernet");
    expect(run(join(dir.path, "infernet"))).toBe("infernet 0.1.0");
    expect(existsSync(join(dir.path, ".versions/0.2.0"))).toBe(false);
  });

  test("an archive whose sha256 is not the one in SHA256SUMS is refused before anything is extracted", async () => {
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.1.0");
    await using server = serve(work.path, "0.2.0", { wrongSum: true });
    const err = await update(options(dir.path, server.url)).catch((e: unknown) => e);
    expect((err as Error).name).toBe("IntegrityError");
    expect((err as Error).message).toContain("refused");
    expect(readdirSync(join(dir.path, ".versions"))).toEqual(["0.1.0"]);
    expect(readlinkSync(join(dir.path, "infernet"))).toBe(".versions/0.1.0/bin/infernet");
  });

  test("already up to date; --check only reports; --version pins; a bad version string is refused", async () => {
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.2.0");
    await using server = serve(work.path, "0.3.0", { latest: "0.2.0" });
    expect(await update(options(dir.path, server.url))).toEqual({ status: "up-to-date", version: "0.2.0" });
    expect(await update(options(dir.path, server.url, { version: "0.3.0", checkOnly: true }))).toEqual({
      status: "available",
      from: "0.2.0",
      to: "0.3.0",
    });
    expect(readlinkSync(join(dir.path, "infernet"))).toBe(".versions/0.2.0/bin/infernet");
    expect((await update(options(dir.path, server.url, { version: "0.3.0" }))).status).toBe("updated");
    const bad = await update(options(dir.path, server.url, { version: "../../etc" })).catch((e: unknown) => e);
    expect((bad as Error).name).toBe("IntegrityError");
  });

  test("after each switch, only the new version and the one it replaced stay; staging folders are left alone", async () => {
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.1.0");
    // A concurrent install's and update's staging folders: never named like a version.
    mkdirSync(join(dir.path, ".versions/.install.a1B2c3"));
    mkdirSync(join(dir.path, ".versions/.update-4242"));
    await using server = serveAll(work.path, ["0.2.0", "0.3.0", "0.4.0"]);
    const versions = () => readdirSync(join(dir.path, ".versions")).sort();
    const first = await update(options(dir.path, server.url, { version: "0.2.0" }));
    expect(first.status === "updated" && first.pruned).toEqual({ removed: [], failed: [] });
    expect(versions()).toEqual([".install.a1B2c3", ".update-4242", "0.1.0", "0.2.0"]);

    const second = await update(options(dir.path, server.url, { version: "0.3.0" }));
    expect(second.status === "updated" && second.pruned.removed.map((r) => r.version)).toEqual(["0.1.0"]);
    expect(versions()).toEqual([".install.a1B2c3", ".update-4242", "0.2.0", "0.3.0"]);

    const third = await update(options(dir.path, server.url));
    expect(third.status === "updated" && third.pruned.removed.map((r) => r.version)).toEqual(["0.2.0"]);
    expect(versions()).toEqual([".install.a1B2c3", ".update-4242", "0.3.0", "0.4.0"]);
    // What an extracted archive holds (binary, runtime library, manifest), counted before removal.
    expect(third.status === "updated" && third.pruned.removed[0]?.bytes).toBeGreaterThan(0);
    expect(run(join(dir.path, "infernet"))).toBe("infernet 0.4.0");
  });

  const SLEEP = Bun.which("sleep");
  test.skipIf(process.platform !== "linux" || !SLEEP)(
    "an old version a running process was started from (a daemon not yet restarted) is kept",
    async () => {
      using work = tempDir();
      using dir = tempDir();
      install(dir.path, "0.1.0");
      place(dir.path, "0.0.4");
      // A real executable (sleep) installed as an old version's binary and left running.
      const daemon = join(place(dir.path, "0.0.5"), "bin/infernet");
      copyFileSync(SLEEP ?? "", daemon);
      const proc = Bun.spawn([daemon, "600"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
      try {
        while (!readlinkSafe(`/proc/${proc.pid}/exe`).startsWith(join(dir.path, ".versions"))) await Bun.sleep(10);
        await using server = serve(work.path, "0.2.0");
        const outcome = await update(options(dir.path, server.url));
        expect(outcome.status === "updated" && outcome.pruned).toEqual({
          removed: [{ version: "0.0.4", bytes: expect.any(Number) }],
          failed: [],
        });
        expect(readdirSync(join(dir.path, ".versions")).sort()).toEqual(["0.0.5", "0.1.0", "0.2.0"]);
      } finally {
        proc.kill();
        await proc.exited;
      }
    },
  );

  test("the install folder is found from an executable inside .versions/<v>/bin; elsewhere it is refused", () => {
    using dir = tempDir();
    install(dir.path, "0.1.0");
    const found = findInstallation({ execPath: join(dir.path, "infernet") });
    expect(found).toEqual({ dir: dir.path, version: "0.1.0" });
    const err = (() => {
      try {
        findInstallation({ execPath: "/usr/bin/bun", fromSource: "bun src/index.ts" });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.name).toBe("NotInstalledError");
    expect(err?.message).toBe("update: running from source (bun src/index.ts), not from an installed release");
  });
});

describe("infernet update", () => {
  test("from source without INFERNET_INSTALL_DIR it refuses and says why", async () => {
    using home = tempDir();
    const r = await infernet(["update"], { home: home.path, env: { INFERNET_DOWNLOAD_URL: "http://127.0.0.1:9/" } });
    expect(r.code).toBe(8);
    expect(r.stderr).toContain("update: running from source");
    expect(r.stderr).toContain("git pull");
  });

  test("with INFERNET_INSTALL_DIR and a local server: applies the update and prints it", async () => {
    using home = tempDir();
    using work = tempDir();
    using dir = tempDir();
    install(dir.path, "0.1.0");
    await using server = serve(work.path, "0.2.0");
    const env = { INFERNET_DOWNLOAD_URL: server.url, INFERNET_INSTALL_DIR: dir.path };
    const check = await infernet(["update", "--check"], { home: home.path, env });
    expect(check.stdout).toBe("infernet 0.2.0 is available (installed: 0.1.0); run `infernet update`\n");
    const r = await infernet(["update"], { home: home.path, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`updated infernet 0.1.0 -> 0.2.0 (${join(dir.path, ".versions/0.2.0/bin/infernet")})\n`);
    expect(run(join(dir.path, "infernet"))).toBe("infernet 0.2.0");
  });

  test.skipIf(!CAN_LOCK)(
    "old versions are removed and listed; one that cannot be is reported, and the update still succeeds",
    async () => {
      using home = tempDir();
      using work = tempDir();
      using dir = tempDir();
      install(dir.path, "0.1.0");
      place(dir.path, "0.0.9");
      using _locked = lock(place(dir.path, "0.0.8"));
      await using server = serve(work.path, "0.2.0");
      const env = { INFERNET_DOWNLOAD_URL: server.url, INFERNET_INSTALL_DIR: dir.path };
      const r = await infernet(["update"], { home: home.path, env });
      expect(r.code).toBe(0);
      const versions = join(dir.path, ".versions");
      const [updated, removed, ...rest] = r.stdout.split("\n");
      expect(updated).toBe(`updated infernet 0.1.0 -> 0.2.0 (${join(versions, "0.2.0/bin/infernet")})`);
      expect(removed).toStartWith(`removed old versions from ${versions}: 0.0.9 (`);
      expect(removed).toMatch(/: 0\.0\.9 \([\d.]+ k?B\); 0\.1\.0 is kept for a rollback$/);
      expect(rest).toEqual([""]);
      expect(r.stderr).toContain(`could not remove old version ${join(versions, "0.0.8")}: `);
      expect(run(join(dir.path, "infernet"))).toBe("infernet 0.2.0");
      expect(existsSync(join(versions, "0.0.9"))).toBe(false);
      expect(existsSync(join(versions, "0.1.0"))).toBe(true);
    },
  );
});
