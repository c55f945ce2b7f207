import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { exists, rejectionOf } from '../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { PartialReads } from './partial-reads';
import { StoreContext } from './store-context';

/** A promise the test settles. */
function gate() {
  let open: () => void = () => undefined;
  let fail: (error: Error) => void = () => undefined;
  const closed = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { closed, open, fail };
}

/** Whether `promise` has settled once the microtasks and timers due now have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

/** Whether `promise` settles within `ms` of real time, fake timers standing still (setImmediate is real). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  const end = performance.now() + ms;
  while (!done && performance.now() < end) await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('reads of partial files in this process (PartialReads)', () => {
  beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }));
  afterEach(() => vi.useRealTimers());

  it('counts the reads of each file while they run, failed ones included', async () => {
    const reads = new PartialReads();
    const first = gate();
    const second = gate();
    const a = reads.track('/p/a', () => first.closed.then(() => 'a'));
    const b = reads.track('/p/a', () => second.closed);
    expect([reads.count('/p/a'), reads.count('/p/b')]).toEqual([2, 0]);
    first.open();
    expect(await a).toBe('a');
    expect(reads.count('/p/a')).toBe(1);
    second.fail(new Error('EIO'));
    expect(await rejectionOf(b)).toEqual(new Error('EIO'));
    expect(reads.count('/p/a')).toBe(0);
  });

  it('idle waits until every read of the file ended, not for other files', async () => {
    const reads = new PartialReads();
    const first = gate();
    const second = gate();
    const a1 = reads.track('/p/a', () => first.closed);
    const a2 = reads.track('/p/a', () => second.closed);
    expect(await settled(reads.idle('/p/b', 10_000))).toBe(true);
    const idle = reads.idle('/p/a', 10_000);
    first.open();
    await a1;
    expect(await settled(idle)).toBe(false);
    second.open();
    await a2;
    expect(await settled(idle)).toBe(true);
  });

  it('idle gives up after maxMs: a stuck read does not stop a removal', async () => {
    const reads = new PartialReads();
    void reads.track('/p/a', () => new Promise(() => undefined));
    const idle = reads.idle('/p/a', 10_000);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(await settled(idle)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(idle)).toBe(true);
  });
});

describe('StoreContext.discard and the reads of the partial it removes', () => {
  let root: string;
  let store: StoreContext;
  let file: string;
  let warnings: string[];
  beforeEach(async () => {
    root = await makeTempDir('partial-reads');
    warnings = [];
    store = new StoreContext({ root, fsync: false, onWarning: (m) => warnings.push(m) });
    file = path.join(root, 'ubuntu-24.04.qcow2~attempt-1.part');
    await fsp.writeFile(file, 'partial bytes');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(async () => {
    vi.useRealTimers();
    await removeDir(root);
    expect(warnings).toEqual([]);
  });

  it('removes a partial nobody here reads at once', async () => {
    // No timer is advanced: a removal that waited for one would not end.
    expect(await settlesWithin(store.discard(file), 1_000)).toBe(true);
    expect(await exists(file)).toBe(false);
  });

  it('removes a partial read here once the read ended', async () => {
    const read = gate();
    const reading = store.partialReads.track(file, () => read.closed);
    const discard = store.discard(file);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await settlesWithin(discard, 50)).toBe(false);
    expect(await exists(file)).toBe(true);
    read.open();
    await reading;
    expect(await settlesWithin(discard, 1_000)).toBe(true);
    expect(await exists(file)).toBe(false);
  });

  it('removes it after 10 s when the read never ends', async () => {
    void store.partialReads.track(file, () => new Promise(() => undefined));
    const discard = store.discard(file);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(await settlesWithin(discard, 50)).toBe(false);
    expect(await exists(file)).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settlesWithin(discard, 1_000)).toBe(true);
    expect(await exists(file)).toBe(false);
  });

  it('does not wait for reads of another file', async () => {
    void store.partialReads.track(`${file}.other`, () => new Promise(() => undefined));
    expect(await settlesWithin(store.discard(file), 1_000)).toBe(true);
    expect(await exists(file)).toBe(false);
  });
});
