import { expect, test } from "bun:test";
import { FakeLnd } from "../../test/helpers/fake-lnd.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import { msat } from "../payments/amount.ts";
import { account } from "../payments/ledger.ts";
import { SqliteEscrowStore } from "../payments/lightning/escrow-store.ts";
import { LightningRail } from "../payments/lightning/lightning-rail.ts";
import { LndRest } from "../payments/lightning/lnd-rest.ts";
import { Store } from "../store/db.ts";
import { AggregatorPayments } from "./aggregator/payments.ts";
import { AggregatorStore } from "./aggregator/store.ts";
import type { NodeChannels } from "./payments.ts";
import { Payouts } from "./payouts.ts";
import type { ChannelService } from "./protocols/channel/index.ts";

// Payouts by keysend: the aggregator's and the provider's Lightning nodes are FAKES of LND's REST API
// (test/helpers/fake-lnd.ts; no Lightning node runs here) that pay each other; the books are a real
// SQLite ledger. A channel is never touched (its service here would throw if it were).

const EARNED = msat(50_000);

async function setup(acceptKeysend = true) {
  const dir = tempDir();
  const store = Store.open(dir.path);
  const payments = new AggregatorPayments(store, new AggregatorStore(store));
  payments.ledger.post({
    idem: "test-earnings",
    reason: "release",
    moves: [{ from: account("outside", "test"), to: account("earnings", "provider-peer"), amount: EARNED }],
  });
  const aggregatorNode = new FakeLnd();
  const providerNode = new FakeLnd({ registry: aggregatorNode.registry, acceptKeysend });
  const lnd = new LndRest({ url: aggregatorNode.url, macaroonHex: aggregatorNode.macaroonHex, network: "regtest" });
  const untouched = new Proxy({}, { get: () => () => Promise.reject(new Error("no channel was to be used")) });
  const payouts = new Payouts({
    payments,
    channels: untouched as NodeChannels,
    channel: untouched as ChannelService,
    lightning: new LightningRail({ lnd, store: new SqliteEscrowStore(store.db) }),
    nodeKey: (peer) => (peer === "provider-peer" ? providerNode.pubkey : undefined),
  });
  return {
    payments,
    payouts,
    providerNode,
    [Symbol.asyncDispose]: async () => {
      await payouts.stop();
      store.close();
      await aggregatorNode.stop();
      await providerNode.stop();
      dir[Symbol.dispose]();
    },
  };
}

test("a provider that announces a Lightning node is paid its earnings by keysend, once", async () => {
  await using t = await setup();
  const before = t.providerNode.balanceMsat;
  await t.payouts.round();
  expect(t.providerNode.balanceMsat).toBe(before + EARNED);
  expect(t.payments.escrow.earnings("provider-peer")).toBe(msat(0));
  expect(t.payments.ledger.balanceOf(account("outside", "lightning"))).toBe(BigInt(EARNED));
  await t.payouts.round();
  expect(t.providerNode.balanceMsat).toBe(before + EARNED);
  t.payments.check();
});

test("a keysend the provider's node refuses is booked back and tried again later", async () => {
  await using t = await setup(false);
  const before = t.providerNode.balanceMsat;
  await t.payouts.round();
  expect(t.providerNode.balanceMsat).toBe(before);
  expect(t.payments.escrow.earnings("provider-peer")).toBe(EARNED);
  t.providerNode.acceptKeysend = true;
  await t.payouts.round();
  expect(t.providerNode.balanceMsat).toBe(before + EARNED);
  expect(t.payments.escrow.earnings("provider-peer")).toBe(msat(0));
  t.payments.check();
});
