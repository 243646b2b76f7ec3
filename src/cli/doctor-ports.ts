import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Config } from "../config/index.ts";
import { probeControl } from "../node/control/client.ts";
import { CONTROL_SOCKET } from "../node/control/protocol.ts";
import { errorMessage } from "../util/errors.ts";
import { type CheckResult, notOk, ok } from "./doctor-checks.ts";

/**
 * `infernet doctor`'s listen check: every configured listen address is bound for a moment, on UDP
 * (QUIC) or TCP as the multiaddr says, to see whether `infernet start` could. Whether other
 * machines can reach it (NAT, firewalls) cannot be told from here without a peer; the summary says
 * what must be open.
 */

/** The parts of a listen multiaddr a bind needs. Other shapes (dns, ws, circuit) are not checked. */
const LISTEN_ADDR = /^\/(ip4|ip6)\/([^/]+)\/(udp|tcp)\/(\d+)(\/|$)/;

export interface ListenTarget {
  addr: string;
  host: string;
  protocol: "udp" | "tcp";
  port: number;
  ipv6: boolean;
}

export function listenTarget(addr: string): ListenTarget | undefined {
  const m = LISTEN_ADDR.exec(addr);
  if (!m?.[1] || !m[2] || !m[3] || !m[4]) return undefined;
  return { addr, host: m[2], protocol: m[3] as "udp" | "tcp", port: Number(m[4]), ipv6: m[1] === "ip6" };
}

/** Binds and releases; resolves to the error code ("EADDRINUSE") or undefined when the bind worked. */
export function tryBind(t: Pick<ListenTarget, "host" | "protocol" | "port" | "ipv6">): Promise<string | undefined> {
  return new Promise((resolve) => {
    const fail = (err: Error & { code?: string }) => resolve(err.code ?? errorMessage(err));
    if (t.protocol === "udp") {
      const socket = createSocket(t.ipv6 ? "udp6" : "udp4");
      socket.once("error", (err) => {
        socket.close();
        fail(err);
      });
      socket.bind({ port: t.port, address: t.host, exclusive: true }, () => socket.close(() => resolve(undefined)));
    } else {
      const server = createServer();
      server.once("error", fail);
      server.listen({ port: t.port, host: t.host, exclusive: true }, () => server.close(() => resolve(undefined)));
    }
  });
}

export async function checkPorts(config: Config): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const nodeRunning = await probeControl(join(config.home, CONTROL_SOCKET));
  for (const addr of config.listen) {
    const t = listenTarget(addr);
    const name = t ? `listen ${t.protocol}/${t.port}` : "listen";
    if (!t) {
      results.push(ok(name, `${addr}: not a plain IP address and port; not checked`));
      continue;
    }
    if (t.port === 0) {
      results.push(ok(name, `port 0: a free ${t.protocol.toUpperCase()} port is picked at start`));
      continue;
    }
    const code = await tryBind(t);
    const proto = t.protocol.toUpperCase();
    if (code === undefined) {
      const open = `others reach it only if ${proto} port ${t.port} is open in firewalls/NAT (or set INFERNET_ANNOUNCE)`;
      results.push(ok(name, `${proto} port ${t.port} can be bound; ${open}`));
    } else if (code === "EADDRINUSE" && nodeRunning) {
      results.push(ok(name, `${proto} port ${t.port} is in use by this INFERNET_HOME's running node`));
    } else if (code === "EADDRINUSE") {
      results.push(
        notOk(
          name,
          "fail",
          `${proto} port ${t.port} is in use by another program`,
          `stop it (\`ss -${t.protocol === "udp" ? "u" : "t"}lnp | grep ${t.port}\` names it) or listen elsewhere: INFERNET_LISTEN or --listen`,
        ),
      );
    } else if (code === "EACCES") {
      results.push(
        notOk(
          name,
          "fail",
          `${proto} port ${t.port} needs privileges`,
          "use a port above 1023 (INFERNET_LISTEN or --listen)",
        ),
      );
    } else {
      results.push(
        notOk(
          name,
          "fail",
          `cannot bind ${proto} ${t.host}:${t.port}: ${code}`,
          "use an address of this machine, or 0.0.0.0",
        ),
      );
    }
  }
  return results;
}
