import { ImageStore } from '@app/image-store';
import { jobIdSchema } from '@app/contracts';
import { CliError, ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { cutNotice, parseLimit } from '../cli/listing-limit';
import type { Terminal } from '../cli/terminal';
import { requireRoot } from '../node/node-commands';
import { jobSummaryLine, renderJobTable } from './job-commands';

/** `icc job status <jobId>`: the job's record and node outcomes, read from the shared folder. */
export async function runJobStatus(
  jobId: string,
  /** limit: --limit, the table's rows (DEFAULT_LISTING_LIMIT); the JSON has every node. */
  options: { cacheRoot?: string; json?: boolean; limit?: string },
  term: Terminal,
): Promise<ExitCodeValue> {
  const parsed = jobIdSchema.safeParse(jobId);
  if (!parsed.success) throw new UsageError('<jobId>', parsed.error.issues.map((i) => i.message).join('; '));
  const limit = parseLimit(options.limit);
  const store = new ImageStore({ root: await requireRoot(options.cacheRoot), onWarning: () => undefined });
  const status = await store.jobs.status(parsed.data);
  if (!status) throw new CliError(ExitCode.FAILED, `no job ${parsed.data} under ${store.root}`);
  const pending = status.record.nodes.filter((n) => !status.outcomes.some((o) => o.node === n));
  if (options.json) {
    term.out(JSON.stringify({ ...status, pending }));
    return ExitCode.OK;
  }
  const rows = [
    ...status.outcomes,
    ...pending.map((node) => ({ node, outcome: 'pending' as never, at: '' })),
  ];
  term.out(renderJobTable(rows, limit));
  const notice = cutNotice(Math.min(limit, rows.length), rows.length, 'nodes');
  if (notice) term.out(notice);
  term.out(
    `${jobSummaryLine({ ...status, jobId: parsed.data, jobType: status.record.type, imageId: status.record.imageId, nodes: status.outcomes })}; ${status.state}`,
  );
  return ExitCode.OK;
}
