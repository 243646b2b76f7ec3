import { SETTINGS } from "../config/index.ts";
import { defineCommand } from "./command.ts";

/** What `infernet config` shows for a secret that is set. */
export const SECRET_SHOWN = "(set, hidden)";

export const configCommand = defineCommand({
  name: "config",
  usage: ["config [--json]"],
  options: {
    json: { type: "boolean", description: "Print the effective settings as JSON" },
  },
  async run(ctx, { values }) {
    const config = ctx.config();
    // A secret (an RPC password) is never printed: only whether it is set.
    const shown = Object.fromEntries(
      Object.entries(config).map(([key, value]) => {
        const setting = SETTINGS[key as keyof typeof SETTINGS] as { secret?: boolean } | undefined;
        return [key, setting?.secret && value !== "" ? SECRET_SHOWN : value];
      }),
    );
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      return 0;
    }
    const width = Math.max(...Object.keys(SETTINGS).map((k) => k.length)) + 2;
    const rows = Object.entries(SETTINGS).map(([key, s]) => {
      const value = String(shown[key]);
      return `${key.padEnd(width)}${`${value === "" ? "(none)" : value} `.padEnd(28)}${"env" in s ? s.env : ""}\n${" ".repeat(width)}${s.description}`;
    });
    ctx.stdout.write(`Config file: ${config.home}/config.json\n\n${rows.join("\n")}\n`);
    return 0;
  },
});
