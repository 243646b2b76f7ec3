import type { PeerId } from "@libp2p/interface";
import type { JobReport } from "../../../jobs/job-report.ts";
import type { JobEvent, JobQuote, JobUploadHeader } from "../../aggregator/api.ts";
import { WIRE_VERSION } from "../../wire.ts";
import { Call, type CallContext } from "./call.ts";
import { headerToWire, QuoteReplySchema, quoteFromWire, ReportReplySchema, WatchReplySchema } from "./messages.ts";

/**
 * The client side of quote, watch and report. A watch yields the job's events as they come and ends after
 * `finished`; leaving the loop early, aborting the signal, or the aggregator's silence (see
 * `Call`) resets the stream.
 */

export async function* watchJob(
  context: CallContext,
  peer: PeerId,
  jobId: string,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<JobEvent> {
  using call = await Call.open(context, peer, `the watch of job ${jobId}`, options.signal);
  try {
    await call.send({ v: WIRE_VERSION, type: "watch", jobId });
    await call.closeWrite();
  } catch (err) {
    throw call.failure(err);
  }
  for (;;) {
    let event: JobEvent;
    try {
      const reply = await call.read(WatchReplySchema);
      if (reply.job.id !== jobId) throw call.broken(`events of job ${reply.job.id} on the watch of ${jobId}`);
      const { job } = reply;
      if (reply.type === "progress") event = { type: "progress", job, shards: reply.shards };
      else event = reply.output ? { type: "finished", job, output: reply.output } : { type: "finished", job };
    } catch (err) {
      throw call.failure(err);
    }
    if (event.type === "finished") {
      call.finish();
      yield event;
      return;
    }
    yield event;
  }
}

/** The aggregator's quote for a job before its upload (see `AggregatorApi.quote`); its refusals typed. */
export async function fetchQuote(
  context: CallContext,
  peer: PeerId,
  header: JobUploadHeader,
  options: { signal?: AbortSignal } = {},
): Promise<JobQuote> {
  using call = await Call.open(context, peer, "the quote", options.signal);
  try {
    await call.send({ v: WIRE_VERSION, type: "quote", ...headerToWire(header) });
    await call.closeWrite();
    const reply = await call.read(QuoteReplySchema);
    call.finish();
    return quoteFromWire(reply);
  } catch (err) {
    throw call.failure(err);
  }
}

export async function fetchReport(
  context: CallContext,
  peer: PeerId,
  jobId: string,
  options: { signal?: AbortSignal } = {},
): Promise<JobReport> {
  using call = await Call.open(context, peer, `the report of job ${jobId}`, options.signal);
  try {
    await call.send({ v: WIRE_VERSION, type: "report", jobId });
    await call.closeWrite();
    const reply = await call.read(ReportReplySchema);
    if (reply.report.job.id !== jobId) throw call.broken(`the report of job ${reply.report.job.id} for ${jobId}`);
    call.finish();
    // Checked loosely (see `ReportSchema`): the shape a caller reads, the rest as sent.
    return reply.report as unknown as JobReport;
  } catch (err) {
    throw call.failure(err);
  }
}
