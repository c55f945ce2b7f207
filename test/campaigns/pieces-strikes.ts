import { performance } from 'node:perf_hooks';
import { sleep } from '../support/async';
import { publishConfirmed } from '../support/conductor-harness';
import type { Rng } from './campaign-kit';
import type { ConductorFleet, FleetMember } from './conductor-fleet';
import {
  type CopyInProgress,
  type Damage,
  copiesInProgress,
  damagePartial,
  midPiece,
  partialPath,
  withHolders,
} from './pieces-cell';

/*
 * The faults of the pieces campaign (pieces.ts), each struck while copies of the round's image are
 * mid-fan-out: some copy in progress has announced some of its pieces but not all (its record says so).
 */

export type PieceFaultKind = 'kill' | 'pause' | 'cancel' | 'damage';
export const PIECE_FAULT_KINDS: readonly PieceFaultKind[] = ['kill', 'pause', 'cancel', 'damage'];

export interface PieceFaultRecord {
  kind: PieceFaultKind;
  round: number;
  atMs: number;
  /** The conductor struck (kill, pause), or that ran the copy cancelled or damaged. */
  conductor?: string;
  /** The copy cancelled or damaged (its destination), and the request that asked for it. */
  node?: string;
  requestId?: string;
  /** Copies in progress of the image when it struck, and the pieces they had announced together. */
  copiesInProgress: number;
  piecesAnnounced: number;
  pauseMs?: number;
  replacement?: string;
  damage?: Damage;
}

export interface StrikeContext {
  root: string;
  /**
   * CACHE_ROOT as conductor `id` sees it (its own client's mount on a bed). A partial is damaged through
   * its writer's client: through another ceph-fuse client, the reads left stale pages there (the oracle
   * then read old bytes of the published image) and the writer's page cache could keep the undamaged
   * bytes it hashes (docs/copies.md, "Read past the page cache on ceph-fuse").
   */
  rootOf: (id: string) => string;
  staleMs: number;
  imageId: string;
  digests: string[];
  fleet: ConductorFleet;
  rng: Rng;
  /** The request that asks for `node` in this round. */
  requestOf: (node: string) => string;
  jobQueue: string;
  /** Starts a conductor in place of a killed one. */
  replace: () => Promise<FleetMember>;
  elapsed: () => number;
  round: number;
}

/**
 * Waits (up to `waitMs`) for a moment mid-fan-out that suits `kind` and strikes; undefined when none came
 * (the fan-out ended first: the caller carries the fault over to the next round).
 */
export async function strike(
  kind: PieceFaultKind,
  ctx: StrikeContext,
  waitMs: number,
): Promise<PieceFaultRecord | undefined> {
  const deadline = performance.now() + waitMs;
  while (performance.now() < deadline) {
    const live = ctx.fleet.live();
    const copies = (
      await withHolders(
        ctx.root,
        ctx.staleMs,
        ctx.imageId,
        midPiece(await copiesInProgress(ctx.root, ctx.imageId)),
      )
    ).filter((c) => live.some((m) => m.id === c.conductorId));
    if (copies.length > 0) {
      const done = await strikeOn(kind, ctx, copies, live);
      if (done) return done;
    }
    await sleep(30);
  }
  return undefined;
}

async function strikeOn(
  kind: PieceFaultKind,
  ctx: StrikeContext,
  copies: CopyInProgress[],
  live: FleetMember[],
): Promise<PieceFaultRecord | undefined> {
  const base = {
    kind,
    round: ctx.round,
    atMs: ctx.elapsed(),
    copiesInProgress: copies.length,
    piecesAnnounced: copies.reduce((n, c) => n + c.announced.length, 0),
  };
  const memberOf = (c: CopyInProgress) => live.find((m) => m.id === c.conductorId)!;
  if (kind === 'kill' || kind === 'pause') {
    // Never the last live conductor: someone must go on with the fan-out.
    if (live.length < 2) return undefined;
    const victim = memberOf(ctx.rng.pick(copies));
    if (kind === 'kill') {
      await ctx.fleet.kill(victim);
      await sleep(ctx.rng.int(100, 800));
      return { ...base, conductor: victim.id, replacement: (await ctx.replace()).id };
    }
    const pauseMs = ctx.staleMs + ctx.rng.int(600, 1_600);
    ctx.fleet.pause(victim);
    try {
      await sleep(pauseMs);
    } finally {
      ctx.fleet.resume(victim);
    }
    return { ...base, conductor: victim.id, pauseMs };
  }
  if (kind === 'cancel') {
    // The copy with the most pieces announced: the likeliest to have readers now.
    const most = Math.max(...copies.map((c) => c.announced.length));
    const copy = ctx.rng.pick(copies.filter((c) => c.announced.length === most));
    const requestId = ctx.requestOf(copy.node);
    await publishConfirmed(ctx.jobQueue, [{ body: { v: 1, type: 'cancel', requestId } }]);
    return { ...base, conductor: copy.conductorId, node: copy.node, requestId };
  }
  // Damage: the copy's conductor is frozen while its partial is looked at and flipped (a few hundred ms
  // at most, far inside the lock's trust window), so that nothing on disk moves meanwhile.
  for (const copy of ctx.rng.shuffle([...copies])) {
    const member = memberOf(copy);
    ctx.fleet.pause(member);
    let damage: Damage | string;
    try {
      damage = await damagePartial(
        partialPath(ctx.rootOf(member.id), copy.node, ctx.imageId, copy.attemptId),
        copy,
        ctx.digests,
        3,
        (candidates) => ctx.rng.pick(candidates),
        (length) => ctx.rng.int(0, length - 1),
      );
    } finally {
      ctx.fleet.resume(member, false);
    }
    if (typeof damage === 'string') continue;
    return {
      ...base,
      conductor: member.id,
      node: copy.node,
      requestId: ctx.requestOf(copy.node),
      damage,
    };
  }
  return undefined;
}
