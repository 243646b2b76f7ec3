import { describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { address as btcAddress, Transaction } from "bitcoinjs-lib";
import { EXIT, exitCodeFor } from "../src/cli/exit.ts";
import { msat } from "../src/payments/amount.ts";
import { ChainError } from "../src/payments/chain/chain.ts";
import { bitcoinNetwork } from "../src/payments/chain/network.ts";
import {
  ChannelClosedError,
  ChannelTimeoutError,
  RemoteChannelError,
  UnknownChannelError,
} from "../src/payments/channel/errors.ts";
import { ChannelStore } from "../src/payments/channel/store.ts";
import { testChannel } from "../src/payments/channel/test-channel.ts";
import { account, InsufficientFundsError, Ledger, LedgerInvariantError } from "../src/payments/ledger.ts";
import { InvoiceError } from "../src/payments/lightning/invoice.ts";
import { EscrowError } from "../src/payments/lightning/lightning-rail.ts";
import { LndError, PaymentFailedError } from "../src/payments/lightning/lnd-errors.ts";
import { InsufficientCoinsError } from "../src/payments/wallet/coin-select.ts";
import { WalletKeyError } from "../src/payments/wallet/key.ts";
import { ReputationStore } from "../src/reputation/store.ts";
import { Store } from "../src/store/db.ts";
import { type CliResult, infernet } from "./helpers/cli.ts";
import { FakeLedger, fakeEsplora } from "./helpers/fake-esplora.ts";
import { tempDir } from "./helpers/paths.ts";

// The chain is test/helpers/fake-esplora.ts: a FAKE Esplora (none can run here) speaking its REST
// wire format over an in-memory chain that checks every broadcast transaction's signatures and sums.

/** A local port nothing listens on: the chain "cannot be reached" at once. */
const CLOSED_URL = "http://127.0.0.1:9";
const PEER = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
/** A valid mainnet P2WPKH address (BIP173's example). */
const MAINNET_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

/** One clear line on stderr (the hint rides on it) and the exit code. */
function refusal(r: CliResult): { code: number; line: string } {
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(r.stdout).toBe("");
  return { code: r.code, line: lines[0] as string };
}

/** A home whose database holds a channel, ledger postings and a penalty, as a running node would write them. */
function writeBooks(home: string) {
  using store = Store.open(home);
  const ledger = new Ledger(store);
  const outside = account("outside", "channel");
  const client = account("client", PEER);
  const escrow = account("escrow", "job-1");
  ledger.post({ idem: "d1", reason: "deposit", moves: [{ from: outside, to: client, amount: msat(5_000_500n) }] });
  ledger.post({
    idem: "l1",
    reason: "lock",
    jobId: "job-1",
    moves: [{ from: client, to: escrow, amount: msat(1_000_000n) }],
  });
  ledger.post({
    idem: "r1",
    reason: "release",
    jobId: "job-1",
    moves: [
      { from: escrow, to: account("earnings", "provider-b"), amount: msat(600_000n) },
      { from: escrow, to: account("fees"), amount: msat(50_123n) },
    ],
  });
  ledger.post({
    idem: "b1",
    reason: "bond",
    moves: [{ from: outside, to: account("bond", "provider-b"), amount: msat(2_000_000n) }],
  });
  const { params } = testChannel();
  const channels = new ChannelStore(store);
  channels.insert({ params, role: "payer", peer: PEER });
  channels.saveState(params.id, 0, {
    sequence: 1,
    paidMsat: msat(1_234_567n),
    tx: Uint8Array.of(1),
    signature: Uint8Array.of(2),
  });
  new ReputationStore(store).penalize("provider-b", "job-1", "fault", 1_500);
  return params;
}

describe("infernet wallet", () => {
  test("address creates wallet.key 0600 once and prints an address of the configured network", async () => {
    using home = tempDir();
    await using esplora = fakeEsplora();
    const at = { home: home.path, env: { INFERNET_CHAIN_URL: esplora.url } };
    const first = await infernet(["wallet", "address"], at);
    expect(first.code).toBe(0);
    const address = first.stdout.trim();
    expect(address).toMatch(/^bcrt1q[0-9a-z]{38}$/);
    const keyFile = join(home.path, "wallet.key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(first.stderr).toContain(`created the wallet key ${keyFile}`);
    expect(first.stderr).toContain("separate from the node's identity");

    // Once paid, the next address is a fresh one of the same key.
    esplora.ledger.fund(address, 10_000n);
    const second = JSON.parse((await infernet(["wallet", "address", "--json"], at)).stdout);
    expect(second).toMatchObject({ network: "regtest", walletKey: keyFile, created: false });
    expect(second.address).not.toBe(address);
    expect(second.address).toStartWith("bcrt1q");

    using signetHome = tempDir();
    using downHome = tempDir();
    await using signetChain = fakeEsplora(new FakeLedger("signet"));
    const [signet, down] = await Promise.all([
      infernet(["wallet", "address"], {
        home: signetHome.path,
        env: { INFERNET_CHAIN_URL: signetChain.url, INFERNET_CHAIN_NETWORK: "signet" },
      }),
      infernet(["wallet", "address"], { home: downHome.path, env: { INFERNET_CHAIN_URL: CLOSED_URL } }),
    ]);
    expect([signet.code, signet.stdout]).toEqual([0, expect.stringMatching(/^tb1q[0-9a-z]{38}\n$/)]);
    expect(signet.stderr).toContain("(mode 0600, signet)");
    // The chain is down, so no address can be picked; the key was made and said so first.
    expect(down.code).toBe(EXIT.paymentService);
    expect(down.stderr).toContain("created the wallet key");
    expect(down.stderr).toContain("cannot be reached");
    expect(statSync(join(downHome.path, "wallet.key")).mode & 0o777).toBe(0o600);
  });

  test("shows the on-chain balance, the channels and the books; --json is exact; a chain that is down is one line", async () => {
    using home = tempDir();
    await using esplora = fakeEsplora();
    const at = { home: home.path, env: { INFERNET_CHAIN_URL: esplora.url } };
    const address = (await infernet(["wallet", "address"], at)).stdout.trim();
    esplora.ledger.fund(address, 150_000n);
    esplora.ledger.fund(address, 2_500n, false);
    const params = writeBooks(home.path);

    const [text, json, down] = await Promise.all([
      infernet(["wallet"], at),
      infernet(["wallet", "--json"], at),
      infernet(["wallet"], { home: home.path, env: { INFERNET_CHAIN_URL: CLOSED_URL } }),
    ]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("150,000 sat confirmed, 2,500 sat unconfirmed");
    expect(text.stdout).toMatch(
      new RegExp(
        `${params.fundingTxid.slice(0, 16)}…:${params.fundingVout}\\s+payer\\s+\\.\\.\\.${PEER.slice(-12)}\\s+500,000 sat\\s+1,234.567 sat\\s+open\\s+1000`,
      ),
    );
    expect(text.stdout).toMatch(/client\s+clients' credit\s+1\s+4,000.5 sat/);
    expect(text.stdout).toMatch(/escrow\s+escrowed for jobs\s+1\s+349.877 sat/);
    expect(text.stdout).toMatch(/fees\s+fees earned\s+1\s+50.123 sat/);
    expect(text.stdout).toMatch(/outside\s+.*\s+1\s+-7,000.5 sat/);
    expect(text.stdout).toContain("Penalties: 1 recorded, 1.5 sat in all, 0 applied");

    const view = JSON.parse(json.stdout);
    expect(view.onChain).toEqual({ state: "ok", confirmedMsat: "150000000", unconfirmedMsat: "2500000" });
    expect(view.channels).toEqual([
      {
        id: params.id,
        role: "payer",
        peer: PEER,
        network: "regtest",
        status: "open",
        capacityMsat: "500000000",
        paidMsat: "1234567",
        sequence: 1,
        refundHeight: 1000,
      },
    ]);
    const totals = Object.fromEntries(
      view.ledger.kinds.map((k: { kind: string; totalMsat: string }) => [k.kind, k.totalMsat]),
    );
    expect(totals).toMatchObject({
      client: "4000500",
      escrow: "349877",
      earnings: "600000",
      bond: "2000000",
      fees: "50123",
      forfeits: "0",
      outside: "-7000500",
    });
    expect(view.ledger.accounts).toContainEqual({ kind: "earnings", owner: "provider-b", balanceMsat: "600000" });
    expect(view.penalties).toEqual({ count: 1, amountMsat: "1500", applied: 0 });

    expect(down.code).toBe(0);
    const chainLine = down.stdout.split("\n")[0] as string;
    expect(chainLine).toMatch(
      /^On-chain \(regtest, key .*\): cannot tell: Esplora at http:\/\/127.0.0.1:9 cannot be reached/,
    );
    expect(down.stdout).toContain("1,234.567 sat");
    expect(down.stdout).toContain("4,000.5 sat");
  });

  test("withdraw broadcasts a signed send the chain accepts, and refuses what it must with one line each", async () => {
    using home = tempDir();
    await using esplora = fakeEsplora();
    const at = { home: home.path, env: { INFERNET_CHAIN_URL: esplora.url } };
    const address = (await infernet(["wallet", "address"], at)).stdout.trim();
    esplora.ledger.fund(address, 100_000n);
    const payee = btcAddress.fromOutputScript(
      Uint8Array.from([0x00, 0x14, ...new Uint8Array(20).fill(7)]),
      bitcoinNetwork("regtest"),
    );

    const refusals = await Promise.all(
      [
        [payee, "25000"], // no fee estimate on regtest, none given
        [MAINNET_ADDRESS, "25000", "--fee-rate", "2"],
        ["not-an-address", "25000", "--fee-rate", "2"],
        [payee, "0", "--fee-rate", "2"],
        [payee, "--fee-rate", "2", "--", "-5"],
        [payee, "2100000000000001", "--fee-rate", "2"],
        [payee, "lots", "--fee-rate", "2"],
        [payee, "100000", "--fee-rate", "2"],
        [payee, "25000", "--fee-rate", "0.5"],
      ].map((args) => infernet(["wallet", "withdraw", ...args], at)),
    );
    const seen = refusals.map(refusal);
    expect(seen[0]?.code).toBe(EXIT.paymentService);
    expect(seen[0]?.line).toMatch(/no fee estimate.*--fee-rate, or INFERNET_WALLET_FEE_RATE/);
    expect(seen[1]).toEqual({
      code: EXIT.invalidInput,
      line: `infernet: ${MAINNET_ADDRESS} is a mainnet address, and this wallet is on regtest (send to an address of the same network, or set INFERNET_CHAIN_NETWORK)`,
    });
    expect(seen[2]).toMatchObject({
      code: EXIT.invalidInput,
      line: expect.stringContaining("is not a Bitcoin address"),
    });
    expect(seen[3]).toMatchObject({
      code: EXIT.invalidInput,
      line: expect.stringContaining("0 sats is not more than zero"),
    });
    expect(seen[4]).toMatchObject({
      code: EXIT.invalidInput,
      line: expect.stringContaining("-5 sats is not more than zero"),
    });
    expect(seen[5]).toMatchObject({
      code: EXIT.invalidInput,
      line: expect.stringContaining("more than 21 million bitcoin"),
    });
    expect(seen[6]).toMatchObject({
      code: EXIT.usage,
      line: expect.stringContaining('"lots" is not a whole number of sats'),
    });
    expect(seen[7]).toMatchObject({
      code: EXIT.payment,
      line: expect.stringContaining("the wallet holds 100000 spendable sats"),
    });
    expect(seen[8]).toMatchObject({
      code: EXIT.usage,
      line: expect.stringContaining("--fee-rate must be a number from 1 to 1000"),
    });
    expect(esplora.ledger.broadcasts).toEqual([]);

    const sent = await infernet(["wallet", "withdraw", payee, "25000", "--fee-rate", "2"], at);
    expect(sent.code).toBe(0);
    const txid = sent.stdout.trim();
    expect(txid).toMatch(/^[0-9a-f]{64}$/);
    expect(sent.stderr).toMatch(/^sent 25,000 sat to bcrt1q\S+, fee \d+ sat \(\d+ vB\), change \d[\d,]* sat to bcrt1q/);
    expect(esplora.ledger.broadcasts).toHaveLength(1);
    const tx = Transaction.fromHex(esplora.ledger.broadcasts[0] as string);
    expect(tx.getId()).toBe(txid);
    expect(tx.outs[0]?.value).toBe(25_000n);
    const totalOut = tx.outs.reduce((s, o) => s + o.value, 0n);
    // 2 sat/vB, paid from the one 100,000 sat coin.
    expect(100_000n - totalOut).toBe(BigInt(tx.virtualSize()) * 2n);

    // The change is the wallet's own, in the mempool: unconfirmed until a block.
    const after = JSON.parse((await infernet(["wallet", "--json"], at)).stdout);
    expect(after.onChain).toEqual({
      state: "ok",
      confirmedMsat: "0",
      unconfirmedMsat: `${(totalOut - 25_000n) * 1000n}`,
    });
  });
});

test("payment failures map to their exit codes", () => {
  const remote = { reason: "unreachable" } as const;
  expect(exitCodeFor(new ChainError("down", remote))).toBe(EXIT.paymentService);
  expect(exitCodeFor(new LndError("down", remote))).toBe(EXIT.paymentService);
  expect(exitCodeFor(new WalletKeyError("mode 644"))).toBe(EXIT.config);
  expect(exitCodeFor(new InsufficientCoinsError("short"))).toBe(EXIT.payment);
  expect(exitCodeFor(new InsufficientFundsError("short", "client:x", 2n, 1n))).toBe(EXIT.payment);
  expect(exitCodeFor(new PaymentFailedError("no route", "FAILURE_REASON_NO_ROUTE", "00"))).toBe(EXIT.payment);
  expect(exitCodeFor(new EscrowError("settled"))).toBe(EXIT.payment);
  expect(exitCodeFor(new InvoiceError("expired", "expired"))).toBe(EXIT.invalidInput);
  expect(exitCodeFor(new LedgerInvariantError("books"))).toBe(EXIT.internal);
  expect(exitCodeFor(new ChannelClosedError("closed"))).toBe(EXIT.payment);
  expect(exitCodeFor(new RemoteChannelError("refused", PEER, "no"))).toBe(EXIT.payment);
  expect(exitCodeFor(new UnknownChannelError("which?"))).toBe(EXIT.notFound);
  expect(exitCodeFor(new ChannelTimeoutError("silent"))).toBe(EXIT.timeout);
  expect(exitCodeFor(new Error("bug"))).toBe(EXIT.internal);
});
