/**
 * What paying as a direct request streams costs (payments/direct.ts): stories260k generations from
 * a provider that charges, paid over a real payment channel (a signed commitment per payment,
 * checked and stored in SQLite by the provider before it acknowledges), against the same generation
 * from a provider that does not charge, in the same process, alternating, over QUIC on 127.0.0.1.
 * The channel's funding is not on any chain (the payee here checks none), as in bench/channels.ts.
 *
 * Usage: bun bench/direct-pay.ts [rounds=10] [maxTokens=256]
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { ServiceFactoryMap } from "libp2p";
import { createHost, type Host } from "../src/node/host.ts";
import { type ChannelService, channelProtocol } from "../src/node/protocols/channel/index.ts";
import { type InferService, inferProtocol } from "../src/node/protocols/infer/index.ts";
import { msat } from "../src/payments/amount.ts";
import { ecpair } from "../src/payments/channel/keys.ts";
import { p2wpkhOutput } from "../src/payments/channel/script.ts";
import { DirectPayer, DirectPayments, directMemo, newOffer, promptBytes } from "../src/payments/direct.ts";
import type { GenerateRequest, LocalModel } from "../src/runtime/engine.ts";
import { createLlamaEngine } from "../src/runtime/llama/engine.ts";
import { Store } from "../src/store/db.ts";
import { MIRROR, machine, median } from "./lib.ts";

const rounds = Number(process.argv[2] ?? 10);
const maxTokens = Number(process.argv[3] ?? 256);
const STORIES: LocalModel = {
  name: "stories260k",
  runtime: "llama",
  path: join(MIRROR, "stories260K.gguf"),
  sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
};
const REF = { name: STORIES.name, sha256: STORIES.sha256 as string };
/** 2 sat per 1,000 generated tokens. */
const PRICE = { tokensOut: 2_000 };
const REQUEST: GenerateRequest = { kind: "generate", prompt: "Once upon a time", maxTokens };

const dir = mkdtempSync(join(tmpdir(), "infernet-bench-direct-pay-"));
const engine = createLlamaEngine({ threads: 1 });
await engine.preload(STORIES);
const served = () => new Map([[STORIES.sha256 as string, STORIES]]);

async function host(name: string, services: (store: Store) => ServiceFactoryMap): Promise<Host> {
  const store = Store.openFile(join(dir, `${name}.db`));
  return await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services: services(store),
  });
}

const payments = new DirectPayments();
const paid = await host("paid", (store) => ({
  infer: inferProtocol({ served, engines: { llama: engine }, charge: { payments, price: () => PRICE } }),
  channel: channelProtocol({
    store,
    height: () => 100,
    onStored: (ps) => {
      for (const p of ps) payments.credit(p.peer, p.memo, p.amountMsat);
    },
  }),
}));
const free = await host("free", () => ({ infer: inferProtocol({ served, engines: { llama: engine } }) }));
const client = await host("client", (store) => ({
  infer: inferProtocol(),
  channel: channelProtocol({ store, height: () => 100, payee: false }),
}));
for (const h of [paid, free]) {
  const addr = h.getMultiaddrs().find((m) => m.toString().includes("/quic-v1"));
  if (!addr) throw new Error("no QUIC address");
  await client.dial(addr);
}
const infer = client.services.infer as InferService;
const channels = client.services.channel as ChannelService;
const wallet = ecpair().makeRandom();
const { params } = await channels.openChannel(paid.peerId, {
  capacitySats: 10_000_000n,
  feeSats: 300n,
  refundHeight: 10_000,
  utxos: [{ txid: randomBytes(32).toString("hex"), vout: 0, valueSats: 20_000_000n, signer: wallet }],
  fundingFeeSats: 400n,
  changeOutput: p2wpkhOutput(wallet.publicKey),
});

interface Run {
  tokens: number;
  ms: number;
  firstMs: number;
  payments: number;
  paidMsat: bigint;
}

async function once(charged: boolean): Promise<Run> {
  let payments = 0;
  const offer = newOffer(PRICE, msat(1_000_000));
  const payer = charged
    ? new DirectPayer(
        offer,
        async (amount) => {
          payments++;
          await channels.pay(params.id, amount, directMemo(offer.id));
        },
        promptBytes(REQUEST),
        "generate",
      )
    : undefined;
  const start = performance.now();
  let firstMs = 0;
  let tokens = 0;
  for await (const e of infer.infer(charged ? paid.peerId : free.peerId, REF, REQUEST, payer ? { payer } : {})) {
    if (e.type !== "token") continue;
    if (tokens === 0) firstMs = performance.now() - start;
    tokens += e.tokens.length;
  }
  return { tokens, ms: performance.now() - start, firstMs, payments, paidMsat: payer?.paid() ?? 0n };
}

console.log(`bench/direct-pay.ts: ${rounds} rounds of ${maxTokens} tokens, stories260k, ${machine()}`);
await once(false);
await once(true);
const runs: { free: Run[]; paid: Run[] } = { free: [], paid: [] };
for (let i = 0; i < rounds; i++) {
  runs.free.push(await once(false));
  runs.paid.push(await once(true));
}
const tps = (r: Run[]) => median(r.map((x) => (x.tokens / x.ms) * 1_000));
const first = (r: Run[]) => median(r.map((x) => x.firstMs));
const last = runs.paid.at(-1) as Run;
console.log(
  `free provider: ${tps(runs.free).toFixed(0)} tokens/s, first token ${first(runs.free).toFixed(1)} ms (median)`,
);
console.log(
  `paid provider: ${tps(runs.paid).toFixed(0)} tokens/s, first token ${first(runs.paid).toFixed(1)} ms (median); ` +
    `${last.payments} channel payments for ${last.tokens} tokens, ${last.paidMsat} msat`,
);
console.log(`paid / free tokens/s: ${(tps(runs.paid) / tps(runs.free)).toFixed(3)}`);

for (const h of [client, paid, free]) await h.stop();
await engine.dispose();
rmSync(dir, { recursive: true, force: true });
