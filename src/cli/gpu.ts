import { defineCommand } from "./command.ts";

export const gpuCommand = defineCommand({
  name: "gpu",
  summary: "(in progress)",
  usage: ["gpu"],
  options: {},
  async run() {
    throw new Error("gpu: in progress");
  },
});
