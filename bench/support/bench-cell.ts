/*
 * What the end-to-end benchmarks share: a temporary cell (test/support/test-cell.ts), conductors as real
 * processes, a plain amqplib requester, results written to bench/results/<name>.json.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ChildProcessPool } from '../../test/support/child-processes';
import { ConductorProcess } from '../../test/support/conductor-process';
import { RawAmqpClient } from '../../test/support/raw-amqp-client';
import { TestCell } from '../../test/support/test-cell';

export { RawAmqpClient, TestCell };

export const RESULTS_DIR = path.resolve(__dirname, '..', '..', '..', 'bench', 'results');

export async function writeResults(name: string, report: unknown): Promise<string> {
  await fsp.mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  await fsp.writeFile(file, JSON.stringify(report, null, 2));
  return file;
}

/** Runs `fn` with a fresh cell and a pool of conductor processes, and cleans both up. */
export async function withCell<T>(
  nodes: string[],
  fn: (cell: TestCell, startConductor: (env?: Record<string, string>) => Promise<ConductorProcess>) => Promise<T>,
): Promise<T> {
  const cell = await TestCell.create({ nodes });
  const pool = new ChildProcessPool<unknown>();
  try {
    return await fn(cell, async (env = {}) =>
      ConductorProcess.start(pool, cell.conductorEnv({ LOCK_STALE_MS: '20000', LOCK_UPDATE_MS: '4000', LOCK_SAFETY_MARGIN_MS: '5000', ...env })).ready(),
    );
  } finally {
    await pool.killAll();
    await cell.cleanup();
  }
}

/** Publishes `bodies` and resolves when every one has a final reply; returns the elapsed ms. */
export async function requestAll(client: RawAmqpClient, queue: string, bodies: object[], timeoutMs = 600_000): Promise<{ ms: number; replies: Record<string, unknown>[] }> {
  const started = performance.now();
  const ids = bodies.map((b) => client.send(queue, b));
  const replies: Record<string, unknown>[] = [];
  for (const id of ids) replies.push(await client.finalReply(id, timeoutMs));
  return { ms: performance.now() - started, replies };
}
