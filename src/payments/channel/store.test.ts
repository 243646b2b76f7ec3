import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../store/db.ts";
import { MAX_MSAT, msat } from "../amount.ts";
import { PayeeChannel, PayerChannel } from "./channel.ts";
import { ChannelStore } from "./store.ts";
import { TEST_HEIGHT, testChannel } from "./test-channel.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openStore(): { path: string; store: Store } {
  const dir = mkdtempSync(join(tmpdir(), "infernet-channels-"));
  dirs.push(dir);
  const path = join(dir, "infernet.db");
  return { path, store: Store.openFile(path) };
}

describe("channel store", () => {
  test("a payee's accepted state survives reopening the file, amounts as exact bigints", () => {
    const { path, store } = openStore();
    const { params, payer, payee, funding } = testChannel();
    const channels = new ChannelStore(store);
    channels.insert({ params, role: "payee", peer: "12D3KooWpeer", fundingTx: funding.tx.toBuffer() });
    const payerCh = new PayerChannel(params, payer);
    const payeeCh = new PayeeChannel(params, payee);
    const { state } = payeeCh.check(payerCh.update(msat(123_456_789n)), { height: TEST_HEIGHT });
    channels.saveState(params.id, 0, state);
    store.close();

    using again = Store.openFile(path);
    const record = new ChannelStore(again).get(params.id);
    expect(record?.state.sequence).toBe(1);
    expect(record?.state.paidMsat).toBe(msat(123_456_789n));
    expect(typeof record?.state.paidMsat).toBe("bigint");
    expect(record?.params.capacitySats).toBe(params.capacitySats);
    expect(Buffer.from(record?.state.signature ?? []).equals(Buffer.from(state.signature))).toBe(true);
    expect(record?.params.payerKey).toEqual(params.payerKey);
    expect(record?.fundingTx).toEqual(new Uint8Array(funding.tx.toBuffer()));
    // The payee resumes from the stored state and closes with it.
    const resumed = new PayeeChannel(record!.params, payee, record!.state);
    expect(resumed.closeUnilaterally().outs[0]?.value).toBe(123_456n);
    // Only public keys are stored: no column holds the payee's private key.
    const row = again.db.query("SELECT * FROM channels").get() as Record<string, unknown>;
    const secret = Buffer.from(payee.privateKey!).toString("hex");
    for (const v of Object.values(row)) {
      if (v instanceof Uint8Array) expect(Buffer.from(v).toString("hex")).not.toContain(secret);
    }
  });

  test("a write that does not follow the stored state is refused and changes nothing", () => {
    const { store } = openStore();
    using _ = store;
    const { params, payer, payee } = testChannel();
    const channels = new ChannelStore(store);
    channels.insert({ params, role: "payee", peer: "p" });
    const payerCh = new PayerChannel(params, payer);
    const payeeCh = new PayeeChannel(params, payee);
    const { state } = payeeCh.check(payerCh.update(msat(1_000n)), { height: TEST_HEIGHT });
    channels.saveState(params.id, 0, state);
    expect(() => channels.saveState(params.id, 0, state)).toThrow(/does not follow the stored state 0/);
    expect(() => channels.saveState("ff:0", 0, state)).toThrow(
      expect.objectContaining({ name: "UnknownChannelError" }),
    );
    channels.setStatus(params.id, "closing");
    payeeCh.apply(state);
    const next = payeeCh.check(payerCh.update(msat(1_000n)), { height: TEST_HEIGHT }).state;
    expect(() => channels.saveState(params.id, 1, next)).toThrow(/closing/);
    expect(channels.get(params.id)?.state.sequence).toBe(1);
  });

  test("the payer's pending update is kept until the acknowledged state replaces it", () => {
    const { store } = openStore();
    using _ = store;
    const { params, payer } = testChannel();
    const channels = new ChannelStore(store);
    channels.insert({ params, role: "payer", peer: "p" });
    const payerCh = new PayerChannel(params, payer);
    payerCh.update(msat(1_000n));
    const second = payerCh.update(msat(2_000n));
    channels.savePending(params.id, payerCh.latest);
    expect(channels.get(params.id)?.pending?.sequence).toBe(second.sequence);
    channels.saveState(params.id, 0, payerCh.acknowledged(1));
    expect(channels.get(params.id)?.pending?.paidMsat).toBe(msat(3_000n));
    channels.saveState(params.id, 1, payerCh.acknowledged(2));
    expect(channels.get(params.id)?.pending).toBeUndefined();
    expect(channels.list({ role: "payer" }).map((c) => c.params.id)).toEqual([params.id]);
    expect(channels.list({ role: "payee" })).toEqual([]);
  });

  test("the largest amount fits SQLite's INTEGER and reads back exactly; a corrupt negative one is refused", () => {
    const { store } = openStore();
    using _ = store;
    const { params } = testChannel();
    const channels = new ChannelStore(store);
    channels.insert({ params, role: "payee", peer: "p" });
    store.db.query("UPDATE channels SET paid_msat = ?1").run(MAX_MSAT);
    expect(channels.get(params.id)?.state.paidMsat).toBe(msat(MAX_MSAT));
    expect(() => store.db.query("UPDATE channels SET paid_msat = -1").run()).toThrow(/CHECK/);
  });
});
