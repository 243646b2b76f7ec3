import { defineCommand } from "./command.ts";

export const runCommand = defineCommand({
  name: "run",
  summary: "(in progress)",
  usage: ["run"],
  options: {},
  async run() {
    throw new Error("run: in progress");
  },
});
