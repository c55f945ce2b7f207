import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { judgeHoldLogs } from './campaigns/hold-log-judge';
import type { HoldProof } from './support/hosts/hold-logging-conductor';
import { makeTempDir, removeDir } from './support/temp-dirs';

/* The across-hosts campaign's judge of "never two holders" (test/campaigns/hold-log-judge.ts), on logs
 * written the way hold-logging-conductor writes them. */
const proof = (over: Partial<HoldProof>): HoldProof => ({
  event: 'proven',
  node: 'n1',
  imageId: 'img',
  mode: 'exclusive',
  conductorId: 'a',
  attemptId: 'x',
  fencingToken: 1,
  tookOverStale: false,
  monoMs: 0,
  ...over,
});

describe('hold-log judge', () => {
  let dir: string | undefined;
  afterEach(() => removeDir(dir));

  const judge = async (logs: Record<string, HoldProof[]>) => {
    dir = await makeTempDir('holds');
    for (const [name, lines] of Object.entries(logs))
      await fsp.writeFile(
        path.join(dir, `${name}.jsonl`),
        lines.map((l) => JSON.stringify(l) + '\n').join(''),
      );
    return judgeHoldLogs(dir);
  };

  it('finds an exclusive holder that proved its hold after another was granted the key', async () => {
    const verdict = await judge({
      a: [proof({ event: 'granted', monoMs: 100 }), proof({ monoMs: 300 })],
      b: [
        proof({
          event: 'granted',
          conductorId: 'b',
          attemptId: 'y',
          fencingToken: 2,
          tookOverStale: true,
          monoMs: 250,
        }),
      ],
    });
    expect(verdict.overlaps).toHaveLength(1);
    expect(verdict.overlaps[0]!.key).toBe('n1/img');
    expect(verdict.takeovers).toBe(1);
  });

  it('accepts a hand-over, readers side by side, and a writer beside readers of another key', async () => {
    const verdict = await judge({
      a: [proof({ event: 'granted', monoMs: 100 }), proof({ monoMs: 200 })],
      b: [
        proof({ event: 'granted', conductorId: 'b', attemptId: 'y', fencingToken: 2, monoMs: 201 }),
        proof({ mode: 'shared', imageId: 'src', conductorId: 'b', attemptId: 'y', monoMs: 150 }),
      ],
      c: [proof({ mode: 'shared', imageId: 'src', conductorId: 'c', attemptId: 'z', monoMs: 150 })],
    });
    expect(verdict.overlaps).toEqual([]);
    expect(verdict.spans).toBe(4);
  });

  it('finds a writer overlapping a reader of the same key', async () => {
    const verdict = await judge({
      a: [proof({ event: 'granted', monoMs: 100 }), proof({ monoMs: 200 })],
      c: [proof({ mode: 'shared', conductorId: 'c', attemptId: 'z', monoMs: 150 })],
    });
    expect(verdict.overlaps).toHaveLength(1);
  });
});
