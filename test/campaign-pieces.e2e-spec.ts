import { describe, expect, it } from 'vitest';
import { Cleanups, campaignRun, runAndReport } from './campaigns/campaign-kit';
import { piecesTestTimeoutMs, runPiecesCampaign } from './campaigns/pieces';
import { PIECE_FAULT_KINDS } from './campaigns/pieces-strikes';
import { conductorPool } from './support/conductor-harness';

/*
 * The pieces campaign (issue 27): fan-outs whose copies read verified pieces from each other's partial
 * files, with conductors SIGKILLed and SIGSTOPped past the stale time, running copies cancelled and
 * announced pieces of a copy in progress damaged on disk. CI size here; `npm run campaign -- --only pieces`
 * runs it large. Replay: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-pieces
 */
const run = campaignRun('pieces');

describe('campaign: pieces (fan-outs from copies in progress, with kills, pauses, cancels and damaged partials)', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(() => cleanups.run(), 120_000);

  it(
    'verifies every destination, answers every request and job once and consistently, and leaves nothing once idle',
    async () => {
      const outcome = await runAndReport(run, () => runPiecesCampaign(run, pool, cleanups));
      expect(outcome.violations).toEqual([]);
      const faults = outcome.figures.faults as Record<string, number>;
      // Every kind of fault struck mid-fan-out at least once (a miss is also a violation above).
      for (const kind of PIECE_FAULT_KINDS) expect(faults[kind] ?? 0).toBeGreaterThanOrEqual(1);
      // The copies did read from each other, not only from the verified source.
      const pieces = outcome.figures.pieces as { fromCopiesInProgress: number };
      expect(pieces.fromCopiesInProgress).toBeGreaterThan(0);
      expect(outcome.figures.corrupt).toBe(0);
    },
    piecesTestTimeoutMs(run),
  );
});
