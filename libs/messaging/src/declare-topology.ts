import type { Channel } from 'amqplib';
import { type CellTopology, type QueueSpec, cellQueues } from '@app/contracts';

/**
 * Declares every queue and the exchange of a cell. Idempotent: the arguments come from cellTopology() and
 * are the same on every call, which is what RabbitMQ requires of a re-declaration (a different argument
 * closes the channel with PRECONDITION_FAILED - a deployment error we want loud, not papered over).
 * Order matters only for readability of failures: dead-letter targets are declared before their sources.
 */
export async function declareCellTopology(channel: Channel, topology: CellTopology): Promise<void> {
  const declare = (queue: QueueSpec) =>
    // Everything goes through `arguments` (not amqplib's messageTtl/deadLetter* shortcuts) so that what
    // is declared is exactly what cellTopology() and docs/protocol.md say.
    channel.assertQueue(queue.name, { durable: queue.durable, arguments: { ...queue.arguments } });

  for (const queue of cellQueues(topology)) await declare(queue);
  await channel.assertExchange(topology.eventsExchange.name, topology.eventsExchange.type, {
    durable: topology.eventsExchange.durable,
  });
}
