import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Transaction } from "bitcoinjs-lib";
import { encode as cborEncode } from "cborg";
import { msat } from "../../../payments/amount.ts";
import { type ChannelParams, type ChannelUpdate, PayerChannel } from "../../../payments/channel/channel.ts";
import { ecpair, KeyRing } from "../../../payments/channel/keys.ts";
import { p2wpkhOutput } from "../../../payments/channel/script.ts";
import { signInput } from "../../../payments/channel/transactions.ts";
import { Store } from "../../../store/db.ts";
import { encode, readMessage, WIRE_VERSION, wireStream, writeFrames } from "../../wire.ts";
import { connect, type TestHost, testHost } from "../infer/test-hosts.ts";
import { CHANNEL_PROTOCOL, type ChannelService, channelProtocol } from "./index.ts";
import { AckMessageSchema, MAX_FRAME_BYTES } from "./messages.ts";

// A payee behind a real libp2p host, fed crafted frames over real streams by the channel's own payer
// (whose key signs them) and by a stranger. Every bad frame gets an error frame with its code.
const dir = mkdtempSync(join(tmpdir(), "infernet-channel-bad-"));
let payeeStore: Store;
let payerStore: Store;
let payee: TestHost;
let payer: TestHost;
let stranger: TestHost;
let params: ChannelParams;
let signer: PayerChannel;

beforeAll(async () => {
  payeeStore = Store.openFile(join(dir, "payee.db"));
  payerStore = Store.openFile(join(dir, "payer.db"));
  const payerKeys = new KeyRing();
  payee = await testHost({ channel: channelProtocol({ store: payeeStore, height: () => 100 }) });
  payer = await testHost({
    channel: channelProtocol({ store: payerStore, keys: payerKeys, height: () => 100, payee: false }),
  });
  stranger = await testHost();
  await connect(payer, payee);
  await connect(stranger, payee);
  const wallet = ecpair().makeRandom();
  ({ params } = await (payer.services.channel as ChannelService).openChannel(payee.peerId, {
    capacitySats: 1_000_000n,
    feeSats: 300n,
    refundHeight: 1_000,
    utxos: [{ txid: randomBytes(32).toString("hex"), vout: 0, valueSats: 2_000_000n, signer: wallet }],
    fundingFeeSats: 400n,
    changeOutput: p2wpkhOutput(wallet.publicKey),
  }));
  // The payer's own channel key, to sign crafted updates as the real payer would.
  const key = payerKeys.key(params.payerKey);
  if (!key) throw new Error("the payer key is missing");
  signer = new PayerChannel(params, key);
});

afterAll(async () => {
  await Promise.all([payee, payer, stranger].map((h) => h?.stop()));
  payeeStore?.close();
  payerStore?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends raw frames on a new stream from `from` and returns the payee's first `n` answers (codes or "ack n"). */
async function answers(frames: Uint8Array[], n: number, from: TestHost = payer): Promise<string[]> {
  const stream = await from.dialProtocol(payee.peerId, CHANNEL_PROTOCOL);
  const lp = wireStream(stream, MAX_FRAME_BYTES);
  await writeFrames(lp, frames);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const reply = await readMessage(lp, AckMessageSchema, { signal: AbortSignal.timeout(5_000) });
    out.push(reply.type === "error" ? reply.code : `ack ${reply.sequence}`);
  }
  stream.abort(new Error("done"));
  return out;
}

async function answer(frames: Uint8Array[], from: TestHost = payer): Promise<string> {
  return (await answers(frames, 1, from))[0] as string;
}

function wireUpdate(update: ChannelUpdate, override: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sequence: update.sequence,
    paidMsat: update.paidMsat.toString(),
    amountMsat: update.amountMsat.toString(),
    tx: update.tx,
    signature: update.signature,
    memo: update.memo,
    ...override,
  };
}

/** A `pay` frame of one update (fields of it overridden), or of several. */
function payFrame(
  update: ChannelUpdate,
  override: Record<string, unknown> = {},
  channelId = update.channelId,
): Uint8Array {
  return encode({ v: WIRE_VERSION, type: "pay", channelId, updates: [wireUpdate(update, override)] });
}

function batchFrame(updates: Record<string, unknown>[]): Uint8Array {
  return encode({ v: WIRE_VERSION, type: "pay", channelId: params.id, updates });
}

const stored = () =>
  payeeStore.db.query("SELECT sequence, paid_msat FROM channels").get() as { sequence: number; paid_msat: number };

describe("bad input to a payee", () => {
  test("malformed frames: not CBOR, wrong version, unknown type, oversized", async () => {
    expect(await answer([new Uint8Array([0xff, 0x00, 0x13])])).toBe("malformed");
    expect(await answer([cborEncode({ v: 99, type: "pay" })])).toBe("unsupported-version");
    expect(await answer([encode({ v: WIRE_VERSION, type: "steal" })])).toBe("malformed");
    const update = signer.update(msat(1_000n));
    signer.rollback();
    expect(await answer([payFrame(update, { memo: "x".repeat(MAX_FRAME_BYTES) })])).toBe("malformed");
    expect(await answer([payFrame(update, { tx: new Uint8Array([1, 2, 3]) })])).toBe("malformed");
    expect(await answer([payFrame(update, { signature: new Uint8Array(200) })])).toBe("malformed");
  });

  test("negative and overflowing amounts", async () => {
    const update = signer.update(msat(1_000n));
    signer.rollback();
    expect(await answer([payFrame(update, { paidMsat: "-5" })])).toBe("malformed");
    expect(await answer([payFrame(update, { paidMsat: "99999999999999999999" })])).toBe("malformed");
    expect(await answer([payFrame(update, { paidMsat: 2 ** 60 })])).toBe("malformed");
    // 19 digits: parses, but is more than 21 million bitcoin.
    expect(await answer([payFrame(update, { paidMsat: "9999999999999999999" })])).toBe("amount");
    // More than the channel holds.
    expect(await answer([payFrame(update, { paidMsat: "999999000000", amountMsat: "999999000000" })])).toBe("amount");
    expect(stored().sequence).toBe(0);
  });

  test("unknown channel ids, and a channel paid by a peer that is not its payer", async () => {
    const update = signer.update(msat(1_000n));
    signer.rollback();
    expect(await answer([payFrame(update, {}, `${"ab".repeat(32)}:0`)])).toBe("unknown-channel");
    expect(await answer([encode({ v: WIRE_VERSION, type: "query", channelId: `${"ab".repeat(32)}:0` })])).toBe(
      "unknown-channel",
    );
    expect(await answer([payFrame(update)], stranger)).toBe("unknown-channel");
    expect(await answer([encode({ v: WIRE_VERSION, type: "query", channelId: params.id })], stranger)).toBe(
      "unknown-channel",
    );
  });

  test("tampered amounts, a wrong key, a replay and a gap", async () => {
    const update = signer.update(msat(5_000n));
    expect(await answer([payFrame(update, { paidMsat: "6000", amountMsat: "6000" })])).toBe("malformed");
    expect(await answer([payFrame(update, { amountMsat: "4000" })])).toBe("amount");
    const wrong = new PayerChannel(params, { publicKey: params.payerKey, sign: (h) => ecpair().makeRandom().sign(h) });
    expect(await answer([payFrame(wrong.update(msat(5_000n)))])).toBe("signature");
    expect(stored().sequence).toBe(0);
    expect(await answer([payFrame(update)])).toBe("ack 1");
    expect(await answer([payFrame(update)])).toBe("replayed");
    signer.acknowledged(1);
    const skipped = signer.update(msat(1_000n));
    const third = signer.update(msat(1_000n));
    expect(await answer([payFrame(third)])).toBe("sequence");
    // Pipelined on one stream: both acknowledged, in order.
    expect(await answers([payFrame(skipped), payFrame(third)], 2)).toEqual(["ack 2", "ack 3"]);
    expect(stored()).toEqual({ sequence: 3, paid_msat: 7_000 });
  });

  test("a frame of several updates: acknowledged up to the last valid one, the next refused with its reason", async () => {
    signer.acknowledged(3);
    const [a, b, c] = [signer.update(msat(1_000n)), signer.update(msat(1_000n)), signer.update(msat(1_000n))];
    // c's amount tampered: a and b count (one ack for both), c is refused, nothing after it is read.
    expect(await answers([batchFrame([wireUpdate(a), wireUpdate(b), wireUpdate(c, { amountMsat: "5" })])], 2)).toEqual([
      "ack 5",
      "amount",
    ]);
    expect(stored()).toEqual({ sequence: 5, paid_msat: 9_000 });
    signer.acknowledged(5);
    signer.rollback();
    // Only the newest signature is checked when it holds; when it does not, each is, and the run ends
    // before the first bad one.
    const [d, e] = [signer.update(msat(1_000n)), signer.update(msat(1_000n))];
    const forged = { signature: wrongSignature(e) };
    expect(await answers([batchFrame([wireUpdate(d), wireUpdate(e, forged)])], 2)).toEqual(["ack 6", "signature"]);
    expect(await answer([batchFrame([wireUpdate(d)])])).toBe("replayed");
    expect(await answer([batchFrame([])])).toBe("malformed");
    expect(stored()).toEqual({ sequence: 6, paid_msat: 10_000 });
  });
});

/** A well-formed signature on `update`'s exact commitment, by a key that is not the payer's. */
function wrongSignature(update: ChannelUpdate): Uint8Array {
  return signInput(Transaction.fromBuffer(update.tx), params, ecpair().makeRandom());
}
