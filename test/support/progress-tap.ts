import { type ChannelModel, connect } from 'amqplib';
import type { CellTopology } from '@app/contracts';
import { AMQP_URL } from './rabbitmq';

/** A progress event as docs/protocol.md describes it (the fields the tests read). */
export interface ProgressEvent {
  requestId: string;
  phase: string;
  source: string;
  bytesDone: number;
  bytesTotal: number;
  conductorId: string;
}

/**
 * The progress events of one destination node, as a requester follows them (docs/protocol.md, "Progress
 * events"): an exclusive queue of the test's own bound to `progress.<destination>` on the events exchange.
 */
export class ProgressTap {
  readonly events: ProgressEvent[] = [];

  private constructor(private readonly connection: ChannelModel) {}

  static async open(topology: CellTopology, destination: string): Promise<ProgressTap> {
    const connection = await connect(AMQP_URL);
    const tap = new ProgressTap(connection);
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, topology.eventsExchange.name, `progress.${destination}`);
    await channel.consume(
      queue,
      (m) => {
        if (m) tap.events.push(JSON.parse(m.content.toString()) as ProgressEvent);
      },
      { noAck: true },
    );
    return tap;
  }

  /** The most bytes done any event of this request reported (0 before the first). */
  bytesDone(requestId: string): number {
    return Math.max(0, ...this.events.filter((e) => e.requestId === requestId).map((e) => e.bytesDone));
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => undefined);
  }
}
