/**
 * Payment channels: payments per second between two nodes over libp2p (QUIC on 127.0.0.1), every
 * payment a new commitment signed by the payer and checked and stored (SQLite) by the payee before it
 * is acknowledged; per-payment latency; and, as the baseline in this process, build + sign + verify
 * of one commitment with no network and no storage.
 *
 * The payee runs in a child process by default (two nodes, each its own core, as deployed);
 * `--same-process` runs both hosts here, on one JS thread.
 *
 * Usage: bun bench/channels.ts [payments=5000] [pipeline=32] [--same-process]
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { multiaddr } from "@multiformats/multiaddr";
import { createHost, type Host } from "../src/node/host.ts";
import { type ChannelService, channelProtocol } from "../src/node/protocols/channel/index.ts";
import { msat } from "../src/payments/amount.ts";
import { PayeeChannel, PayerChannel } from "../src/payments/channel/channel.ts";
import { ecpair } from "../src/payments/channel/keys.ts";
import { p2wpkhOutput } from "../src/payments/channel/script.ts";
import { testChannel } from "../src/payments/channel/test-channel.ts";
import { Store } from "../src/store/db.ts";
import { BUN, machine } from "./lib.ts";

const HEIGHT = 100;
const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const samePROCESS = process.argv.includes("--same-process");

if (process.argv[2] === "--payee") await servePayee();
else await measure(Number(args[0] ?? 5_000), Number(args[1] ?? 32));

async function node(dir: string, name: string, payee: boolean): Promise<{ host: Host; store: Store }> {
  const store = Store.openFile(join(dir, `${name}.db`));
  const host = await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services: { channel: channelProtocol({ store, height: () => HEIGHT, payee, maxCapacitySats: 10n ** 9n }) },
  });
  return { host, store };
}

/**
 * Child process: a payee node; prints its QUIC address, then answers each "cpu" line on stdin with its
 * CPU time so far (microseconds, user + system); stops when stdin closes.
 */
async function servePayee(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "infernet-bench-payee-"));
  const { host, store } = await node(dir, "payee", true);
  const addr = host.getMultiaddrs().find((m) => m.toString().includes("/quic-v1"));
  process.stdout.write(`${addr?.toString()}\n`);
  for await (const chunk of Bun.stdin.stream()) {
    for (const _ of new TextDecoder()
      .decode(chunk)
      .split("\n")
      .filter((l) => l === "cpu")) {
      const { user, system } = process.cpuUsage();
      process.stdout.write(`${user + system}\n`);
    }
  }
  await host.stop();
  store.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

function baseline(n: number): { perOpUs: number; signUs: number; verifyUs: number } {
  const { params, payer, payee } = testChannel();
  const payerCh = new PayerChannel(params, payer);
  const payeeCh = new PayeeChannel(params, payee);
  const step = () => {
    const update = payerCh.update(msat(1_000n));
    payeeCh.apply(payeeCh.check(update, { height: HEIGHT }).state);
  };
  for (let i = 0; i < 200; i++) step();
  const start = performance.now();
  for (let i = 0; i < n; i++) step();
  const perOpUs = ((performance.now() - start) / n) * 1_000;
  let t = performance.now();
  for (let i = 0; i < n; i++) payerCh.update(msat(1_000n));
  const signUs = ((performance.now() - t) / n) * 1_000;
  const update = payerCh.update(msat(1_000n));
  const other = new PayeeChannel(params, payee, {
    ...payerCh.acked,
    sequence: update.sequence - 1,
    paidMsat: msat(update.paidMsat - 1_000n),
  });
  t = performance.now();
  for (let i = 0; i < n; i++) other.check(update, { height: HEIGHT });
  const verifyUs = ((performance.now() - t) / n) * 1_000;
  return { perOpUs, signUs, verifyUs };
}

async function measure(payments: number, pipeline: number): Promise<void> {
  console.log(`bench/channels.ts: ${payments} payments, pipeline ${pipeline}, ${machine()}`);
  const base = baseline(2_000);
  console.log(
    `baseline (no network, no SQLite): build+sign+verify ${base.perOpUs.toFixed(0)} us/commitment ` +
      `(${(1e6 / base.perOpUs).toFixed(0)}/s on one core); build+sign ${base.signUs.toFixed(0)} us, ` +
      `payee check (build+verify) ${base.verifyUs.toFixed(0)} us`,
  );

  const dir = mkdtempSync(join(tmpdir(), "infernet-bench-channels-"));
  const payer = await node(dir, "payer", false);
  let payeeAddr: string;
  let child: ReturnType<typeof Bun.spawn> | undefined;
  let local: { host: Host; store: Store } | undefined;
  /** The payee process's CPU time so far (us); the same process's when it runs here. */
  let payeeCpu = async () => 0;
  if (samePROCESS) {
    local = await node(dir, "payee", true);
    payeeAddr =
      local.host
        .getMultiaddrs()
        .find((m) => m.toString().includes("/quic-v1"))
        ?.toString() ?? "";
  } else {
    child = Bun.spawn([BUN, import.meta.path, "--payee"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
    const line = async () => new TextDecoder().decode((await reader.read()).value).trim();
    payeeAddr = await line();
    const stdin = child.stdin as import("bun").FileSink;
    payeeCpu = async () => {
      stdin.write("cpu\n");
      stdin.flush();
      return Number(await line());
    };
  }
  const ma = multiaddr(payeeAddr);
  await payer.host.dial(ma);
  const peer = (await payer.host.peerStore.all()).find((p) => payeeAddr.endsWith(p.id.toString()))?.id;
  if (!peer) throw new Error("the payee is not known after dialling it");
  const channels = payer.host.services.channel as ChannelService;
  const wallet = ecpair().makeRandom();
  const open = async () =>
    (
      await channels.openChannel(peer, {
        capacitySats: 100_000_000n,
        feeSats: 300n,
        refundHeight: 10_000,
        utxos: [{ txid: randomBytes(32).toString("hex"), vout: 0, valueSats: 200_000_000n, signer: wallet }],
        fundingFeeSats: 400n,
        changeOutput: p2wpkhOutput(wallet.publicKey),
      })
    ).params.id;

  // Warm-up on its own channel (JIT, stream set-up).
  const warm = await open();
  for (let i = 0; i < 300; i++) await channels.pay(warm, msat(1_000n), "warm-up");

  const sequentialId = await open();
  const lat: number[] = [];
  let cpu = await cpus(payeeCpu);
  let start = performance.now();
  for (let i = 0; i < payments; i++) {
    const t = performance.now();
    await channels.pay(sequentialId, msat(1_000n), `job-${i}`);
    lat.push(performance.now() - t);
  }
  report("one after another", payments, performance.now() - start, lat);
  reportCpu(payments, cpu, await cpus(payeeCpu));

  const pipelinedId = await open();
  const plat: number[] = [];
  let next = 0;
  cpu = await cpus(payeeCpu);
  start = performance.now();
  await Promise.all(
    Array.from({ length: pipeline }, async () => {
      while (next < payments) {
        next += 1;
        const t = performance.now();
        await channels.pay(pipelinedId, msat(1_000n), `job-${next}`);
        plat.push(performance.now() - t);
      }
    }),
  );
  report(`pipelined (${pipeline} in flight)`, payments, performance.now() - start, plat);
  reportCpu(payments, cpu, await cpus(payeeCpu));
  const state = channels.channels().find((c) => c.params.id === pipelinedId)?.state;
  console.log(`check: pipelined channel at sequence ${state?.sequence}, ${state?.paidMsat} msat paid`);

  await payer.host.stop();
  payer.store.close();
  if (local) {
    await local.host.stop();
    local.store.close();
  }
  if (child) {
    (child.stdin as import("bun").FileSink).end();
    await child.exited;
  }
  rmSync(dir, { recursive: true, force: true });
}

/** CPU time so far (us): this process's, and the payee process's. */
async function cpus(payee: () => Promise<number>): Promise<{ payer: number; payee: number }> {
  const { user, system } = process.cpuUsage();
  return { payer: user + system, payee: await payee() };
}

function reportCpu(n: number, before: { payer: number; payee: number }, after: { payer: number; payee: number }): void {
  const per = (us: number) => (us / n).toFixed(0);
  const what = samePROCESS ? "both nodes (one process)" : "payer process";
  const payee = samePROCESS ? "" : `, payee process ${per(after.payee - before.payee)} us`;
  console.log(`  CPU per payment: ${what} ${per(after.payer - before.payer)} us${payee}`);
}

function report(what: string, n: number, ms: number, latencies: number[]): void {
  const s = [...latencies].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
  console.log(
    `${what}: ${(n / (ms / 1_000)).toFixed(0)} payments/s (${n} in ${(ms / 1_000).toFixed(2)} s); ` +
      `latency p50 ${pct(50).toFixed(2)} ms, p99 ${pct(99).toFixed(2)} ms, max ${pct(100).toFixed(2)} ms`,
  );
}
