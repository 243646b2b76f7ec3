import { defineCommand } from "./command.ts";

export const modelsCommand = defineCommand({
  name: "models",
  summary: "(in progress)",
  usage: ["models"],
  options: {},
  async run() {
    throw new Error("models: in progress");
  },
});
