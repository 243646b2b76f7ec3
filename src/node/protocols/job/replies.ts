import { type FrameSink, WIRE_VERSION, type WireMessage, writeFrames, writeMessage } from "../../wire.ts";

/**
 * The aggregator's writing end of one call: frames in order, and a `keepalive` frame whenever
 * nothing was written for `keepaliveMs`. Why keepalives: a client tells a dead aggregator from a
 * quiet one only by silence (a watch can go minutes between events), and over QUIC a client's reset
 * reaches a server that only reads as STOP_SENDING on its next write, so a gone client is noticed
 * within a keepalive or two. A failed keepalive calls `onBroken`.
 */
export class Replies {
  private writing = 0;
  private last = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly lp: FrameSink,
    private readonly signal: AbortSignal,
    keepaliveMs: number,
    onBroken: () => void,
  ) {
    this.timer = setInterval(() => {
      if (this.writing > 0 || performance.now() - this.last < keepaliveMs) return;
      this.send({ v: WIRE_VERSION, type: "keepalive" }).catch(onBroken);
    }, keepaliveMs / 2);
  }

  async send(message: WireMessage): Promise<void> {
    this.writing += 1;
    try {
      await writeMessage(this.lp, message, { signal: this.signal });
    } finally {
      this.writing -= 1;
      this.last = performance.now();
    }
  }

  /** Writes a frame already encoded (one whose size was checked). */
  async sendFrame(frame: Uint8Array): Promise<void> {
    this.writing += 1;
    try {
      await writeFrames(this.lp, [frame], { signal: this.signal });
    } finally {
      this.writing -= 1;
      this.last = performance.now();
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
