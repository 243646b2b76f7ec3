import { defineCommand } from "./command.ts";

export const pullCommand = defineCommand({
  name: "pull",
  summary: "(in progress)",
  usage: ["pull"],
  options: {},
  async run() {
    throw new Error("pull: in progress");
  },
});
