import { expect, test } from "bun:test";
import { join } from "node:path";
import type { ReputationRow } from "../src/cli/reputation.ts";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Ban } from "../src/reputation/store.ts";
import { checkMnistOutput, MNIST_CORRECT, MNIST_IMAGES, MNIST_RECORDS, watchedSubmit } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";
import { ROOT } from "./helpers/paths.ts";

/**
 * Adversaries among honest providers, all real processes over real libp2p, mnist-8 on the real
 * onnxruntime (test/fixtures/lying-provider.ts). The aggregator computes a few canaries itself
 * (it gets mnist-8 from the mirror), so even two providers that return the same wrong answers are
 * caught: their canaries come back wrong. Every adversary ends banned with evidence, its copies
 * failed, and the merged output exactly right; honest providers are never banned.
 */
const LIAR = join(ROOT, "test/fixtures/lying-provider.ts");

interface Reputation {
  providers: ReputationRow[];
  bans: Ban[];
}

async function reputation(node: NodeProcess): Promise<Reputation> {
  const r = await infernet(["reputation", "--json"], { home: node.home });
  expect(r.stderr).not.toContain("infernet:");
  return JSON.parse(r.stdout) as Reputation;
}

/** Shards until detection: each ban says in which of its copies the provider was caught. */
function expectCaughtIn(bans: Ban[], test: string): void {
  for (const b of bans) {
    console.log(`${test}: ${b.provider.slice(-8)} caught in copy ${b.copiesBefore}: ${b.reason}`);
    expect(b.copiesBefore).toBeGreaterThanOrEqual(1);
  }
}

async function mnistJob(net: TestNetwork, aggregator: NodeProcess, name: string) {
  const home = net.home(name);
  const output = join(home, "labels.jsonl");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shard-size", "1000", "--redundancy", "2"];
  await using submit = watchedSubmit([...job, "--output", output, "--bootstrap", aggregator.quic, "--no-mdns"], home);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(r.events.at(-2)).toMatchObject({ event: "output", records: MNIST_RECORDS });
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);
  return r.events.at(-1)?.report as JobReport;
}

/** Every copy an adversary computed was failed, and none of its answers was accepted. */
function expectAllFailed(report: JobReport, peers: string[]): number {
  const theirs = report.shards.flatMap((s) => s.copies).filter((c) => peers.includes(c.provider));
  expect(theirs.every((c) => c.state === "failed" || c.state === "reassigned")).toBe(true);
  for (const s of report.shards) {
    expect(s.state).toBe("verified");
    expect(s.copies.some((c) => c.state === "verified" && !peers.includes(c.provider))).toBe(true);
  }
  return theirs.length;
}

test("two colluders among six providers, the same wrong digits: caught by canaries, banned with evidence; the output is exact, and a restarted aggregator keeps the bans", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const provider = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const env = { INFERNET_BOOTSTRAP: aggregator.quic };
  const nodes = await Promise.all([
    net.startScript("c1", LIAR, ["--lie", "values", "--seed", "collude"], env),
    net.startScript("c2", LIAR, ["--lie", "values", "--seed", "collude"], env),
    ...["h1", "h2", "h3", "h4"].map((n) => net.start(n, provider)),
  ]);
  const colluders = nodes.slice(0, 2).map((n) => n.status.peerId);
  const honest = nodes.slice(2).map((n) => n.status.peerId);
  await net.discoverable(aggregator.quic, "mnist-8", nodes);

  const report = await mnistJob(net, aggregator, "client");
  expectAllFailed(report, colluders);
  const caught = report.shards
    .flatMap((s) => s.copies)
    .filter((c) => colluders.includes(c.provider) && c.verification?.verdict === "rejected");
  expect(caught.length).toBeGreaterThan(0);
  expect(caught.some((c) => c.verification?.method === "canary")).toBe(true);

  // Both banned, with signed evidence (attached once signed); honest providers verified and unbanned.
  let rep = await reputation(aggregator);
  for (let i = 0; i < 20 && rep.bans.some((b) => !b.evidenceId); i++) {
    await Bun.sleep(250);
    rep = await reputation(aggregator);
  }
  expect(rep.bans.map((b) => b.provider).sort()).toEqual([...colluders].sort());
  expect(rep.bans.every((b) => b.evidenceId && b.until > Date.now())).toBe(true);
  expectCaughtIn(rep.bans, "colluders");
  for (const p of honest) {
    const row = rep.providers.find((r) => r.provider === p);
    expect(row?.ban).toBeUndefined();
    expect(row?.faulty).toBe(0);
  }
  // The evidence leaves this aggregator as a file that another node checks (and adopts) on its own.
  const evidence = join(net.home("client"), "evidence.bin");
  const exported = await infernet(["reputation", "--evidence", rep.bans[0]!.evidenceId!, "--output", evidence], {
    home: aggregator.home,
  });
  expect(exported.code).toBe(0);
  const adopted = await infernet(["reputation", "--adopt", evidence], { home: net.home("other-aggregator") });
  expect(adopted.stderr).not.toContain("infernet:");
  expect(adopted.stdout).toContain(`${rep.bans[0]!.provider} banned until`);

  // A restart forgets nothing: the colluders get no copy of the next job.
  await net.kill(aggregator);
  const again = await net.restart(aggregator);
  await net.discoverable(again.quic, "mnist-8", nodes.slice(2));
  const second = await mnistJob(net, again, "client-2");
  expect(second.shards.flatMap((s) => s.copies).filter((c) => colluders.includes(c.provider))).toEqual([]);
  expect((await reputation(again)).bans.map((b) => b.provider).sort()).toEqual([...colluders].sort());
}, 240_000);

test("one provider among four wrong on 10% of records: caught and banned, the output exact, nobody honest banned", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const provider = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const nodes = await Promise.all([
    net.startScript("liar", LIAR, ["--lie", "values", "--rate", "0.1"], { INFERNET_BOOTSTRAP: aggregator.quic }),
    ...["h1", "h2", "h3"].map((n) => net.start(n, provider)),
  ]);
  const liar = nodes[0]!.status.peerId;
  await net.discoverable(aggregator.quic, "mnist-8", nodes);
  const report = await mnistJob(net, aggregator, "client");
  expect(expectAllFailed(report, [liar])).toBeGreaterThan(0);
  const rep = await reputation(aggregator);
  expect(rep.bans.map((b) => b.provider)).toEqual([liar]);
  expectCaughtIn(rep.bans, "10% liar");
  expect(rep.providers.filter((r) => r.provider !== liar).every((r) => r.faulty === 0 && r.verified > 0)).toBe(true);
}, 180_000);
