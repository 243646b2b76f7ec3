import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { release } from "../scripts/release.ts";
import { RELEASE_ARCHES, RELEASE_OSES, type ReleaseArch, type ReleaseOs } from "../src/release/layout.ts";
import { VERSION } from "../src/version.ts";
import { ROOT, tempDir } from "./helpers/paths.ts";
import { makeTestArchive, publishRelease, type ReleaseServer, serveReleases } from "./helpers/release-server.ts";

/**
 * install.sh run for real by /bin/sh against a local release server, with HOME, TMPDIR and the
 * install directory in a temporary folder. Archives are small test releases (test/helpers/release-server.ts).
 */
const INSTALL_SH = join(ROOT, "install.sh");
const SH = Bun.which("sh") ?? "/bin/sh";
const HOST_OS = process.platform as ReleaseOs;
const HOST_ARCH = process.arch as ReleaseArch;
const SUPPORTED_HOST = RELEASE_OSES.includes(HOST_OS) && RELEASE_ARCHES.includes(HOST_ARCH);
/** Every outside command install.sh (and tar) may run: a PATH of only these, less some, simulates a bare machine. */
const TOOLS = ["uname", "mktemp", "rm", "mkdir", "mv", "ln", "readlink", "cat", "head", "tr", "awk", "tar", "gzip"];
const DOWNLOADERS = ["curl", "wget"];
/** CI sets this: there, a missing shellcheck is a failure, not a skipped lint. */
const REQUIRE_SHELLCHECK = process.env.INFERNET_REQUIRE_SHELLCHECK === "1";
const HASHERS = ["sha256sum", "shasum"];

/** What one run of install.sh did. */
type Run = { code: number; stdout: string; stderr: string };

/** A temporary HOME, TMPDIR, release folder and shim folder; removed by `using`. */
function sandbox() {
  const dir = tempDir("infernet-install-");
  const sb = {
    home: join(dir.path, "home"),
    tmp: join(dir.path, "tmp"),
    releases: join(dir.path, "releases"),
    shims: join(dir.path, "shims"),
    /** The default install directory under this HOME. */
    get bin() {
      return join(sb.home, ".infernet/bin");
    },
    [Symbol.dispose]: () => dir[Symbol.dispose](),
  };
  for (const d of [sb.home, sb.tmp, sb.releases, sb.shims]) mkdirSync(d);
  return sb;
}
type Sandbox = ReturnType<typeof sandbox>;

/** Publishes `version` for this machine (and makes it latest unless told otherwise). */
function publish(sb: Sandbox, version: string, latest = true, os: ReleaseOs = HOST_OS, arch: ReleaseArch = HOST_ARCH) {
  publishRelease(sb.releases, version, [makeTestArchive(version, os, arch)], { latest });
}

interface RunOptions {
  path?: string;
  /** Feed the script on stdin, as `curl -fsSL .../install.sh | sh -s -- ARGS` does. */
  piped?: boolean;
  env?: Record<string, string>;
}

/** Runs `sh install.sh ARGS` with a clean environment: only what a fresh login would have. */
async function install(sb: Sandbox, server: ReleaseServer, args: string[] = [], o: RunOptions = {}): Promise<Run> {
  const argv = o.piped ? [SH, "-s", "--", ...args] : [SH, INSTALL_SH, ...args];
  const proc = Bun.spawn(argv, {
    cwd: sb.home,
    env: {
      HOME: sb.home,
      TMPDIR: sb.tmp,
      PATH: o.path ?? process.env.PATH ?? "/usr/bin:/bin",
      SHELL: "/bin/bash",
      INFERNET_DOWNLOAD_URL: server.url,
      ...o.env,
    },
    stdin: o.piped ? Bun.file(INSTALL_SH) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Runs the installed `infernet` through its link. */
function runInstalled(dir: string, ...args: string[]): string {
  const r = Bun.spawnSync([join(dir, "infernet"), ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`infernet ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** What the install dir holds: the link's target and the version folders (no leftovers allowed). */
function installed(dir: string) {
  return {
    link: existsSync(dir) ? readlinkSync(join(dir, "infernet")) : undefined,
    versions: existsSync(join(dir, ".versions")) ? readdirSync(join(dir, ".versions")).sort() : [],
  };
}

/** A folder holding links to `tools` only (each found on this machine's PATH), to use as the whole PATH. */
function toolPath(sb: Sandbox, name: string, tools: string[]): string {
  const dir = join(sb.shims, name);
  mkdirSync(dir);
  for (const t of tools) {
    const where = Bun.which(t);
    if (where) symlinkSync(where, join(dir, t));
  }
  return dir;
}

/** A `uname` earlier on PATH that reports another machine. */
function unameShim(sb: Sandbox, os: string, machine: string): string {
  const dir = join(sb.shims, `uname-${os}-${machine}`);
  mkdirSync(dir, { recursive: true });
  const shim = join(dir, "uname");
  writeFileSync(
    shim,
    `#!/bin/sh\ncase "\${1:-}" in -s) echo ${os} ;; -m) echo ${machine} ;; *) echo "uname shim: $*" >&2; exit 2 ;; esac\n`,
  );
  chmodSync(shim, 0o755);
  return `${dir}:${process.env.PATH}`;
}

describe.skipIf(!SUPPORTED_HOST)("install.sh", () => {
  test("fresh install: latest version, checksum checked, linked, self-tested, PATH hint, nothing left in TMPDIR", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    const r = await install(sb, server);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const archive = `infernet-0.2.0-${HOST_OS}-${HOST_ARCH}.tar.gz`;
    expect(server.requests).toEqual([
      { path: "/latest", status: 200 },
      { path: "/0.2.0/SHA256SUMS", status: 200 },
      { path: `/0.2.0/${archive}`, status: 200 },
    ]);
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
    expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.2.0\n");
    const manifest = JSON.parse(readFileSync(join(sb.bin, ".versions/0.2.0/runtime/manifest.json"), "utf8"));
    expect(manifest.version).toBe("0.2.0");
    expect(r.stdout).toContain(`infernet 0.2.0 is ready: ${sb.bin}/infernet`);
    expect(r.stdout).toContain(`echo 'export PATH="${sb.bin}:$PATH"' >> ~/.bashrc`);
    expect(readdirSync(sb.tmp)).toEqual([]);
  });

  test("re-install of the installed version says so, checks it still runs, and downloads no archive", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    expect((await install(sb, server)).code).toBe(0);
    server.requests.length = 0;
    const again = await install(sb, server);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("infernet 0.2.0 is already installed (self-test passed)");
    expect(server.requests.map((q) => q.path)).toEqual(["/latest"]);
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });

    // A damaged copy (its binary no longer runs) is downloaded, verified and replaced.
    writeFileSync(join(sb.bin, ".versions/0.2.0/bin/infernet"), "#!/bin/sh\nexit 1\n");
    const repair = await install(sb, server);
    expect(repair.code).toBe(0);
    expect(repair.stdout).toContain("the installed copy of 0.2.0 is damaged; reinstalling it");
    expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.2.0\n");
    expect(installed(sb.bin).versions).toEqual(["0.2.0"]);
    expect(readdirSync(sb.tmp)).toEqual([]);
  });

  test("a newer latest switches the link and keeps the old version's folder", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    expect((await install(sb, server)).code).toBe(0);
    publish(sb, "0.3.0");
    const r = await install(sb, server);
    expect(r.code).toBe(0);
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.3.0/bin/infernet", versions: ["0.2.0", "0.3.0"] });
    expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.3.0\n");
  });

  test("--version pins a version (v prefix allowed, script piped to sh) without asking for latest; an unknown one is an error", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    publish(sb, "0.3.0");
    const r = await install(sb, server, ["--version", "v0.2.0"], { piped: true });
    expect(r.code).toBe(0);
    expect(server.requests.map((q) => q.path)).not.toContain("/latest");
    expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.2.0\n");

    const missing = await install(sb, server, ["--version=9.9.9"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      `could not download ${server.url}/9.9.9/SHA256SUMS (is 9.9.9 a released version?)`,
    );
    const bad = await install(sb, server, ["--version", "../x"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("install.sh: error: --version: '../x' is not a version (expected something like 0.2.0)\n");
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
  });

  test("a checksum mismatch is refused: nothing installed, the previous install intact, no temp files", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    expect((await install(sb, server)).code).toBe(0);
    const good = makeTestArchive("0.3.0", HOST_OS, HOST_ARCH);
    const wrong = "0".repeat(64);
    publishRelease(sb.releases, "0.3.0", [good], { sums: `${wrong}  ${good.name}\n` });
    const r = await install(sb, server);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `install.sh: error: checksum mismatch for ${good.name}: expected ${wrong}, got ${good.sha256}; ` +
        "the download is corrupt or was tampered with, so nothing was installed\n",
    );
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
    expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.2.0\n");
    expect(readdirSync(sb.tmp)).toEqual([]);

    // A SHA256SUMS without this platform's archive: no release for it.
    publishRelease(sb.releases, "0.4.0", [
      makeTestArchive("0.4.0", HOST_OS === "linux" ? "darwin" : "linux", HOST_ARCH),
    ]);
    const none = await install(sb, server);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`there is no release of 0.4.0 for ${HOST_OS}-${HOST_ARCH}`);
  });

  test("a new version that fails its self-test is not linked: the previous install stays", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    expect((await install(sb, server)).code).toBe(0);
    const broken = makeTestArchive("0.3.0", HOST_OS, HOST_ARCH, "#!/bin/sh\necho 'cannot load runtime' >&2\nexit 3\n");
    publishRelease(sb.releases, "0.3.0", [broken]);
    const r = await install(sb, server);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("printed: cannot load runtime (expected 'infernet 0.3.0')");
    expect(r.stderr).toContain(
      "the downloaded infernet 0.3.0 does not run on this machine; the previous install is unchanged",
    );
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
  });

  test("OS and architecture names map to release names; anything else is refused before any download", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0", true, "linux", "arm64");
    const arm = await install(sb, server, [], { path: unameShim(sb, "Linux", "aarch64") });
    expect(arm.code).toBe(0);
    expect(arm.stdout).toContain("installing infernet 0.2.0 for linux-arm64");

    publish(sb, "0.3.0", true, "linux", "x64");
    const amd = await install(sb, server, [], { path: unameShim(sb, "Linux", "amd64") });
    expect(amd.code).toBe(0);
    expect(amd.stdout).toContain("installing infernet 0.3.0 for linux-x64");

    server.requests.length = 0;
    const riscv = await install(sb, server, [], { path: unameShim(sb, "Linux", "riscv64") });
    expect(riscv).toEqual({
      code: 1,
      stdout: "",
      stderr:
        "install.sh: error: unsupported architecture: riscv64 " +
        "(Infernet releases are built for x86_64/amd64 and aarch64/arm64)\n",
    });
    const bsd = await install(sb, server, [], { path: unameShim(sb, "FreeBSD", "amd64") });
    expect(bsd.code).toBe(1);
    expect(bsd.stderr).toBe(
      "install.sh: error: unsupported operating system: FreeBSD (Infernet releases are built for Linux and macOS)\n",
    );
    expect(server.requests).toEqual([]);
    expect(installed(sb.bin).link).toBe(".versions/0.3.0/bin/infernet");
  });

  test("a custom install dir (--dir, relative, or INFERNET_INSTALL_DIR) leaves ~/.infernet alone; on PATH, no hint", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    const custom = join(sb.home, "opt/infernet");
    const r = await install(sb, server, ["--dir", "opt/infernet/"], { path: `${custom}:${process.env.PATH}` });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("not on your PATH");
    expect(runInstalled(custom, "--version")).toBe("infernet 0.2.0\n");
    expect(existsSync(join(sb.home, ".infernet"))).toBe(false);

    const fromEnv = join(sb.home, "env-dir");
    const e = await install(sb, server, [], { env: { INFERNET_INSTALL_DIR: fromEnv, SHELL: "/usr/bin/fish" } });
    expect(e.code).toBe(0);
    expect(e.stdout).toContain(`  fish_add_path '${fromEnv}'`);
    expect(installed(fromEnv)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
    expect(existsSync(join(sb.home, ".infernet"))).toBe(false);
  });

  test("with neither curl nor wget: a clear error; wget alone and shasum alone are enough", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    const bare = await install(sb, server, [], { path: toolPath(sb, "bare", [...TOOLS, ...HASHERS]) });
    expect(bare).toEqual({
      code: 1,
      stdout: "",
      stderr:
        "install.sh: error: neither curl nor wget was found; install one of them " +
        "(e.g. 'apt-get install curl') and run this again\n",
    });
    expect(server.requests).toEqual([]);
    expect(existsSync(sb.bin)).toBe(false);

    const noHash = await install(sb, server, [], { path: toolPath(sb, "nohash", [...TOOLS, ...DOWNLOADERS]) });
    expect(noHash.code).toBe(1);
    expect(noHash.stderr).toContain("neither sha256sum nor shasum was found, so a download cannot be verified");
    expect(server.requests).toEqual([]);
    expect(existsSync(sb.bin)).toBe(false);

    // macOS has shasum but no sha256sum; minimal Linux images often have wget but no curl.
    if (Bun.which("wget") && Bun.which("shasum")) {
      const r = await install(sb, server, [], { path: toolPath(sb, "wget", [...TOOLS, "wget", "shasum"]) });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(runInstalled(sb.bin, "--version")).toBe("infernet 0.2.0\n");
    }
  });

  test("--service writes a systemd user unit for a provider and says how to enable it", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0", true, "linux", "x64");
    const path = unameShim(sb, "Linux", "x86_64");
    const r = await install(sb, server, ["--service", "--models", "stories260k"], { path });
    expect(r.code).toBe(0);
    const unit = readFileSync(join(sb.home, ".config/systemd/user/infernet-provider.service"), "utf8");
    expect(unit).toContain(`\nExecStart="${sb.bin}/infernet" start --provider --models stories260k\n`);
    expect(unit).toContain("\nWantedBy=default.target\n");
    expect(r.stdout).toContain("systemctl --user daemon-reload && systemctl --user enable --now infernet-provider");

    const mac = await install(sb, server, ["--service"], { path: unameShim(sb, "Darwin", "arm64") });
    expect(mac.code).toBe(1);
    expect(mac.stderr).toBe("install.sh: error: --service writes a systemd user unit, which is Linux only\n");
    const badModels = await install(sb, server, ["--service", "--models", "a;b"], { path });
    expect(badModels.stderr).toContain("--models: 'a;b' is not a comma-separated list of model names");
  });

  test("Ctrl-C mid-download removes every temporary file and leaves the install as it was", async () => {
    using sb = sandbox();
    await using server = serveReleases(sb.releases);
    publish(sb, "0.2.0");
    expect((await install(sb, server)).code).toBe(0);
    publish(sb, "0.3.0");
    const archivePath = `/0.3.0/infernet-0.3.0-${HOST_OS}-${HOST_ARCH}.tar.gz`;
    server.hold.add(archivePath);
    // Its own process group, like a terminal's foreground job: Ctrl-C reaches sh and curl alike.
    const child = spawn(SH, [INSTALL_SH], {
      detached: true,
      stdio: "ignore",
      env: { HOME: sb.home, TMPDIR: sb.tmp, PATH: process.env.PATH, INFERNET_DOWNLOAD_URL: server.url },
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    while (!server.requests.some((q) => q.path === archivePath)) await Bun.sleep(10);
    expect(readdirSync(sb.tmp).length).toBe(1);
    process.kill(-(child.pid ?? 0), "SIGINT");
    expect(await exited).toBe(130);
    expect(readdirSync(sb.tmp)).toEqual([]);
    expect(installed(sb.bin)).toEqual({ link: ".versions/0.2.0/bin/infernet", versions: ["0.2.0"] });
  });

  test("shellcheck finds nothing in install.sh, and sh parses it", () => {
    expect(Bun.spawnSync([SH, "-n", INSTALL_SH]).exitCode).toBe(0);
    const shellcheck = Bun.which("shellcheck");
    if (!shellcheck) {
      expect(REQUIRE_SHELLCHECK ? "shellcheck is missing" : "").toBe("");
      console.warn("shellcheck is not installed here: install.sh was not linted (CI installs it)");
      return;
    }
    const r = Bun.spawnSync([shellcheck, "--shell=sh", INSTALL_SH], { stdout: "pipe", stderr: "pipe" });
    expect(r.stdout.toString() + r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
  });

  test.skipIf(!SUPPORTED_HOST)(
    "installs the real release, built here by scripts/release.ts",
    async () => {
      using sb = sandbox();
      using out = tempDir("infernet-release-");
      const built = await release({ llama: "cpu", out: join(out.path, "dist") });
      await using server = serveReleases(built.root);
      const r = await install(sb, server, ["--version", VERSION]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(runInstalled(sb.bin, "--version")).toBe(`infernet ${VERSION}\n`);
    },
    120_000,
  );
});
