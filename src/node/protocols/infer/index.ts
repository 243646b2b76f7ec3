import type { PeerId, Startable } from "@libp2p/interface";
import type { ConnectionManager, Registrar } from "@libp2p/interface-internal";
import type { DirectPayer } from "../../../payments/direct.ts";
import type { Engine, InferenceEvent, InferenceRequest, LocalModel, RuntimeName } from "../../../runtime/engine.ts";
import type { WorkView } from "../../work-log.ts";
import { ProtocolLifecycle } from "../lifecycle.ts";
import { atLeastZero, positive } from "../settings.ts";
import { RemoteInferenceError } from "./errors.ts";
import { InferProvider, type ProviderSettings } from "./provider.ts";
import { callRemote } from "./requester.ts";

/**
 * /infernet/infer/1.0.0: direct inference on one peer (no aggregator). See messages.ts for the frames,
 * provider.ts for the serving side and requester.ts for the calling side.
 */
export const INFER_PROTOCOL = "/infernet/infer/1.0.0";
/** Requests computing at once on a provider, by default. */
export const DEFAULT_MAX_CONCURRENT = 4;
/** Requests waiting for a slot, by default; one more is refused with "busy". */
export const DEFAULT_MAX_QUEUED = 16;
/** A provider's hard cap on one request (queueing included), by default. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
/** A client's deadline when the caller gives none. */
export const DEFAULT_CLIENT_DEADLINE_MS = DEFAULT_REQUEST_TIMEOUT_MS;
/** Inference streams open at once on one connection, each way (each holds at most one request frame). */
export const MAX_INBOUND_STREAMS = 32;
export const MAX_OUTBOUND_STREAMS = 32;
/**
 * Requests this node keeps in flight to one provider. Beyond it a call is "busy" at once, without a
 * stream: kept under the stream limits with a margin (a provider counts a stream a little longer than
 * its client does), so a burst never meets libp2p's stream reset instead of the provider's own "busy".
 */
export const MAX_CALLS_PER_PEER = 24;

export { RemoteInferenceError } from "./errors.ts";
export { REMOTE_ERROR_CODES, type RemoteErrorCode } from "./messages.ts";
export { CLOSE_TIMEOUT_MS, REQUEST_READ_TIMEOUT_MS } from "./provider.ts";

export interface ModelRef {
  name: string;
  /** sha256 of the model file, lowercase hex. */
  sha256: string;
}

export interface InferInit {
  /** Models this node serves, by sha256 (lowercase hex). Called per request (the served set can change). */
  served?: () => Map<string, LocalModel>;
  /** False while serving is paused: new requests are refused with "busy", running ones finish (default: always true). */
  accepting?: () => boolean;
  /** Engines by runtime. Absent = this node serves nothing (client only). */
  engines?: Partial<Record<RuntimeName, Engine>>;
  /** Requests computing at once (default `DEFAULT_MAX_CONCURRENT`); more wait in a bounded queue. */
  maxConcurrent?: number;
  /** Requests waiting for a slot (default `DEFAULT_MAX_QUEUED`); beyond, the reply is error "busy". */
  maxQueued?: number;
  /** Hard cap per request on the provider, queueing included (default `DEFAULT_REQUEST_TIMEOUT_MS`). */
  requestTimeoutMs?: number;
  /** Direct requests must be paid as they stream (payments/direct.ts); absent: they are free. */
  charge?: ProviderSettings["charge"];
}

export interface InferComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  peerId: PeerId;
}

export interface InferLoad {
  /** Requests computing now. */
  active: number;
  /** Requests waiting for a slot. */
  queued: number;
  maxConcurrent: number;
  /** Requests this node has run to completion (`done` sent) since it started. */
  served: number;
  /** Requests it accepted and then failed (engine error or its own deadline) since it started. */
  failed: number;
}

export interface InferOptions {
  signal?: AbortSignal;
  /** Budget for the whole call, dial included (default `DEFAULT_CLIENT_DEADLINE_MS`); then `TimeoutError`. */
  deadlineMs?: number;
  /** Pay the provider as the result streams (payments/direct.ts), over `payer`. */
  payer?: DirectPayer;
}

export interface InferService extends Startable {
  /**
   * Client side: runs `request` on `peer`, yielding events as they arrive and ending after `done`.
   * Throws `RemoteInferenceError` (refused, failed, or the stream ended before `done`), `AbortedError`
   * when `signal` aborts, `TimeoutError` when the deadline passes; leaving the loop early cancels the
   * request on the provider.
   */
  infer(
    peer: PeerId,
    model: ModelRef,
    request: InferenceRequest,
    options?: InferOptions,
  ): AsyncIterable<InferenceEvent>;
  /** Provider side load, for announcements. */
  load(): InferLoad;
  /** Provider side: what runs now, then what finished last (newest first), at most `limit`. */
  work(limit: number): WorkView[];
}

class DefaultInferService implements InferService {
  private readonly provider: InferProvider;
  private readonly life: ProtocolLifecycle;

  constructor(
    private readonly components: InferComponents,
    init: InferInit,
  ) {
    const engines = init.engines ?? {};
    this.provider = new InferProvider({
      served: init.served ?? (() => new Map()),
      accepting: init.accepting ?? (() => true),
      engines,
      maxConcurrent: positive("maxConcurrent", init.maxConcurrent ?? DEFAULT_MAX_CONCURRENT),
      maxQueued: atLeastZero("maxQueued", init.maxQueued ?? DEFAULT_MAX_QUEUED),
      requestTimeoutMs: positive("requestTimeoutMs", init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
      ...(init.charge ? { charge: init.charge } : {}),
    });
    this.life = new ProtocolLifecycle({
      registrar: components.registrar,
      protocol: INFER_PROTOCOL,
      // A node that serves nothing does not register the handler: peers get "protocol not supported".
      server: Object.keys(engines).length > 0 ? this.provider : undefined,
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    });
  }

  readonly [Symbol.toStringTag] = "@infernet/infer";

  start(): Promise<void> {
    return this.life.start();
  }

  stop(): Promise<void> {
    return this.life.stop();
  }

  isStarted(): boolean {
    return this.life.isStarted();
  }

  infer(
    peer: PeerId,
    model: ModelRef,
    request: InferenceRequest,
    options: InferOptions = {},
  ): AsyncIterable<InferenceEvent> {
    if (this.life.stopped) return refuse(this.life.stoppedError());
    return this.counted(peer.toString(), () =>
      callRemote({
        connectionManager: this.components.connectionManager,
        protocol: INFER_PROTOCOL,
        peer,
        model,
        request,
        deadlineMs: options.deadlineMs ?? DEFAULT_CLIENT_DEADLINE_MS,
        signal: options.signal,
        inFlight: this.life.calls,
        ...(options.payer ? { payer: options.payer } : {}),
      }),
    );
  }

  /** Calls in flight by peer id (see MAX_CALLS_PER_PEER). */
  private readonly perPeer = new Map<string, number>();

  private async *counted(peer: string, call: () => AsyncIterable<InferenceEvent>): AsyncGenerator<InferenceEvent> {
    const n = this.perPeer.get(peer) ?? 0;
    if (n >= MAX_CALLS_PER_PEER) {
      throw new RemoteInferenceError("busy", peer, `${peer} already has ${n} requests from this node in flight`);
    }
    this.perPeer.set(peer, n + 1);
    try {
      yield* call();
    } finally {
      const left = (this.perPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.perPeer.set(peer, left);
      else this.perPeer.delete(peer);
    }
  }

  load(): InferLoad {
    return this.provider.load();
  }

  work(limit: number): WorkView[] {
    return this.provider.work.entries(limit);
  }
}

export function inferProtocol(init: InferInit = {}): (components: InferComponents) => InferService {
  return (components) => new DefaultInferService(components, init);
}

// biome-ignore lint/correctness/useYield: an iterable that fails when iterated, like a refused call
async function* refuse(error: Error): AsyncGenerator<InferenceEvent> {
  throw error;
}
