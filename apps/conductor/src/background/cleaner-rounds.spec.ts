import { describe, expect, it } from 'vitest';
import type { CleanOptions, CleanReport } from '@app/cache-cleaner';
import { CleanerRounds } from './cleaner-rounds';
import { RoundFsOps } from './round-fs-ops';
import { sleep } from '../../../../test/support/async';

function report(node: string, deleted: string[] = []): CleanReport {
  return {
    node,
    dryRun: false,
    startedAt: new Date().toISOString(),
    durationMs: 1,
    policy: { maxUnusedMs: 0, graceMs: 0, lockWaitMs: 1 },
    examined: deleted.length,
    deleted: deleted.map((imageId) => ({ imageId, size: 10, why: 'unused' as const })),
    keptPinned: [],
    skippedBusy: [],
    keptChanged: [],
    errors: [],
    tmpSwept: 0,
    litterRemoved: [],
    bytesBefore: 10 * deleted.length,
    bytesFreed: 10 * deleted.length,
    bytesAfter: 0,
    overBudget: false,
    aborted: false,
  };
}

/** A cleaner that takes `ms` per node and records how many runs overlap. */
function slowCleaner(ms: number, deleted: Record<string, string[]> = {}) {
  const calls: string[] = [];
  let running = 0;
  let maxRunning = 0;
  return {
    calls,
    maxRunning: () => maxRunning,
    clean: async (node: string, options: CleanOptions = {}) => {
      calls.push(node);
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        if (node === 'broken') throw new Error('EIO');
        for (let t = 0; t < ms; t += 5) {
          if (options.signal?.aborted) return { ...report(node), aborted: true };
          await sleep(5);
        }
        return report(node, deleted[node]);
      } finally {
        running--;
      }
    },
  };
}

function logger() {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: object, msg: string) =>
    lines.push({ level, msg, fields: fields as Record<string, unknown> });
  return { lines, log: { info: at('info'), warn: at('warn'), debug: at('debug') } };
}

describe('CleanerRounds', () => {
  it('cleans every node each interval, one round at a time, and tells what it deleted', async () => {
    const cleaner = slowCleaner(20, { 'node-a': ['img-1'] });
    const { lines, log } = logger();
    const forgotten: string[] = [];
    const schedule = new CleanerRounds(cleaner, {
      enabled: true,
      intervalMs: 10,
      listNodes: async () => ['node-a', 'broken', 'node-b'],
      onDeleted: (n, i) => forgotten.push(`${n}/${i}`),
      log,
    });
    schedule.start();
    schedule.start(); // idempotent
    const joined = [schedule.runOnce(), schedule.runOnce()];
    expect(joined[0]).toBe(joined[1]); // a round asked for during a round is that round
    // Rounds keep coming on the interval (however slowly a loaded machine runs them).
    for (let i = 0; schedule.rounds < 3 && i < 500; i++) await sleep(20);
    await schedule.stop();
    expect(schedule.rounds).toBeGreaterThanOrEqual(3);
    expect(cleaner.maxRunning()).toBe(1);
    expect(cleaner.calls.slice(0, 3)).toEqual(['node-a', 'broken', 'node-b']);
    expect(forgotten[0]).toBe('node-a/img-1');
    expect(lines.find((l) => l.msg.startsWith('cache cleaned: node node-a'))).toMatchObject({
      level: 'info',
      fields: { deleted: [{ imageId: 'img-1', size: 10, why: 'unused' }] },
    });
    expect(lines.find((l) => l.msg.startsWith('cache cleaned: node node-b'))?.level).toBe('debug');
    expect(lines.find((l) => l.level === 'warn')).toMatchObject({
      msg: 'cache cleaner: cleaning a node failed',
      fields: { node: 'broken', err: 'EIO' },
    });
    const rounds = schedule.rounds;
    await sleep(50);
    expect(schedule.rounds).toBe(rounds); // stopped: no more rounds
  });

  it('stop() aborts a running round and waits for it', async () => {
    const cleaner = slowCleaner(5_000);
    const { lines, log } = logger();
    const schedule = new CleanerRounds(cleaner, {
      enabled: true,
      intervalMs: 60_000,
      listNodes: async () => ['a', 'b', 'c'],
      log,
    });
    const round = schedule.runOnce();
    await sleep(30);
    const started = Date.now();
    await schedule.stop();
    expect(Date.now() - started).toBeLessThan(5_000); // did not wait for the slow node to finish
    expect((await round).nodes).toBe(1);
    expect(cleaner.calls).toEqual(['a']);
    expect(lines.at(-1)).toMatchObject({ msg: 'cache cleaning round done', fields: { aborted: true } });
  });

  it('counts each round’s calls through its seams: the listing of the nodes, the store the cleaner was given', async () => {
    const fsOps = new RoundFsOps();
    const store = fsOps.parts(
      {
        root: '/cache',
        entries: { listEntries: async (_node: string) => [] },
        markers: { listPinned: async (_node: string) => [] },
      },
      ['entries', 'markers'],
    );
    const cleaner = {
      clean: async (node: string) => {
        expect(store.root).toBe('/cache'); // not a call
        await store.entries.listEntries(node);
        await store.markers.listPinned(node);
        return report(node);
      },
    };
    const { log } = logger();
    const schedule = new CleanerRounds(cleaner, {
      enabled: true,
      intervalMs: 60_000,
      listNodes: async () => ['a', 'b', 'c'],
      log,
      fsOps,
    });
    expect((await schedule.runOnce()).fsOps).toBe(1 + 3 * 2);
    expect(schedule.view().lastRound?.fsOps).toBe(7);
    await store.entries.listEntries('x'); // between rounds: not the next round's
    expect((await schedule.runOnce()).fsOps).toBe(7);
  });

  it('does nothing when disabled (the default)', async () => {
    const cleaner = slowCleaner(1);
    const { lines, log } = logger();
    const schedule = new CleanerRounds(cleaner, {
      enabled: false,
      intervalMs: 1,
      listNodes: async () => ['a'],
      log,
    });
    schedule.start();
    await sleep(30);
    await schedule.stop();
    expect(cleaner.calls).toEqual([]);
    expect(lines).toEqual([]);
  });
});
