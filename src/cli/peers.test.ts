import { expect, test } from "bun:test";
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { infernet } from "../../test/helpers/cli.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import type { PeerRow } from "../node/node.ts";
import { MNIST_SHA, STORIES_SHA, sampleRecord } from "../node/protocols/capability/fixtures.ts";
import { ReputationStore } from "../reputation/store.ts";
import { Store } from "../store/db.ts";
import { formatPeers, peerViews } from "./peers.ts";

const NOW = 1_700_000_000_000;
const COPY = { latencyMs: 100, units: 10 };
const keys: PrivateKey[] = await Promise.all(Array.from({ length: 3 }, () => generateKeyPair("Ed25519")));
const row = (i: number): PeerRow => {
  const record = sampleRecord(keys[i] as PrivateKey, {}, NOW);
  return { peerId: record.peerId, addrs: record.addrs, connected: true, latencyMs: 12, record };
};

function reputation(dir: string): { store: Store; rep: ReputationStore } {
  const store = Store.openFile(join(dir, "state.db"));
  return { store, rep: new ReputationStore(store, () => NOW) };
}

test("score: this node's own, for the model or the mean over models it has a record of; ban: while it lasts", () => {
  using dir = tempDir();
  const { store, rep } = reputation(dir.path);
  const [good, liar, stranger] = [row(0), row(1), row(2)];
  rep.verified(good.peerId, STORIES_SHA, COPY);
  rep.lost(good.peerId, MNIST_SHA); // completion 1/2 for mnist
  rep.faulty(liar.peerId, STORIES_SHA, COPY);
  rep.ban(liar.peerId, "canary wrong", undefined, "me");
  // An announced speed alone is no record.
  rep.announced(stranger.peerId, STORIES_SHA, 50);

  const views = peerViews([good, liar, stranger], rep, undefined, NOW);
  expect(views.map((v) => v.score)).toEqual([(1 + 0.5) / 2, 0, null]);
  expect(views.map((v) => v.ban?.reason ?? null)).toEqual([null, "canary wrong", null]);
  expect(peerViews([good], rep, MNIST_SHA, NOW)[0]?.score).toBe(0.5);
  expect(peerViews([stranger], rep, MNIST_SHA, NOW)[0]?.score).toBeNull();
  // The ban is over: the score is the record's again, still low for a fault.
  const later = peerViews([liar], rep, STORIES_SHA, NOW + 365 * 86_400_000)[0];
  expect(later?.ban).toBeNull();
  expect(later?.score).toBeCloseTo(1 / 11 ** 2, 12);
  // JSON carries both fields on every row, null when unknown.
  expect(JSON.parse(JSON.stringify(views[2]))).toMatchObject({ score: null, ban: null });
  store.close();
});

test("the table: SCORE first-hand, REPUTATION labelled as the peer's claim, BAN with until and why", () => {
  using dir = tempDir();
  const { store, rep } = reputation(dir.path);
  const [good, liar] = [row(0), row(1)];
  rep.verified(good.peerId, STORIES_SHA, COPY);
  rep.ban(liar.peerId, "canary wrong", undefined, "me");
  const views = peerViews([good, liar], rep, undefined, NOW);
  const lines = formatPeers(views).trimEnd().split("\n");
  expect(lines[0]).toMatch(/^PEER\s+HARDWARE\s+MODELS\s+PRICE\s+LATENCY\s+LOAD\s+SCORE\s+REPUTATION\s+BAN\s+ADDRESS$/);
  expect(lines[1]).toContain(good.peerId.slice(-12));
  expect(lines[1]).toMatch(/\s1\.00\s+claims 10 ok, 1 failed\s+-\s+\/ip4\//);
  const until = new Date(NOW + 3_600_000).toISOString().slice(0, 16);
  // Banned on evidence from elsewhere, with no record here: no score, but the ban shows.
  expect(lines[2]).toMatch(new RegExp(`\\s-\\s+claims 10 ok, 1 failed\\s+until ${until} \\(canary wrong\\)`));
  // Hidden banned peers are counted under the table, and under "no peers" too.
  expect(formatPeers(views.slice(0, 1), 1)).toMatch(/\n1 banned peer\(s\) hidden \(--all shows them\)\.\n$/);
  expect(formatPeers([], 2)).toBe(
    "No peers found (check --bootstrap; mDNS finds peers on the same LAN).\n2 banned peer(s) hidden (--all shows them).\n",
  );
  const claimed = { ...good, record: { ...good.record!, reputation: { completed: 3, failed: 0, score: 0.9 } } };
  expect(formatPeers([{ ...claimed, score: null, ban: null }])).toMatch(/\s-\s+claims 3 ok, 0 failed, 0\.90\s/);
  store.close();
});

test("the CLI takes --all and prints JSON rows (none without a network)", async () => {
  using dir = tempDir();
  const r = await infernet(["peers", "--all", "--json"], { home: dir.path });
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual([]);
}, 30_000);
