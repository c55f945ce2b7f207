import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CopyResult } from '@app/contracts';
import { ANSWERS_FOLDER } from './request-answers';
import { useStoreFixture } from './store.fixture';

const result = (requestId: string, overrides: Partial<CopyResult> = {}): CopyResult => ({
  v: 1,
  type: 'result',
  requestId,
  status: 'completed',
  attempt: 1,
  durations: { totalMs: 5 },
  conductorId: 'c-1',
  at: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

describe('RequestAnswers', () => {
  const fx = useStoreFixture();

  it("keeps a request's first final answer: a later one gets the first back", async () => {
    expect(await fx.store.answers.read('req-1')).toBeUndefined();
    expect(await fx.store.answers.record(result('req-1'))).toEqual({ answer: result('req-1'), first: true });
    const late = result('req-1', { status: 'failed', reason: 'CANCELLED', retryable: false });
    expect(await fx.store.answers.record(late)).toEqual({ answer: result('req-1'), first: false });
    expect(await fx.store.answers.read('req-1')).toEqual(result('req-1'));
    expect(await fx.store.answers.read('req-2')).toBeUndefined();
  });

  it('ignores a record that is not a result for its request id', async () => {
    await fx.store.answers.record(result('req-1'));
    const [bucket] = await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER));
    const file = path.join(fx.root, ANSWERS_FOLDER, bucket!, 'req-1.json');
    await fsp.writeFile(file, JSON.stringify(result('req-other')));
    expect(await fx.store.answers.read('req-1')).toBeUndefined();
    await fsp.writeFile(file, '{"v":1');
    expect(await fx.store.answers.read('req-1')).toBeUndefined();
  });

  it('removes the records older than the given age, and only those', async () => {
    await fx.store.answers.record(result('old'));
    await fx.store.answers.record(result('new'));
    const week = 7 * 86_400_000;
    const when = new Date(Date.now() - week - 60_000);
    let aged = 0;
    for (const bucket of await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER))) {
      const old = path.join(fx.root, ANSWERS_FOLDER, bucket, 'old.json');
      if (
        await fsp.utimes(old, when, when).then(
          () => true,
          () => false,
        )
      )
        aged += 1;
    }
    expect(aged).toBe(1);
    expect(await fx.store.answers.removeOlderThan(week)).toBe(1);
    expect(await fx.store.answers.read('old')).toBeUndefined();
    expect(await fx.store.answers.read('new')).toEqual(result('new'));
  });
});
