import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { type Msat, msat } from "../../../payments/amount.ts";
import { ecpair, KeyRing } from "../../../payments/channel/keys.ts";
import { p2wpkhOutput } from "../../../payments/channel/script.ts";
import { Store } from "../../../store/db.ts";
import { createHost } from "../../host.ts";
import { connect, type TestHost } from "../infer/test-hosts.ts";
import { type ChannelInit, type ChannelService, channelProtocol, type ReceivedPayment } from "./index.ts";

// Two real libp2p hosts over QUIC on 127.0.0.1, real SQLite files, real signatures.
const HEIGHT = 100;
const REFUND_HEIGHT = 1_000;
const CAPACITY = 1_000_000n;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "infernet-channel-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "infernet.db");
}

interface Node {
  host: TestHost;
  channels: ChannelService;
  store: Store;
  keys: KeyRing;
}

/** A host with the channel service on its own database; `key`/`path`/`keys` to bring one back after a restart. */
async function node(
  options: { key?: PrivateKey; path?: string; keys?: KeyRing; init?: Partial<ChannelInit> } = {},
): Promise<Node> {
  const store = Store.openFile(options.path ?? dbPath());
  const keys = options.keys ?? new KeyRing();
  const host = await createHost({
    privateKey: options.key ?? (await generateKeyPair("Ed25519")),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services: { channel: channelProtocol({ store, keys, height: () => HEIGHT, ...options.init }) },
  });
  const n = Object.assign(host, { [Symbol.asyncDispose]: async () => await host.stop() });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await host.stop();
    store.close();
  };
  cleanup.push(stop);
  return { host: n, channels: host.services.channel as ChannelService, store, keys };
}

function fundingFrom(wallet = ecpair().makeRandom()) {
  return {
    capacitySats: CAPACITY,
    feeSats: 300n,
    refundHeight: REFUND_HEIGHT,
    utxos: [{ txid: randomBytes(32).toString("hex"), vout: 0, valueSats: 2_000_000n, signer: wallet }],
    fundingFeeSats: 400n,
    changeOutput: p2wpkhOutput(wallet.publicKey),
  };
}

async function opened(payeeInit: Partial<ChannelInit> = {}) {
  const payer = await node();
  const payee = await node({ init: payeeInit });
  await connect(payer.host, payee.host);
  const { params, fundingTx } = await payer.channels.openChannel(payee.host.peerId, fundingFrom());
  return { payer, payee, id: params.id, params, fundingTx };
}

async function failure(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("expected a failure");
}

const stored = (n: Node, id: string) => n.channels.channels().find((c) => c.params.id === id);

describe("channel protocol", () => {
  test("open, pay one after another and pipelined: every payment stored by both before it resolves", async () => {
    const received: ReceivedPayment[] = [];
    const { payer, payee, id, fundingTx, params } = await opened({ onPayment: (p) => received.push(p) });
    expect(fundingTx.getId()).toBe(params.fundingTxid);
    expect(stored(payee, id)?.role).toBe("payee");
    const first = await payer.channels.pay(id, msat(1_500n), "job-1");
    expect(first.sequence).toBe(1);
    expect(stored(payee, id)?.state.paidMsat).toBe(msat(1_500n));
    expect(stored(payer, id)?.state.paidMsat).toBe(msat(1_500n));
    const many = await Promise.all(
      Array.from({ length: 100 }, (_, i) => payer.channels.pay(id, msat(1_000n), `job-${i + 2}`)),
    );
    expect(many.map((s) => s.sequence)).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
    expect(stored(payee, id)?.state).toMatchObject({ sequence: 101, paidMsat: msat(101_500n) });
    expect(stored(payer, id)?.state).toMatchObject({ sequence: 101, paidMsat: msat(101_500n) });
    expect(stored(payer, id)?.pending).toBeUndefined();
    expect(received.map((p) => p.memo).slice(0, 3)).toEqual(["job-1", "job-2", "job-3"]);
    expect(received.at(-1)).toMatchObject({ sequence: 101, amountMsat: msat(1_000n), paidMsat: msat(101_500n) });
    // The payee can close alone with the latest state at any time.
    const close = payee.channels.closeUnilaterally(id);
    expect(stored(payee, id)?.status).toBe("closing");
    expect(close.byteLength).toBeGreaterThan(200);
  });

  test("a payment the payee does not expect is refused with its reason; the channel goes on", async () => {
    const due: Record<string, Msat> = { "job-a": msat(5_000n) };
    const { payer, payee, id } = await opened({
      expected: ({ memo }) => due[memo],
      onPayment: ({ memo }) => {
        if (memo === "ledger-fails") throw new Error("the ledger is full");
      },
    });
    // A listener that fails rolls the stored state back with it: refused, not counted.
    const rolledBack = await failure(payer.channels.pay(id, msat(1_000n), "ledger-fails"));
    expect(rolledBack).toMatchObject({ name: "RemoteChannelError", code: "internal" });
    expect(stored(payee, id)?.state.sequence).toBe(0);
    const refused = await failure(payer.channels.pay(id, msat(4_000n), "job-a"));
    expect(refused.name).toBe("RemoteChannelError");
    expect(refused.code).toBe("amount");
    expect(refused.message).toMatch(/5000 was due/);
    expect((await payer.channels.pay(id, msat(5_000n), "job-a")).sequence).toBe(1);
    expect(stored(payee, id)?.state.paidMsat).toBe(msat(5_000n));
  });

  test("a payee that stops answering mid-update: the payer times out, both keep the last signed state, then continue", async () => {
    let release: () => void = () => {};
    const hold = new Promise<void>((resolve) => (release = resolve));
    const { payer, payee, id } = await opened({
      expected: async ({ memo }) => {
        if (memo === "hang") await hold;
        return undefined;
      },
    });
    await payer.channels.pay(id, msat(10_000n), "ok");
    const started = performance.now();
    const timedOut = await failure(payer.channels.pay(id, msat(7_000n), "hang", { deadlineMs: 300 }));
    expect(timedOut.name).toBe("ChannelTimeoutError");
    expect(performance.now() - started).toBeLessThan(2_000);
    // Both hold state 1; the payer keeps the update it sent as pending (the payee may yet count it).
    expect(stored(payee, id)?.state.sequence).toBe(1);
    expect(stored(payer, id)?.state).toMatchObject({ sequence: 1, paidMsat: msat(10_000n) });
    expect(stored(payer, id)?.pending).toMatchObject({ sequence: 2, paidMsat: msat(17_000n) });
    // The payee wakes and counts the update it had (it holds the payer's signature on it).
    release();
    await eventually(() => stored(payee, id)?.state.sequence === 2);
    // The next payment first learns the payee's state, then continues from it.
    const next = await payer.channels.pay(id, msat(1_000n), "after");
    expect(next).toMatchObject({ sequence: 3, paidMsat: msat(18_000n) });
    expect(stored(payee, id)?.state).toMatchObject({ sequence: 3, paidMsat: msat(18_000n) });
  });

  test("restarts: both sides resume from SQLite, the payer from the payee's acknowledged state", async () => {
    const payeeKey = await generateKeyPair("Ed25519");
    const payerKey = await generateKeyPair("Ed25519");
    const [payeePath, payerPath] = [dbPath(), dbPath()];
    const [payeeKeys, payerKeys] = [new KeyRing(), new KeyRing()];
    // The first payee never answers an update with memo "hang".
    const hang = {
      expected: ({ memo }: { memo: string }) => (memo === "hang" ? new Promise<never>(() => {}) : undefined),
    };
    let payee = await node({ key: payeeKey, path: payeePath, keys: payeeKeys, init: hang });
    let payer = await node({ key: payerKey, path: payerPath, keys: payerKeys });
    await connect(payer.host, payee.host);
    const { params } = await payer.channels.openChannel(payee.host.peerId, fundingFrom());
    await payer.channels.pay(params.id, msat(2_000n), "before");
    const lost = await failure(payer.channels.pay(params.id, msat(1_000n), "hang", { deadlineMs: 300 }));
    expect(lost.name).toBe("ChannelTimeoutError");
    // Both stop; they come back with their identities and files (nothing in memory).
    for (const n of [payer, payee]) {
      await n.host.stop();
      n.store.close();
    }
    payee = await node({ key: payeeKey, path: payeePath, keys: payeeKeys });
    payer = await node({ key: payerKey, path: payerPath, keys: payerKeys });
    expect(stored(payer, params.id)?.pending).toMatchObject({ sequence: 2, paidMsat: msat(3_000n) });
    expect(stored(payee, params.id)?.state).toMatchObject({ sequence: 1, paidMsat: msat(2_000n) });
    await connect(payer.host, payee.host);
    // The payer first learns the payee never counted update 2, then pays from state 1.
    const next = await payer.channels.pay(params.id, msat(3_000n), "after");
    expect(next).toMatchObject({ sequence: 2, paidMsat: msat(5_000n) });
    expect(stored(payee, params.id)?.state).toMatchObject({ sequence: 2, paidMsat: msat(5_000n) });
    expect(stored(payer, params.id)?.pending).toBeUndefined();
    // A payee that is gone: the payment fails at once, nothing is signed.
    await payee.host.stop();
    const gone = await failure(payer.channels.pay(params.id, msat(1_000n), "gone", { deadlineMs: 500 }));
    expect(["RemoteChannelError", "ChannelTimeoutError"]).toContain(gone.name);
    expect(stored(payer, params.id)?.pending).toBeUndefined();
  });

  test("a cooperative close: the payee signs the latest state, then the channel takes no payment", async () => {
    const { payer, payee, id, params } = await opened();
    await payer.channels.pay(id, msat(300_000n), "work");
    const tx = await payer.channels.closeChannel(id, 200n);
    expect(tx.outs.map((o) => o.value)).toEqual([300n, CAPACITY - 300n - 200n]);
    expect(tx.ins[0]?.witness.length).toBe(5);
    expect(stored(payee, id)?.status).toBe("closing");
    expect(Buffer.from(stored(payee, id)?.closeTx ?? []).toString("hex")).toBe(tx.toHex());
    expect((await failure(payer.channels.pay(id, msat(1n)))).name).toBe("ChannelClosedError");
    expect(params.refundHeight).toBe(REFUND_HEIGHT);
  });

  test("the payee closes alone: the payer's next payment is refused, then the channel is closed here too", async () => {
    const { payer, payee, id } = await opened();
    await payer.channels.pay(id, msat(50_000n), "work");
    payee.channels.closeUnilaterally(id);
    expect((await failure(payer.channels.pay(id, msat(1_000n), "late"))).code).toBe("closed");
    expect(stored(payer, id)?.status).toBe("closing");
    expect((await failure(payer.channels.pay(id, msat(1_000n), "later"))).name).toBe("ChannelClosedError");
    // The refund is still there for the payer (valid only from the refund height).
    const refund = payer.channels.refund(id, p2wpkhOutput(ecpair().makeRandom().publicKey), 300n);
    expect(refund.locktime).toBe(REFUND_HEIGHT);
    expect(stored(payee, id)?.state.paidMsat).toBe(msat(50_000n));
  });

  test("bad opens are refused: another network, a refund too soon, too large a channel", async () => {
    const payer = await node();
    const payee = await node({ init: { network: "signet", maxCapacitySats: 500_000n } });
    await connect(payer.host, payee.host);
    const network = await failure(payer.channels.openChannel(payee.host.peerId, fundingFrom()));
    expect(network).toMatchObject({ name: "RemoteChannelError", code: "refused" });
    expect(network.message).toMatch(/signet/);
    expect(payer.channels.channels()).toEqual([]);
    const regtest = await node({ init: { maxCapacitySats: 500_000n } });
    await connect(payer.host, regtest.host);
    const big = await failure(payer.channels.openChannel(regtest.host.peerId, fundingFrom()));
    expect(big.message).toMatch(/capacity/);
    const soon = await failure(
      payer.channels.openChannel(regtest.host.peerId, {
        ...fundingFrom(),
        capacitySats: 100_000n,
        refundHeight: HEIGHT + 200,
      }),
    );
    expect(soon.message).toMatch(/refund height/);
  });
});

async function eventually(check: () => boolean, ms = 3_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("the condition did not hold in time");
    await Bun.sleep(10);
  }
}
