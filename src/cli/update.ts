import { join } from "node:path";
import { environment } from "../config/index.ts";
import { DEFAULT_DOWNLOAD_URL, VERSIONS_DIR } from "../release/layout.ts";
import { findInstallation, releasePlatform, update } from "../release/update.ts";
import { defineCommand } from "./command.ts";
import { EXIT } from "./exit.ts";
import { formatBytes } from "./progress.ts";

/**
 * `infernet update`: replaces the installed binary with the latest (or a named) release, in place.
 * Only an installed layout (install.sh's `<dir>/infernet -> .versions/<v>/bin/infernet`) can be
 * updated; a checkout run with bun is told to use git.
 */
export const updateCommand = defineCommand({
  name: "update",
  usage: ["update [--check] [--version V]"],
  details: [
    "Downloads the release from INFERNET_DOWNLOAD_URL (default https://infernet.tech/releases), checks",
    "its sha256 against SHA256SUMS, extracts it beside the current version, runs the new binary's",
    "--version, and only then switches the infernet link; if the new binary fails, nothing changes.",
    "After the switch, older versions are removed; the previous one stays, so a rollback is one link away",
    "(ln -sfn .versions/<previous>/bin/infernet <dir>/infernet), and so does any version still running.",
    "The install folder is where the running binary's link lives (INFERNET_INSTALL_DIR overrides).",
    "",
    "Examples:",
    "  infernet update",
    "  infernet update --check",
    "  infernet update --version 0.2.0",
  ].join("\n"),
  options: {
    check: { type: "boolean", description: "Only say whether a newer release exists" },
    version: { type: "string", value: "V", description: "Install this version instead of the latest" },
  },
  async run(ctx, { values }) {
    const env = environment();
    const main = Bun.main;
    const installation = findInstallation({
      execPath: process.execPath,
      ...(env.INFERNET_INSTALL_DIR ? { installDir: env.INFERNET_INSTALL_DIR } : {}),
      ...(/\.[cm]?[jt]s$/.test(main) ? { fromSource: `${process.execPath} ${main}` } : {}),
    });
    const platform = releasePlatform(process.platform, process.arch);
    const outcome = await update({
      baseUrl: env.INFERNET_DOWNLOAD_URL || DEFAULT_DOWNLOAD_URL,
      installation,
      ...platform,
      ...(values.version ? { version: values.version } : {}),
      checkOnly: Boolean(values.check),
      signal: ctx.signal,
      onStep: (line) => ctx.stderr.write(`${line}\n`),
    });
    switch (outcome.status) {
      case "up-to-date":
        ctx.stdout.write(`infernet ${outcome.version} is up to date (${installation.dir})\n`);
        return EXIT.ok;
      case "available":
        ctx.stdout.write(`infernet ${outcome.to} is available (installed: ${outcome.from}); run \`infernet update\`\n`);
        return EXIT.ok;
      case "updated": {
        ctx.stdout.write(`updated infernet ${outcome.from} -> ${outcome.to} (${outcome.binary})\n`);
        const versions = join(installation.dir, VERSIONS_DIR);
        const { removed, failed } = outcome.pruned;
        if (removed.length > 0) {
          const list = removed.map((r) => `${r.version} (${formatBytes(r.bytes)})`).join(", ");
          ctx.stdout.write(`removed old versions from ${versions}: ${list}; ${outcome.from} is kept for a rollback\n`);
        }
        for (const f of failed) {
          ctx.stderr.write(
            `could not remove old version ${join(versions, f.version)}: ${f.error}; delete it by hand\n`,
          );
        }
        return EXIT.ok;
      }
    }
  },
});
