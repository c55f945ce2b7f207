import { describe, expect, it } from 'vitest';
import { Deadline } from './deadline';

const KEYS = [
  { node: 'n1', imageId: 'a', mode: 'shared' as const },
  { node: 'n2', imageId: 'b', mode: 'exclusive' as const },
];

describe('Deadline', () => {
  it('is not over before its time', () => {
    const deadline = new Deadline(1_000, undefined, KEYS);
    expect(deadline.signal.aborted).toBe(false);
    expect(() => deadline.throwIfOver()).not.toThrow();
    deadline.dispose();
  });

  it('ends in a retryable LOCK_TIMEOUT that names every lock it waited for', async () => {
    const deadline = new Deadline(10, undefined, KEYS);
    await new Promise((r) => setTimeout(r, 40));
    expect(deadline.signal.aborted).toBe(true);
    expect(() => deadline.throwIfOver()).toThrow(
      expect.objectContaining({
        code: 'LOCK_TIMEOUT',
        retryable: true,
        message: 'waited 10 ms for locks (shared n1/a, exclusive n2/b)',
      }),
    );
  });

  it('names the lock and the step it was still waiting at', async () => {
    const deadline = new Deadline(10, undefined, KEYS);
    deadline.waitingAt(KEYS[0]!, 'turn in this process');
    deadline.waitingAt(KEYS[1]!, 'readers to leave');
    await new Promise((r) => setTimeout(r, 40));
    expect(() => deadline.throwIfOver()).toThrow(
      'waited 10 ms for locks (shared n1/a, exclusive n2/b); still waiting for n2/b: readers to leave',
    );
  });

  it("ends at once with the caller's own abort, with the caller's reason", () => {
    const outer = new AbortController();
    const deadline = new Deadline(60_000, outer.signal, KEYS);
    outer.abort(new Error('shutting down'));
    expect(() => deadline.throwIfOver()).toThrow('shutting down');
    deadline.dispose();
  });

  it('never fires once disposed', async () => {
    const deadline = new Deadline(10, undefined, KEYS);
    deadline.dispose();
    await new Promise((r) => setTimeout(r, 40));
    expect(deadline.signal.aborted).toBe(false);
  });
});
