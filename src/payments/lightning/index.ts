export * from "./escrow-store.ts";
export * from "./invoice.ts";
export * from "./lightning-rail.ts";
export * from "./lnd-errors.ts";
export * from "./lnd-rest.ts";
export { KEYSEND_RECORD, MAX_LND_ANSWER_BYTES, MAX_LND_STREAM_LINE_BYTES, MAX_LND_STREAM_UPDATES } from "./lnd-wire.ts";
