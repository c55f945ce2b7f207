import type { Channel } from 'amqplib';
import { type CellTopology, type QueueSpec, cellQueues } from '@app/contracts';

/**
 * Declares every queue and the exchange of a cell. Idempotent: the arguments come from cellTopology() and
 * are the same on every call, which is what RabbitMQ requires of a re-declaration (a different argument
 * closes the channel with PRECONDITION_FAILED - a deployment error we want loud, not papered over).
 * Order matters only for readability of failures: dead-letter targets are declared before their sources.
 */
export async function declareCellTopology(channel: Channel, topology: CellTopology): Promise<void> {
  const declare = async (queue: QueueSpec) => {
    try {
      // Everything goes through `arguments` (not amqplib's messageTtl/deadLetter* shortcuts) so that what
      // is declared is exactly what cellTopology() and docs/protocol.md say.
      await channel.assertQueue(queue.name, { durable: queue.durable, arguments: { ...queue.arguments } });
    } catch (error) {
      throw isPreconditionFailed(error) ? withUpgradeHint(error as Error, queue.name) : error;
    }
  };

  for (const queue of cellQueues(topology)) await declare(queue);
  await channel.assertExchange(topology.eventsExchange.name, topology.eventsExchange.type, {
    durable: topology.eventsExchange.durable,
  });
}

/** AMQP reply code 406 PRECONDITION_FAILED: here, a queue that exists with other arguments. */
function isPreconditionFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 406;
}

/** Same error (code kept), plus what to do: a queue's type and arguments never change in place. */
function withUpgradeHint(error: Error, queue: string): Error {
  const hinted = new Error(
    `${error.message} (queue ${queue} exists with other arguments, e.g. a retry tier declared classic by an ` +
      'older release: see docs/protocol.md, "Upgrading a cell")',
    { cause: error },
  );
  return Object.assign(hinted, { code: 406 });
}
