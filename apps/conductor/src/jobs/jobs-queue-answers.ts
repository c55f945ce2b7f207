import { type CellTopology, type Logger, errorText, jobRoutingKey, replyToProblem } from '@app/contracts';
import { type Delivery, type Publisher, publishRouted, publishToDeadLetter } from '@app/messaging';
import { type Refusal, jobRefusal } from './jobs-queue-admission';

export interface JobsQueueAnswerDeps {
  publisher: Publisher;
  topology: CellTopology;
  conductorId: string;
  log: Logger;
}

/** Sends `body` to the message's reply_to, if it has a usable one; a reply that is lost is only logged. */
export async function reply(
  deps: Pick<JobsQueueAnswerDeps, 'publisher' | 'log'>,
  delivery: Delivery,
  body: object,
): Promise<void> {
  const replyTo = delivery.properties.replyTo as string | undefined;
  if (!replyTo || replyToProblem(replyTo)) return;
  await deps.publisher
    .sendToQueue(replyTo, body, {
      correlationId: delivery.properties.correlationId as string | undefined,
      persistent: false,
    })
    .catch((error: unknown) =>
      deps.log.warn({ replyTo, err: errorText(error) }, 'jobs-queue answer not delivered to reply_to'),
    );
}

/**
 * Carries a refusal out: the job-refused answer on job.<jobId> (when the id is known) and on reply_to,
 * the message to the dead letters with the reason, then the ack.
 */
export async function refuse(deps: JobsQueueAnswerDeps, delivery: Delivery, refusal: Refusal): Promise<void> {
  const { jobId, reason, detail } = refusal;
  const body = jobRefusal(refusal, deps.conductorId, new Date().toISOString());
  if (jobId)
    await publishRouted(deps.publisher, deps.topology.eventsExchange.name, jobRoutingKey(jobId), body, {
      persistent: false,
    });
  await reply(deps, delivery, body);
  await publishToDeadLetter(deps.publisher, deps.topology, delivery.message, {
    reason,
    detail,
    attempt: 1,
  });
  delivery.ack();
  deps.log.warn({ jobId, reason, detail }, 'jobs-queue message refused and dead-lettered');
}
