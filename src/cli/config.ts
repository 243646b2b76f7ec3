import { SETTINGS } from "../config/index.ts";
import { defineCommand } from "./command.ts";

export const configCommand = defineCommand({
  name: "config",
  usage: ["config [--json]"],
  options: {
    json: { type: "boolean", description: "Print the effective settings as JSON" },
  },
  async run(ctx, { values }) {
    const config = ctx.config();
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
      return 0;
    }
    const rows = Object.entries(SETTINGS).map(([key, s]) => {
      const value = String(config[key as keyof typeof config]);
      return `${key.padEnd(18)}${`${value === "" ? "(none)" : value} `.padEnd(28)}${"env" in s ? s.env : ""}\n${" ".repeat(18)}${s.description}`;
    });
    ctx.stdout.write(`Config file: ${config.home}/config.json\n\n${rows.join("\n")}\n`);
    return 0;
  },
});
