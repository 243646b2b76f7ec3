import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { NodeProcess } from "../test/helpers/network.ts";
import { IMAGES, IMAGES_FILE } from "./aggregator-e2e.ts";
import { BUN, CLI, MIRROR, spawnTimed } from "./lib.ts";

/**
 * A steady stream of shards through an aggregator, for bench/dashboard.ts: every `intervalMs` one
 * `infernet submit --detach` of `shardsPerJob` one-image MNIST shards, redundancy 1, sent through a
 * client node (`infernet start` without flags) so each submit is a short process that hands the
 * upload to that node's control socket instead of starting a libp2p node of its own.
 */

/** Submits allowed to overlap when one takes longer than the interval; a later one waits its turn. */
const MAX_SUBMITS_IN_FLIGHT = 3;
/** IDX image files (idx3): magic, count, rows, columns, then one byte per pixel. */
const IDX_HEADER_BYTES = 16;
const MNIST_PIXELS = 28 * 28;

/**
 * Writes `count` MNIST test images starting at image `first` to `path` as a raw IDX file, the
 * format `infernet submit --inputs` reads.
 */
export async function writeImages(path: string, first: number, count: number): Promise<void> {
  if (first + count > IMAGES) throw new Error(`only ${IMAGES} MNIST test images`);
  const all = Bun.gunzipSync(new Uint8Array(await Bun.file(IMAGES_FILE).arrayBuffer()));
  const header = Buffer.alloc(IDX_HEADER_BYTES);
  header.writeUInt32BE(0x0803, 0);
  header.writeUInt32BE(count, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  const start = IDX_HEADER_BYTES + first * MNIST_PIXELS;
  await Bun.write(path, Buffer.concat([header, all.subarray(start, start + count * MNIST_PIXELS)]));
}

export interface FeedOptions {
  aggregator: NodeProcess;
  /** The client node the submits go through. */
  client: NodeProcess;
  /** Folder for the input file. */
  dir: string;
  shardsPerJob: number;
  intervalMs: number;
  /** Prefix of the jobs' idempotency keys (each job gets its own key, so none is found again). */
  name: string;
}

export interface JobTiming {
  id: string;
  shards: number;
  createdAt: number;
  finishedAt: number | null;
  state: string;
}

/** Runs submits on a fixed schedule until `stop()`; counts what it sent and what failed. */
export class Feeder {
  readonly jobIds: string[] = [];
  readonly errors: string[] = [];
  /** Submits that started later than their slot because MAX_SUBMITS_IN_FLIGHT were still running. */
  late = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly inputs: string;

  private constructor(private readonly options: FeedOptions) {
    this.inputs = join(options.dir, `feed-${options.shardsPerJob}.idx`);
  }

  static async create(options: FeedOptions): Promise<Feeder> {
    const feeder = new Feeder(options);
    await writeImages(feeder.inputs, 0, options.shardsPerJob);
    return feeder;
  }

  start(): void {
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops the schedule and waits for the submits still running (their jobs may still be running). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.inFlight);
  }

  private async run(): Promise<void> {
    const start = performance.now();
    for (let slot = 0; !this.stopped; slot++) {
      const due = start + slot * this.options.intervalMs;
      const wait = due - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      if (this.stopped) break;
      if (this.inFlight.size >= MAX_SUBMITS_IN_FLIGHT) {
        this.late++;
        await Promise.race(this.inFlight);
      }
      const call = this.submitOne(`${this.options.name}-${slot}-${Date.now()}`);
      this.inFlight.add(call);
      void call.finally(() => this.inFlight.delete(call));
    }
  }

  private async submitOne(key: string): Promise<void> {
    const { aggregator, client, shardsPerJob } = this.options;
    const run = await spawnTimed(
      [
        BUN,
        CLI,
        "submit",
        "--model",
        "mnist-8",
        "--inputs",
        this.inputs,
        "--shard-size",
        "1",
        "--redundancy",
        "1",
        "--aggregator",
        aggregator.quic,
        "--detach",
        "--json",
        "--key",
        key,
        "--output",
        join(this.options.dir, `${key}.jsonl`),
      ],
      { INFERNET_HOME: client.home, INFERNET_MODEL_MIRROR: MIRROR, INFERNET_MDNS: "false", INFERNET_LOG: "info" },
    );
    const line = run.stdout.trim().split("\n").at(-1) ?? "";
    try {
      const event = JSON.parse(line) as { event?: string; jobId?: string };
      if (run.code === 0 && event.event === "submitted" && event.jobId) {
        this.jobIds.push(event.jobId);
        return;
      }
    } catch {
      // Not JSON: reported below with the exit code and stderr.
    }
    this.errors.push(`submit of ${shardsPerJob} shards exited ${run.code}: ${run.stderr.trim().slice(-300)}`);
  }
}

/** Job timings and verified-shard counts from the aggregator's SQLite (read-only, as bench/aggregator-e2e.ts). */
export class AggregatorDb {
  private readonly db: Database;

  constructor(aggregator: NodeProcess) {
    this.db = new Database(join(aggregator.home, "infernet.db"), { readonly: true });
  }

  jobs(ids: string[]): JobTiming[] {
    const q = this.db.query<
      { id: string; shards: number; createdAt: number; finishedAt: number | null; state: string },
      [string]
    >(
      "SELECT id, shard_count AS shards, created_at AS createdAt, finished_at AS finishedAt, state FROM jobs WHERE id = ?",
    );
    return ids.flatMap((id) => q.all(id));
  }

  /** Shards of any job verified with their last update in [from, to) (epoch ms). */
  verifiedBetween(from: number, to: number): number {
    const row = this.db
      .query<{ n: number }, [number, number]>(
        "SELECT count(*) AS n FROM shards WHERE state = 'verified' AND updated_at >= ? AND updated_at < ?",
      )
      .get(from, to);
    return row?.n ?? 0;
  }

  /** Jobs not yet in a final state. */
  unfinished(): number {
    const row = this.db.query<{ n: number }, []>("SELECT count(*) AS n FROM jobs WHERE finished_at IS NULL").get();
    return row?.n ?? 0;
  }

  close(): void {
    this.db.close();
  }
}
