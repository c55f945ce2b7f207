import { describe, expect, it } from 'vitest';
import {
  attemptFromHeaders,
  cellTopology,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_RETRY_DELAYS_MS,
  progressRoutingKey,
  replyToProblem,
  resultRoutingKey,
  retryQueueFor,
} from './cell-topology';

describe('cellTopology', () => {
  it('names everything of a cell', () => {
    const t = cellTopology('cell-1');
    expect(t.requestQueue).toEqual({
      name: 'icc.cell-1.requests',
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': DEFAULT_DELIVERY_LIMIT,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'icc.cell-1.dead',
      },
    });
    expect(t.retryQueues.map((q) => q.name)).toEqual(
      DEFAULT_RETRY_DELAYS_MS.map((d) => `icc.cell-1.retry.${d}ms`),
    );
    for (const q of t.retryQueues) {
      expect(q.arguments).toEqual({
        'x-queue-type': 'quorum',
        'x-message-ttl': q.delayMs,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'icc.cell-1.requests',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      });
    }
    expect(t.deadLetterQueue).toEqual({
      name: 'icc.cell-1.dead',
      durable: true,
      arguments: { 'x-queue-type': 'quorum' },
    });
    expect(t.eventsExchange).toEqual({ name: 'icc.cell-1.events', type: 'topic', durable: true });
    expect(t.maxAttempts).toBe(DEFAULT_MAX_ATTEMPTS);
    expect(resultRoutingKey('already-present')).toBe('result.already-present');
    expect(progressRoutingKey('node-b')).toBe('progress.node-b');
  });

  it('is deterministic, so re-declaring is idempotent', () => {
    expect(cellTopology('c')).toEqual(cellTopology('c'));
  });

  it('rejects unsafe cell ids and bad options', () => {
    expect(() => cellTopology('../x')).toThrow(/^cellId: /);
    expect(() => cellTopology('c', { retryDelaysMs: [5000, 1000] })).toThrow('strictly ascending');
    expect(() => cellTopology('c', { retryDelaysMs: [] })).toThrow('at least one delay');
  });

  it('picks the delay tier per failed attempt, repeating the last', () => {
    const t = cellTopology('c', { retryDelaysMs: [10, 20] });
    expect([0, 1, 2, 3, 9].map((a) => retryQueueFor(t, a).delayMs)).toEqual([10, 10, 20, 20, 20]);
  });

  it("refuses a reply_to among any cell's own queues, and only those", () => {
    const t = cellTopology('c', { retryDelaysMs: [10] });
    for (const own of [
      t.requestQueue.name,
      t.deadLetterQueue.name,
      t.retryQueues[0]!.name,
      'icc.other-cell.requests',
    ])
      expect(replyToProblem(own), own).toMatch(/^reply_to: names .*"icc\." namespace/);
    for (const fine of ['amq.gen-JzTY20BRgKO-HjmUJj0wLg', 'agent-7.replies', 'icc-replies'])
      expect(replyToProblem(fine), fine).toBeUndefined();
  });

  it('reads the attempt header defensively', () => {
    expect(attemptFromHeaders(undefined)).toBe(1);
    expect(attemptFromHeaders({ 'x-icc-attempt': 3 })).toBe(3);
    expect(attemptFromHeaders({ 'x-icc-attempt': '4' })).toBe(4);
    expect(attemptFromHeaders({ 'x-icc-attempt': 0 })).toBe(1);
    expect(attemptFromHeaders({ 'x-icc-attempt': 'x' })).toBe(1);
  });
});
