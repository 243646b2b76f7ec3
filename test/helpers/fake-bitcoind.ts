import { Transaction } from "bitcoinjs-lib";
import { FakeLedger, LedgerRejection, type Override } from "./fake-esplora.ts";

/**
 * A FAKE of a remote bitcoind's JSON-RPC server (Bitcoin Core's HTTP RPC). bitcoind cannot run here
 * (no Debian package on bookworm), so chain tests talk to this Bun.serve server on 127.0.0.1 over the
 * same wire: POST / with HTTP basic auth, `{jsonrpc, id, method, params}` envelopes, answers
 * `{result, error, id}`; legacy 1.0 errors as HTTP 500 (404 for an unknown method), 2.0 errors as
 * HTTP 200; 401 with an empty body for bad credentials; BTC amounts printed with 8 decimals like
 * UniValue. It implements the methods BitcoindChain uses, on the same in-memory `FakeLedger` as the
 * fake Esplora (scantxoutset sees only the UTXO set, never the mempool, as in Core).
 */

export interface FakeBitcoind extends AsyncDisposable {
  url: string;
  ledger: FakeLedger;
  /** The user:password pair it accepts (what a cookie file would hold). */
  credentials: string;
  override: Override | undefined;
  /** Methods called, in order. */
  calls: string[];
  stop(): Promise<void>;
}

class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Marks a BTC amount so the JSON text can print it as UniValue does ("0.00010000", not 1e-4). */
const BTC_MARK = "__btc__";
const btc = (sats: bigint) => `${BTC_MARK}${sats / 100_000_000n}.${(sats % 100_000_000n).toString().padStart(8, "0")}`;

export function fakeBitcoind(ledger = new FakeLedger(), credentials = "__cookie__:0123abcd"): FakeBitcoind {
  const calls: string[] = [];
  const state: { override: Override | undefined } = { override: undefined };

  const methods: Record<string, (params: unknown[]) => unknown> = {
    getblockcount: () => ledger.tip,
    estimatesmartfee: ([target]) => {
      const keys = Object.keys(ledger.feeEstimates)
        .map(Number)
        .filter((k) => k <= Number(target));
      if (keys.length === 0) return { errors: ["Insufficient data or no feerate found"], blocks: 0 };
      const best = Math.max(...keys);
      const satPerVb = ledger.feeEstimates[String(best)] ?? 0;
      return { feerate: btc(BigInt(Math.round(satPerVb * 1000))), blocks: best };
    },
    scantxoutset: ([action, descs]) => {
      if (action !== "start" || !Array.isArray(descs)) throw new RpcFailure(-8, "Invalid action");
      const unspents = descs.flatMap((d) => {
        const desc = String((d as { desc?: unknown }).desc ?? d).replace(/#.*$/, "");
        const m = /^(addr|raw)\((.+)\)$/.exec(desc);
        if (!m) throw new RpcFailure(-5, `'${desc}' is not a valid descriptor function`);
        const target = m[1] === "addr" ? (m[2] as string) : Buffer.from(m[2] as string, "hex");
        return ledger.unspent(ledger.scriptOf(target), { confirmedOnly: true }).map((u) => ({
          txid: u.txid,
          vout: u.vout,
          scriptPubKey: Buffer.from(u.script).toString("hex"),
          desc,
          amount: btc(u.value),
          coinbase: false,
          height: u.height,
          blockhash: ledger.blockHash(u.height as number),
        }));
      });
      const total = unspents.reduce((sum, u) => sum + BigInt(u.amount.replace(BTC_MARK, "").replace(".", "")), 0n);
      return {
        success: true,
        txouts: ledger.outputs.size,
        height: ledger.tip,
        bestblock: ledger.blockHash(ledger.tip),
        unspents,
        total_amount: btc(total),
      };
    },
    getrawtransaction: ([txid]) => {
      const tx = ledger.txs.get(String(txid));
      if (!tx) {
        throw new RpcFailure(
          -5,
          "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        );
      }
      const decoded = Transaction.fromHex(tx.hex);
      const base = {
        txid,
        hash: Buffer.from(decoded.getHash(true)).reverse().toString("hex"),
        hex: tx.hex,
        vsize: decoded.virtualSize(),
      };
      if (tx.height === undefined) return base;
      return { ...base, blockhash: ledger.blockHash(tx.height), confirmations: ledger.tip - tx.height + 1 };
    },
    sendrawtransaction: ([hex]) => {
      try {
        return ledger.accept(String(hex));
      } catch (err) {
        if (err instanceof LedgerRejection) throw new RpcFailure(err.code, err.message);
        throw err;
      }
    },
    gettxout: ([txid, vout, includeMempool]) => {
      const out = ledger.outputs.get(`${txid}:${vout}`);
      if (!out || out.spentBy || (out.height === undefined && includeMempool === false)) return null;
      return {
        bestblock: ledger.blockHash(ledger.tip),
        confirmations: out.height === undefined ? 0 : ledger.tip - out.height + 1,
        value: btc(out.value),
        scriptPubKey: { hex: Buffer.from(out.script).toString("hex") },
        coinbase: false,
      };
    },
  };

  const answer = (body: Record<string, unknown>, status: number) =>
    new Response(JSON.stringify(body).replace(new RegExp(`"${BTC_MARK}(\\d+\\.\\d{8})"`, "g"), "$1"), {
      status,
      headers: { "content-type": "application/json" },
    });

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const forced = await state.override?.(req, new URL(req.url).pathname);
      if (forced) return forced;
      const auth = req.headers.get("authorization") ?? "";
      if (auth !== `Basic ${Buffer.from(credentials).toString("base64")}`) {
        return new Response(null, { status: 401, headers: { "www-authenticate": 'Basic realm="jsonrpc"' } });
      }
      if (req.method !== "POST") return new Response("JSONRPC server handles only POST requests", { status: 405 });
      let request: { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
      try {
        request = JSON.parse(await req.text());
      } catch {
        return answer({ result: null, error: { code: -32700, message: "Parse error" }, id: null }, 500);
      }
      const v2 = request.jsonrpc === "2.0";
      const id = request.id ?? null;
      const method = String(request.method);
      calls.push(method);
      const fail = (code: number, message: string, legacyStatus: number) =>
        v2
          ? answer({ jsonrpc: "2.0", error: { code, message }, id }, 200)
          : answer({ result: null, error: { code, message }, id }, legacyStatus);
      const handler = methods[method];
      if (!handler) return fail(-32601, "Method not found", 404);
      try {
        const result = handler(Array.isArray(request.params) ? request.params : []);
        return v2 ? answer({ jsonrpc: "2.0", result, id }, 200) : answer({ result, error: null, id }, 200);
      } catch (err) {
        if (err instanceof RpcFailure) return fail(err.code, err.message, 500);
        throw err;
      }
    },
  });
  const stop = async () => {
    await server.stop(true);
  };
  return {
    url: `http://127.0.0.1:${server.port}`,
    ledger,
    credentials,
    get override() {
      return state.override;
    },
    set override(o) {
      state.override = o;
    },
    calls,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
