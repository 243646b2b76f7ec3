import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
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

/** An installed layout at version `v`, as install.sh leaves it. */
function install(dir: string, version: string): void {
  const bin = join(dir, ".versions", version, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "infernet"), fakeBinaryScript(version));
  chmodSync(join(bin, "infernet"), 0o755);
  symlinkSync(join(".versions", version, "bin/infernet"), join(dir, "infernet"));
}

function options(dir: string, url: string, extra: Partial<UpdateOptions> = {}): UpdateOptions {
  return { baseUrl: url, installation: findInstallation({ installDir: dir, execPath: "" }), os, arch, ...extra };
}

const run = (binary: string) => Bun.spawnSync([binary, "--version"]).stdout.toString().trim();

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
});
