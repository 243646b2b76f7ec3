export * from "./coin-select.ts";
export * from "./key.ts";
export * from "./wallet.ts";
