import { describe, expect, test } from "bun:test";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";

/** `infernet start` refusals: each one line, exit code 8 (configuration) or 2 (usage), nothing left running. */
describe("infernet start refuses what cannot work", () => {
  test("a listen port in use, and a second node on the same INFERNET_HOME", async () => {
    await using net = new TestNetwork();
    const first = await net.start("first", []);
    const tcp = first.status.addresses.find((a) => a.includes("/tcp/"))!.replace(/\/p2p\/.*$/, "");

    const busy = await infernet(["start", "--listen", tcp, "--no-mdns"], { home: net.home("second") });
    expect(busy.code).toBe(8);
    expect(busy.stderr.trim()).toBe(
      `infernet: cannot start the network node: cannot listen on ${tcp}: address already in use ${tcp.split("/")[2]}:${tcp.split("/")[4]} (check --listen (is the port in use?) and --bootstrap addresses)`,
    );

    const again = await infernet(["start", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--no-mdns"], {
      home: first.home,
    });
    expect(again.code).toBe(8);
    expect(again.stderr.trim()).toBe(
      `infernet: a node is already running with INFERNET_HOME ${first.home} (stop it first, or use another INFERNET_HOME)`,
    );
  });

  test("flag mistakes", async () => {
    await using net = new TestNetwork();
    const home = net.home("flags");
    const cases: [string[], RegExp][] = [
      [["start", "--models", "stories260k"], /--models needs --provider/],
      [["start", "--provider"], /--provider needs --models/],
      [["start", "--price", "cheap"], /--price "cheap": not a number of sats nor MODEL=AMOUNT\/UNIT/],
      [["start", "--provider", "--models", "mnist-8", "--price", "mnist-8=2sat/1kbananas"], /the unit is one of 1ktok/],
      [
        ["start", "--provider", "--models", "mnist-8", "--price", "stories260k=2sat/1ktok"],
        /--price names stories260k, which this node does not serve/,
      ],
      [["start", "--bootstrap", "/ip4/nonsense"], /bootstrap address "\/ip4\/nonsense" is not a valid multiaddr/],
      [["start", "--provider", "--models", "nosuchmodel"], /unknown model "nosuchmodel"/],
    ];
    for (const [args, pattern] of cases) {
      const r = await infernet(args, { home });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});
