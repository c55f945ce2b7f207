import type { JobType, NodeOutcome } from '@app/contracts';
import type { NodeRegistration } from '@app/image-store';

/** What is decided about one node of a job; `nodeOutcome` adds who decided it and when. */
export type NodeVerdict = Pick<NodeOutcome, 'outcome' | 'detail' | 'bytes' | 'reason'>;

export const CANCELLED_BEFORE_START: NodeVerdict = {
  outcome: 'cancelled',
  detail: 'the job was cancelled before this node was started',
};

export function nodeOutcome(
  node: string,
  verdict: NodeVerdict,
  conductorId: string,
  at: string,
): NodeOutcome {
  return {
    node,
    outcome: verdict.outcome,
    ...(verdict.detail ? { detail: verdict.detail } : {}),
    conductorId,
    at,
    ...(verdict.bytes !== undefined ? { bytes: verdict.bytes } : {}),
    ...(verdict.reason ? { reason: verdict.reason } : {}),
  };
}

/** What is known of a node when a job is accepted; the markers are read only when the decision needs them. */
export interface NodeFacts {
  /** The job was cancelled (before this delivery accepted it). */
  cancelled: boolean;
  registration?: NodeRegistration;
  draining?: boolean;
}

/** skip: the node gets this outcome at once; start: the job works on it; need: read this fact, then ask again. */
export type NodeStart = { skip: NodeVerdict } | { start: true } | { need: 'registration' | 'draining' };

/**
 * Whether a job works on a node or records it as skipped at once. A node that is not registered is
 * skipped, not refused with the whole job; a draining node gets no pre-cached copy (it is leaving the
 * cell), but is purged like any other.
 */
export function nodeStart(jobType: JobType, facts: NodeFacts): NodeStart {
  if (facts.cancelled) return { skip: CANCELLED_BEFORE_START };
  if (!facts.registration) return { need: 'registration' };
  if (!facts.registration.registered)
    return {
      skip: {
        outcome: 'skipped-unknown',
        detail: `not a registered node of the cell (${facts.registration.problem})`,
      },
    };
  if (jobType !== 'precache') return { start: true };
  if (facts.draining === undefined) return { need: 'draining' };
  if (facts.draining) return { skip: { outcome: 'skipped-draining', detail: 'the node is marked draining' } };
  return { start: true };
}
