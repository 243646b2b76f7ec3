import { copyFile, rename, rm } from "node:fs/promises";
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { payloadBytes, type Shard } from "../../jobs/records.ts";
import { sha256File } from "../../models/hash.ts";
import { IntegrityError, UsageError } from "../../util/errors.ts";
import type { AggregatorApi } from "../aggregator/api.ts";
import type { InfernetNode } from "../node.ts";
import { followJob } from "../protocols/job/follow.ts";
import type { AggregatorRef, FinishedEvent, JobOps, OutputFetched } from "./jobs-ops.ts";

/**
 * `JobOps` on a node of this process: the node's job protocol client (`node.jobs`) for a remote
 * aggregator, or the node's own aggregator (`node.aggregator`) when the target is this node itself,
 * with this node's peer id as the client, exactly as the job protocol would authenticate it. The
 * daemon's control routes and an ephemeral command's node both use this.
 */

/** Longest wait for the aggregator lookup. */
export const FIND_AGGREGATORS_TIMEOUT_MS = 10_000;

export function nodeJobOps(node: InfernetNode): JobOps {
  const self = (aggregator: AggregatorRef): AggregatorApi | undefined =>
    aggregator.peerId === node.peerId ? ownAggregator(node) : undefined;
  const peer = async (aggregator: AggregatorRef): Promise<PeerId> => {
    const id = parsePeer(aggregator.peerId);
    // Known addresses let the job protocol dial an aggregator that discovery has not found (yet).
    const addrs = aggregator.addrs.flatMap((a) => {
      try {
        return [multiaddr(a)];
      } catch {
        return [];
      }
    });
    if (addrs.length) await node.host.peerStore.merge(id, { multiaddrs: addrs });
    return id;
  };

  return {
    peerId: node.peerId,

    async findAggregators(signal) {
      const records = await node.capability.findAggregators({ signal, timeoutMs: FIND_AGGREGATORS_TIMEOUT_MS });
      return records.flatMap((r) =>
        r.aggregator ? [{ peerId: r.peerId, addrs: r.addrs, feePercent: r.aggregator.feePercent }] : [],
      );
    },

    async quote(aggregator, header, signal) {
      const own = self(aggregator);
      if (own) return own.quote(header, node.peerId, signal);
      return node.jobs.quote(await peer(aggregator), header, { signal });
    },

    async submit(aggregator, header, shards, options) {
      const own = self(aggregator);
      if (own) {
        const existing = own.existing(header.spec, node.peerId);
        if (existing) return existing;
        return own.submit(header, counted(shards, options.onUploaded), node.peerId, options.signal);
      }
      return node.jobs.submit(await peer(aggregator), header, shards, options);
    },

    async follow(aggregator, jobId, options) {
      const own = self(aggregator);
      if (own) {
        for await (const event of own.watch(jobId, node.peerId, options.signal)) {
          options.onEvent(event);
          if (event.type === "finished") return event;
        }
        throw new IntegrityError(`the watch stream of job ${jobId} ended before the job finished`);
      }
      return (await followJob(node.jobs, await peer(aggregator), jobId, {
        signal: options.signal,
        onEvent: options.onEvent,
        ...(options.onReconnect
          ? { onReconnect: (_attempt: number, err: Error) => options.onReconnect?.(err.message) }
          : {}),
      })) as FinishedEvent;
    },

    async fetchOutput(aggregator, jobId, dest, options): Promise<OutputFetched> {
      const own = self(aggregator);
      if (own) {
        const info = await own.output(jobId, node.peerId);
        const part = `${dest}.copying`;
        await copyFile(info.path, part);
        const sha256 = await sha256File(part);
        if (sha256 !== info.sha256) {
          await rm(part, { force: true });
          throw new IntegrityError(`the output of job ${jobId} does not match its sha256`);
        }
        await rename(part, dest);
        options.onBytes?.(info.bytes);
        return { bytes: info.bytes, sha256: info.sha256, records: info.records };
      }
      return node.jobs.fetchOutput(await peer(aggregator), jobId, dest, options);
    },

    async report(aggregator, jobId, signal) {
      const own = self(aggregator);
      if (own) return own.report(jobId, node.peerId);
      return node.jobs.report(await peer(aggregator), jobId, { signal });
    },
  };
}

function ownAggregator(node: InfernetNode): AggregatorApi {
  if (!node.aggregator) {
    throw new UsageError("this node is not an aggregator", { hint: "start it with `infernet start --aggregator`" });
  }
  return node.aggregator;
}

function parsePeer(id: string): PeerId {
  try {
    return peerIdFromString(id);
  } catch (cause) {
    throw new UsageError(`"${id}" is not a peer id`, { cause });
  }
}

/** Passes shards through, telling `onUploaded` how many (and how many payload bytes) went. */
async function* counted(
  shards: AsyncIterable<Shard>,
  onUploaded: ((shards: number, bytes: number) => void) | undefined,
): AsyncGenerator<Shard> {
  let n = 0;
  let bytes = 0;
  for await (const shard of shards) {
    yield shard;
    bytes += payloadBytes(shard.payload);
    onUploaded?.(++n, bytes);
  }
}
