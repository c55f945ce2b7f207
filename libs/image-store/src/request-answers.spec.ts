import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ANSWER_SLOT_MS, ANSWERS_FOLDER, RequestAnswers } from './request-answers';
import { StoreContext } from './store-context';
import { useStoreFixture } from './store.fixture';
import { completedResult } from '../../../test/support/image-store-fixtures';

const result = completedResult;

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
    const buckets = (await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER))).filter((n) => n !== '.by-time');
    const [bucket] = buckets;
    const file = path.join(fx.root, ANSWERS_FOLDER, bucket!, 'req-1.json');
    await fsp.writeFile(file, JSON.stringify(result('req-other')));
    expect(await fx.store.answers.read('req-1')).toBeUndefined();
    await fsp.writeFile(file, '{"v":1');
    expect(await fx.store.answers.read('req-1')).toBeUndefined();
  });

  it('removes the records older than the given age, and only those', async () => {
    const week = 7 * 86_400_000;
    let clock = Date.now() - week - 2 * ANSWER_SLOT_MS;
    const answers = new RequestAnswers(new StoreContext({ root: fx.root }), () => clock);
    await answers.record(result('old'));
    clock = Date.now();
    await answers.record(result('new'));
    // The server sets the mtime; age the old record as its hour in the index says it is.
    const when = new Date(Date.now() - week - 2 * ANSWER_SLOT_MS);
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
    expect(await answers.removeOlderThan(week)).toBe(1);
    expect(await answers.read('old')).toBeUndefined();
    expect(await answers.read('new')).toEqual(result('new'));
    // The expired hour of the index went with its marker; the current one stays.
    expect(await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER, '.by-time'))).toEqual([
      String(Math.floor(clock / ANSWER_SLOT_MS)),
    ]);
  });

  it('a round reads only the expired hours of the index: no record of the kept ones is touched', async () => {
    const day = 86_400_000;
    const answers = new RequestAnswers(new StoreContext({ root: fx.root }), () => Date.now());
    for (let i = 0; i < 20; i++) await answers.record(result(`young-${i}`));
    const stat = vi.spyOn(fsp, 'stat');
    try {
      expect(await answers.removeOlderThan(day)).toBe(0);
      expect(stat).not.toHaveBeenCalled();
    } finally {
      stat.mockRestore();
    }
  });

  it('a record recorded again after its hour keeps its newer marker; a marker without its record goes', async () => {
    const week = 7 * 86_400_000;
    let clock = Date.now() - week - 2 * ANSWER_SLOT_MS;
    const answers = new RequestAnswers(new StoreContext({ root: fx.root }), () => clock);
    await answers.record(result('again'));
    await answers.record(result('crashed-before-record'));
    for (const bucket of await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER)))
      await fsp.rm(path.join(fx.root, ANSWERS_FOLDER, bucket, 'crashed-before-record.json'), { force: true });
    clock = Date.now();
    // Removed by hand meanwhile and recorded again now: young, so the old hour's marker does not take it.
    for (const bucket of await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER)))
      await fsp.rm(path.join(fx.root, ANSWERS_FOLDER, bucket, 'again.json'), { force: true });
    await answers.record(result('again', { attempt: 2 }));
    expect(await answers.removeOlderThan(week)).toBe(0);
    expect(await answers.read('again')).toEqual(result('again', { attempt: 2 }));
    expect(await fsp.readdir(path.join(fx.root, ANSWERS_FOLDER, '.by-time'))).toEqual([
      String(Math.floor(clock / ANSWER_SLOT_MS)),
    ]);
  });
});
