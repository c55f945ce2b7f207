import { describe, expect, it } from 'vitest';
import { walkNodes } from './node-round';

function logger() {
  const warnings: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  return {
    warnings,
    log: {
      warn: (fields: object, msg: string) =>
        warnings.push({ msg, fields: fields as Record<string, unknown> }),
    },
  };
}

const steps = (log: ReturnType<typeof logger>['log'], signal = new AbortController().signal) => ({
  round: 'test round',
  nodeFailed: 'a node failed',
  log,
  signal,
});

describe('walkNodes', () => {
  it('visits every node in order, records each result and counts the nodes', async () => {
    const { log, warnings } = logger();
    const recorded: string[] = [];
    const walk = await walkNodes({
      ...steps(log),
      listNodes: async () => ['a', 'b', 'c'],
      visit: async (node) => node.toUpperCase(),
      record: (node, result) => recorded.push(`${node}=${result}`),
    });
    expect(recorded).toEqual(['a=A', 'b=B', 'c=C']);
    expect(walk).toMatchObject({ nodes: 3, failed: 0, aborted: false });
    expect(walk.durationMs).toBeGreaterThanOrEqual(0);
    expect(warnings).toEqual([]);
  });

  it('counts a node that throws as failed, logs it, records nothing for it and goes on', async () => {
    const { log, warnings } = logger();
    const recorded: string[] = [];
    const walk = await walkNodes({
      ...steps(log),
      listNodes: async () => ['a', 'broken', 'c'],
      visit: async (node) => {
        if (node === 'broken') throw new Error('EIO');
        return node;
      },
      record: (node) => recorded.push(node),
    });
    expect(recorded).toEqual(['a', 'c']);
    expect(walk).toMatchObject({ nodes: 2, failed: 1, aborted: false });
    expect(warnings).toEqual([{ msg: 'test round: a node failed', fields: { node: 'broken', err: 'EIO' } }]);
  });

  it('is a round over no node when the listing fails, with a warning', async () => {
    const { log, warnings } = logger();
    const visited: string[] = [];
    const walk = await walkNodes({
      ...steps(log),
      listNodes: async () => {
        throw new Error('ENOTCONN');
      },
      visit: async (node) => visited.push(node),
    });
    expect(visited).toEqual([]);
    expect(walk).toMatchObject({ nodes: 0, failed: 0, aborted: false });
    expect(warnings).toEqual([{ msg: 'test round: could not list the nodes', fields: { err: 'ENOTCONN' } }]);
  });

  it('starts no node after the signal aborted; the node running finishes and counts', async () => {
    const { log } = logger();
    const stop = new AbortController();
    const visited: string[] = [];
    const walk = await walkNodes({
      ...steps(log, stop.signal),
      listNodes: async () => ['a', 'b', 'c'],
      visit: async (node) => {
        visited.push(node);
        if (node === 'b') stop.abort();
      },
    });
    expect(visited).toEqual(['a', 'b']);
    expect(walk).toMatchObject({ nodes: 2, failed: 0, aborted: true });
  });
});
