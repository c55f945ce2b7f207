import {
  type Logger,
  type CellTopology,
  type JobEvent,
  JOB_MESSAGE_VERSION,
  type NodeOutcome,
  jobRoutingKey,
} from '@app/contracts';
import type { JobRecords, JobStatus } from '@app/image-store';
import { type Publisher, publishRouted } from '@app/messaging';

/**
 * A job's progress and result, derived from its records and published on the events exchange. A node's
 * outcome is recorded before the message that produced it is acked (first writer wins), and the events
 * are computed from the records, not from memory: a conductor that dies after recording and before
 * publishing leaves the job no worse off (the redelivered copy finds the node recorded and publishes).
 * Events may therefore be duplicated, never wrong.
 */
export class JobProgress {
  constructor(
    private readonly deps: {
      jobs: JobRecords;
      publisher: Publisher;
      topology: CellTopology;
      log: Logger;
    },
  ) {}

  /** Records a node's outcome (unless it has one) and publishes the job's progress, and its result once complete. */
  async nodeFinished(jobId: string, outcome: NodeOutcome): Promise<void> {
    const recorded = await this.deps.jobs.recordOutcome(jobId, outcome);
    const status = await this.deps.jobs.status(jobId);
    if (!status) return;
    const kept = recorded ? outcome : status.outcomes.find((o) => o.node === outcome.node);
    await this.publish(jobEvent('job-progress', status, { node: outcome.node, outcome: kept }));
    if (status.state === 'done') await this.publishResult(status);
    this.deps.log.info(
      {
        jobId,
        node: outcome.node,
        outcome: kept?.outcome,
        recorded,
        done: status.nodesDone,
        total: status.nodesTotal,
      },
      'job node finished',
    );
  }

  async publishAccepted(status: JobStatus): Promise<void> {
    await this.publish(jobEvent('job-accepted', status, { nodes: status.outcomes }));
    if (status.state === 'done') await this.publishResult(status);
  }

  async publishResult(status: JobStatus): Promise<void> {
    await this.publish(jobEvent('job-result', status, { nodes: status.outcomes }));
  }

  private async publish(event: JobEvent): Promise<void> {
    await publishRouted(
      this.deps.publisher,
      this.deps.topology.eventsExchange.name,
      jobRoutingKey(event.jobId),
      event,
      {
        messageId: event.jobId,
        persistent: false,
      },
    );
  }
}

export function jobEvent(
  type: JobEvent['type'],
  status: JobStatus,
  extra: Partial<Pick<JobEvent, 'node' | 'outcome' | 'nodes' | 'phase'>> = {},
): JobEvent {
  return {
    v: JOB_MESSAGE_VERSION,
    type,
    jobId: status.record.jobId,
    jobType: status.record.type,
    imageId: status.record.imageId,
    nodesTotal: status.nodesTotal,
    nodesDone: status.nodesDone,
    bytesDone: status.bytesDone,
    ...(status.cancelled ? { cancelled: true } : {}),
    ...extra,
    at: new Date().toISOString(),
  };
}
