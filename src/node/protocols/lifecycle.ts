import type { StreamHandler } from "@libp2p/interface";
import type { Registrar } from "@libp2p/interface-internal";
import { AbortedError } from "../../util/errors.ts";

/** The serving side of a protocol: its stream handler, and what stops the work it has in flight. */
export interface ProtocolServer {
  handle: StreamHandler;
  stop(): void;
}

export interface ProtocolLifecycleInit {
  registrar: Registrar;
  protocol: string;
  /** Absent on a node without this protocol's serving side: peers then get "protocol not supported". */
  server: ProtocolServer | undefined;
  /** Streams of this protocol open at once on one connection, each way. */
  maxInboundStreams: number;
  maxOutboundStreams: number;
}

/**
 * What the infer, shard and job services share as libp2p `Startable`s: the handler is registered
 * while started; stopping unregisters it, aborts this node's own calls in flight (each caller keeps
 * its AbortController in `calls` while it runs) and stops the server's work; once stopped, new calls
 * are refused (`stopped`).
 */
export class ProtocolLifecycle {
  /** Client calls in flight, aborted on stop. */
  readonly calls = new Set<AbortController>();
  private stopping = false;
  private started = false;

  constructor(private readonly init: ProtocolLifecycleInit) {}

  async start(): Promise<void> {
    this.stopping = false;
    const { registrar, protocol, server, maxInboundStreams, maxOutboundStreams } = this.init;
    if (server) await registrar.handle(protocol, server.handle, { maxInboundStreams, maxOutboundStreams });
    this.started = true;
  }

  async stop(): Promise<void> {
    const { registrar, protocol, server } = this.init;
    if (server) await registrar.unhandle(protocol);
    this.stopping = true;
    for (const call of this.calls) call.abort(new AbortedError("the node is stopping"));
    server?.stop();
    this.started = false;
  }

  isStarted(): boolean {
    return this.started;
  }

  /** True once stopped: new calls are refused with `stoppedError()`. */
  get stopped(): boolean {
    return this.stopping;
  }

  stoppedError(): AbortedError {
    return new AbortedError("the node is stopping");
  }
}
