import { performance } from 'node:perf_hooks';
import { type Logger, errorText } from '@app/contracts';

/** What a walk over the cell's nodes did (a background round adds its own counts beside these). */
export interface NodeWalk {
  /** Nodes visited to the end. */
  nodes: number;
  /** Nodes whose visit threw (each logged). */
  failed: number;
  /** The whole walk, listing included. */
  durationMs: number;
  /** The signal aborted the walk: the nodes after the current one were left for the next round. */
  aborted: boolean;
}

export interface NodeWalkSteps<T> {
  /** Names the round in its log lines ('cache cleaner', 'leftover sweep'). */
  round: string;
  /** The warning logged when a node's visit throws, after `<round>: `. */
  nodeFailed: string;
  /** The nodes of the cell. */
  listNodes: () => Promise<string[]>;
  log: Pick<Logger, 'warn'>;
  /** Aborted by stop(): no node is started after it, the current one sees it. */
  signal: AbortSignal;
  /** One node's work; a throw counts the node as failed and the walk goes on. */
  visit: (node: string) => Promise<T>;
  /** What a round does with a visit's result; runs outside the visit's error handling. */
  record?: (node: string, result: T) => void;
}

/**
 * The per-node loop of the cell-wide background rounds (the cache cleaner, the leftover sweep): one node
 * after another. A node listing that fails is a
 * round over no node and a node that fails does not stop the others: each is logged and the next round
 * tries again. Never throws of its own (RoundSchedule needs rounds that never reject).
 */
export async function walkNodes<T>(steps: NodeWalkSteps<T>): Promise<NodeWalk> {
  const started = performance.now();
  const walk: NodeWalk = { nodes: 0, failed: 0, durationMs: 0, aborted: false };
  const { log, signal } = steps;
  let nodes: string[] = [];
  try {
    nodes = await steps.listNodes();
  } catch (error) {
    log.warn({ err: errorText(error) }, `${steps.round}: could not list the nodes`);
  }
  for (const node of nodes) {
    if (signal.aborted) break;
    let result: T;
    try {
      result = await steps.visit(node);
    } catch (error) {
      walk.failed += 1;
      log.warn({ node, err: errorText(error) }, `${steps.round}: ${steps.nodeFailed}`);
      continue;
    }
    walk.nodes += 1;
    steps.record?.(node, result);
  }
  walk.durationMs = Math.round(performance.now() - started);
  walk.aborted = signal.aborted;
  return walk;
}
