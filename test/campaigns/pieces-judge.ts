import type { JobStatus } from '@app/image-store';
import type { Result, ResultsTap } from '../support/conductor-harness';
import type { ConductorProcess } from '../support/conductor-process';
import { tally } from './campaign-kit';
import type { JobEventsTap } from './pieces-cell';
import type { PieceFaultRecord } from './pieces-strikes';

/*
 * The answer oracles and the piece figures of the pieces campaign (pieces.ts).
 */

const SUCCESS = new Set(['completed', 'already-present']);

export interface RoundAnswers {
  round: number;
  kind: 'job' | 'requests';
  jobId: string;
  requestOf: (node: string) => string;
  destinations: string[];
  faults: PieceFaultRecord[];
  tap: ResultsTap;
  finals: Map<string, Result>;
  againFinals: Map<string, Result>;
  job: JobStatus | undefined;
  jobTap: JobEventsTap;
}

/**
 * The failures the faults may cause to the copy they struck: cancelled. A copy whose own partial was
 * damaged fails that attempt retryably (IO_ERROR) and is copied again: its answer is a success.
 */
function allowedFailures(faults: PieceFaultRecord[], requestId: string): string[] {
  return faults
    .filter((f) => f.requestId === requestId)
    .flatMap((f) => (f.kind === 'cancel' ? ['CANCELLED'] : []));
}

/**
 * One round's answers: every request's final answers agree; each succeeded, or failed as the fault that
 * struck its copy explains (and was then asked again, successfully); a job's node outcomes are each the
 * answer of that node's request, and every job-result event of the job lists the same outcomes.
 */
export function judgeRound(r: RoundAnswers, violations: string[]): void {
  for (const node of r.destinations) {
    const id = r.requestOf(node);
    const answers = r.tap.of(id).filter((x) => x.retryable !== true);
    const kinds = new Set(
      answers.map((x) => (x.status === 'failed' ? `failed:${String(x.reason)}` : 'success')),
    );
    if (kinds.size > 1) violations.push(`request ${id}: final answers disagree: ${[...kinds].join(', ')}`);
    const final = r.finals.get(id);
    if (final?.status === 'failed' && !allowedFailures(r.faults, id).includes(String(final.reason)))
      violations.push(`request ${id} failed: ${String(final.reason)} ${String(final.detail)}`);
    if (r.job) {
      const outcomes = r.job.outcomes.filter((o) => o.node === node);
      if (outcomes.length !== 1) violations.push(`job ${r.jobId}: ${outcomes.length} outcomes for ${node}`);
      const o = outcomes[0];
      const agrees =
        final === undefined ||
        o === undefined ||
        (SUCCESS.has(final.status)
          ? SUCCESS.has(o.outcome)
          : final.reason === 'CANCELLED'
            ? o.outcome === 'cancelled'
            : o.outcome === 'failed' && o.reason === final.reason);
      if (!agrees)
        violations.push(
          `job ${r.jobId}: ${node}'s outcome ${o!.outcome}${o!.reason ? ` (${o!.reason})` : ''} but its request was answered ${final!.status} ${String(final!.reason ?? '')}`,
        );
    }
  }
  for (const [id, final] of r.againFinals)
    if (!SUCCESS.has(final.status))
      violations.push(`request ${id} (asked again) failed: ${String(final.reason)} ${String(final.detail)}`);
  if (r.kind === 'job') {
    const results = r.jobTap.results(r.jobId);
    if (results.length === 0) violations.push(`job ${r.jobId}: no job-result event`);
    const shapes = new Set(
      results.map((e) =>
        JSON.stringify((e.nodes ?? []).map((n) => `${n.node}:${n.outcome}:${n.reason ?? ''}`).sort()),
      ),
    );
    if (shapes.size > 1)
      violations.push(`job ${r.jobId}: job-result events disagree: ${[...shapes].join(' / ')}`);
  }
}

/**
 * From the conductors' logs: where copies got their pieces ('a copy read its pieces'), the holders they
 * dropped ('a holder was dropped from a copy'; a piece whose sha256 is not the list's, or another cause),
 * and the drops of the damaged copies for a damaged piece (the readers that met the damage).
 */
export function pieceFigures(conductors: ConductorProcess[], faults: PieceFaultRecord[]) {
  const logs = conductors.flatMap((c) => c.logs());
  const reads = logs.filter((l) => l.msg === 'a copy read its pieces');
  const drops = logs.filter((l) => l.msg === 'a holder was dropped from a copy');
  const checksum = drops.filter((l) => /has sha256 [0-9a-f]+, its list says/.test(String(l.why)));
  const damaged = faults.filter((f) => f.damage);
  const metDamage = checksum.filter((l) =>
    damaged.some(
      (f) => f.node === l.node && f.damage!.pieces.some((i) => String(l.why).startsWith(`piece ${i} `)),
    ),
  );
  return {
    pieces: {
      copies: reads.length,
      fromVerified: reads.reduce((n, l) => n + Number(l.fromVerified), 0),
      fromCopiesInProgress: reads.reduce((n, l) => n + Number(l.fromCopiesInProgress), 0),
      copiesThatReadFromCopiesInProgress: reads.filter((l) => Number(l.fromCopiesInProgress) > 0).length,
    },
    drops: {
      total: drops.length,
      checksum: checksum.length,
      other: drops.length - checksum.length,
      // A damaged piece met by a reader: dropped, never written (else its copy would fail or be corrupt).
      metDamage: metDamage.length,
      otherCauses: tally(
        drops
          .filter((l) => !checksum.includes(l))
          .map((l) =>
            String(l.why)
              .replace(/[0-9a-f]{16,}/g, '…')
              .slice(0, 80),
          ),
      ),
    },
    cancelAnswers: tally(logs.filter((l) => l.msg === 'cancel answered').map((l) => String(l.status))),
    // Lost locks (a paused holder, or heartbeats late on a loaded machine) and the like: retried copies.
    retriesByReason: tally(
      logs.filter((l) => l.msg === 'copy failed, retry scheduled').map((l) => String(l.reason)),
    ),
  };
}
