import { afterEach, beforeEach } from 'vitest';
import { type CellTopology, type CellTopologyOptions, cellTopology } from '@app/contracts';
import { BrokerConnection, type BrokerConnectionOptions } from '@app/messaging';
import { AMQP_URL, deleteCellTopology, requireRabbitMq, uniqueCellId } from './rabbitmq';
import { recordingLogger } from './recording-logger';

export interface BrokerTestCell {
  cellId: string;
  topology: CellTopology;
  /** Run after the test, last added first, before the cell's queues are deleted. */
  closers: (() => Promise<void>)[];
}

/**
 * A fresh cell on the real broker for every test of the file: `onCell` is told the new one before each
 * test; after it, its closers run and its queues are deleted. In beforeEach, not beforeAll: vitest marks
 * tests "skipped" when beforeAll fails, and with the broker down these must fail.
 */
export function useBrokerTestCell(
  options: CellTopologyOptions | undefined,
  onCell: (cell: BrokerTestCell) => void,
): void {
  let cell: BrokerTestCell | undefined;
  beforeEach(async () => {
    cell = undefined;
    await requireRabbitMq();
    const cellId = uniqueCellId();
    cell = { cellId, topology: cellTopology(cellId, options), closers: [] };
    onCell(cell);
  });
  afterEach(async () => {
    if (!cell) return; // the broker was down: nothing was created
    for (const close of cell.closers.reverse()) await close();
    await deleteCellTopology(cell.cellId, options);
  });
}

/**
 * A started connection to the test broker that declares the cell's topology, closed after the test, with a
 * logger that records what it says; `options` override any of that.
 */
export function startCellConnection(cell: BrokerTestCell, options: Partial<BrokerConnectionOptions> = {}) {
  const logger = recordingLogger();
  const connection = new BrokerConnection({
    url: AMQP_URL,
    connectionName: `icc-test-${cell.cellId}`,
    topologies: [cell.topology],
    logger,
    ...options,
  }).start();
  cell.closers.push(() => connection.close());
  return { connection, logger };
}
