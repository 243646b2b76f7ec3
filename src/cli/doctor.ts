import { join } from "node:path";
import { environment, resolveHome } from "../config/index.ts";
import { defineCommand } from "./command.ts";
import {
  type CheckResult,
  checkClock,
  checkConfig,
  checkDatabase,
  checkDisk,
  checkIdentity,
  notOk,
} from "./doctor-checks.ts";
import { checkPorts } from "./doctor-ports.ts";
import { checkGpu, checkLlama, checkOnnx } from "./doctor-runtime.ts";
import { EXIT } from "./exit.ts";

/**
 * `infernet doctor`: is this machine ready to run Infernet? Each check says ok, warn, fail or skip,
 * and every verdict but ok comes with one line saying what to do. Only a fail makes the exit code
 * non-zero: no GPU (CPU only) and a model not downloaded yet are normal.
 */

/** The exit code when a check failed: the setup, not a command, is what cannot work. */
export const DOCTOR_FAILED_EXIT = EXIT.config;

const MARK: Record<CheckResult["status"], string> = { ok: "ok  ", warn: "warn", fail: "FAIL", skip: "skip" };

export const doctorCommand = defineCommand({
  name: "doctor",
  usage: ["doctor [--json]"],
  details: [
    "Checks the config file, node key, database, disk space, clock, GPU driver, the llama and onnx",
    "runtimes (each runs a tiny catalog model once, if it is downloaded) and the listen ports.",
    "No network access. Exit code 0 when nothing failed, 8 when something did.",
    "",
    "Examples:",
    "  infernet doctor",
    "  infernet doctor --json",
  ].join("\n"),
  options: {
    json: { type: "boolean", description: "Print the checks as JSON" },
  },
  async run(ctx, { values }) {
    const env = environment();
    const checks: CheckResult[] = [];
    const { result, config } = checkConfig(env);
    checks.push(result);
    const home = config?.home ?? resolveHome(env);
    checks.push(await checkIdentity(home));
    const database = checkDatabase(home);
    checks.push(database);
    checks.push(checkDisk("disk: home", home));
    if (config && config.modelsDir !== join(home, "models")) checks.push(checkDisk("disk: models", config.modelsDir));
    checks.push(checkClock(home));
    checks.push(await checkGpu({ signal: ctx.signal }));
    if (!config) {
      const why = "skipped: the configuration is invalid";
      const fix = "fix the config check above, then run doctor again";
      checks.push(notOk("runtimes", "skip", why, fix), notOk("listen", "skip", why, fix));
    } else {
      if (database.status === "ok") {
        const store = ctx.store();
        checks.push(await checkLlama(config, store, ctx.signal));
        checks.push(await checkOnnx(config, store, ctx.signal));
      } else {
        checks.push(notOk("runtimes", "skip", "skipped: the database does not open", "fix the database check above"));
      }
      checks.push(...(await checkPorts(config)));
    }
    const failed = checks.some((c) => c.status === "fail");
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ ok: !failed, checks }, null, 2)}\n`);
    } else {
      ctx.stdout.write(formatChecks(checks));
    }
    return failed ? DOCTOR_FAILED_EXIT : EXIT.ok;
  },
});

/** One line per check, its fix indented below it, then a verdict. */
export function formatChecks(checks: CheckResult[]): string {
  const width = Math.max(...checks.map((c) => c.name.length)) + 2;
  let out = "";
  for (const c of checks) {
    out += `${MARK[c.status]}  ${c.name.padEnd(width)}${c.summary}\n`;
    if (c.fix) out += `      ${"".padEnd(width)}fix: ${c.fix}\n`;
  }
  const count = (s: CheckResult["status"]) => checks.filter((c) => c.status === s).length;
  const fails = count("fail");
  out += fails
    ? `\n${fails} check(s) failed, ${count("warn")} warning(s): see the fix lines above.\n`
    : `\nNo failures (${count("warn")} warning(s), ${count("skip")} skipped).\n`;
  return out;
}
