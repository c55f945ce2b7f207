import { describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import { passiveChecks } from './topology-keeper';

describe('the passive topology check', () => {
  it("checks each topology's queues, then its events exchange, each with the cause it reports if missing", () => {
    const [a, b] = [cellTopology('cell-a'), cellTopology('cell-b')];
    const checks = passiveChecks([a, b]);
    const names = (t: typeof a) => [
      t.deadLetterQueue.name,
      t.requestQueue.name,
      ...t.retryQueues.map((q) => q.name),
      t.jobQueue.name,
      t.eventsExchange.name,
    ];
    expect(checks.map((c) => c.name)).toEqual([...names(a), ...names(b)]);
    expect(checks[0]).toEqual({
      kind: 'queue',
      name: a.deadLetterQueue.name,
      cause: `passive check: queue ${a.deadLetterQueue.name} not found`,
    });
    expect(checks.filter((c) => c.kind === 'exchange')).toEqual([
      {
        kind: 'exchange',
        name: a.eventsExchange.name,
        cause: `passive check: exchange ${a.eventsExchange.name} not found`,
      },
      {
        kind: 'exchange',
        name: b.eventsExchange.name,
        cause: `passive check: exchange ${b.eventsExchange.name} not found`,
      },
    ]);
  });

  it('no topology, nothing to check', () => {
    expect(passiveChecks([])).toEqual([]);
  });
});
