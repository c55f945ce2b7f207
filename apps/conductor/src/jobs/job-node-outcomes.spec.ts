import { describe, expect, it } from 'vitest';
import type { JobType } from '@app/contracts';
import { type NodeFacts, type NodeStart, nodeOutcome, nodeStart } from './job-node-outcomes';

const registered: NodeFacts['registration'] = {
  registered: true,
  marker: { v: 1, node: 'node-a', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'spec' },
};
const unregistered: NodeFacts['registration'] = {
  registered: false,
  problem: 'no marker /cell/node-a/node.json',
};
const CANCELLED: NodeStart = {
  skip: { outcome: 'cancelled', detail: 'the job was cancelled before this node was started' },
};
const UNKNOWN: NodeStart = {
  skip: {
    outcome: 'skipped-unknown',
    detail: 'not a registered node of the cell (no marker /cell/node-a/node.json)',
  },
};

/** Why a node of a job is skipped at once, or worked on, or which marker must be read first. */
const TABLE: Array<[string, JobType, NodeFacts, NodeStart]> = [
  ['pre-cache of a cancelled job: no marker read', 'precache', { cancelled: true }, CANCELLED],
  ['purge of a cancelled job: no marker read', 'purge', { cancelled: true }, CANCELLED],
  [
    'cancelled wins over every marker',
    'precache',
    { cancelled: true, registration: registered, draining: false },
    CANCELLED,
  ],
  ['pre-cache: the registration is read first', 'precache', { cancelled: false }, { need: 'registration' }],
  ['purge: the registration is read first', 'purge', { cancelled: false }, { need: 'registration' }],
  ['pre-cache on an unknown node', 'precache', { cancelled: false, registration: unregistered }, UNKNOWN],
  ['purge on an unknown node', 'purge', { cancelled: false, registration: unregistered }, UNKNOWN],
  [
    'pre-cache on a registered node: draining is read next',
    'precache',
    { cancelled: false, registration: registered },
    { need: 'draining' },
  ],
  [
    'pre-cache on a draining node',
    'precache',
    { cancelled: false, registration: registered, draining: true },
    { skip: { outcome: 'skipped-draining', detail: 'the node is marked draining' } },
  ],
  [
    'pre-cache on a node in service',
    'precache',
    { cancelled: false, registration: registered, draining: false },
    { start: true },
  ],
  [
    'purge on a registered node: draining is not read',
    'purge',
    { cancelled: false, registration: registered },
    { start: true },
  ],
  [
    'purge on a draining node: purged like any other',
    'purge',
    { cancelled: false, registration: registered, draining: true },
    { start: true },
  ],
];

describe('nodeStart', () => {
  it.each(TABLE)('%s', (_name, jobType, facts, expected) => {
    expect(nodeStart(jobType, facts)).toEqual(expected);
  });
});

describe('nodeOutcome', () => {
  const at = '2026-01-01T00:00:00.000Z';
  it('adds who decided and when; an empty detail is left out, zero bytes and a reason are kept', () => {
    expect(nodeOutcome('node-a', { outcome: 'absent', detail: '' }, 'c-1', at)).toEqual({
      node: 'node-a',
      outcome: 'absent',
      conductorId: 'c-1',
      at,
    });
    expect(nodeOutcome('node-a', { outcome: 'deleted', bytes: 0 }, 'c-1', at)).toEqual({
      node: 'node-a',
      outcome: 'deleted',
      conductorId: 'c-1',
      at,
      bytes: 0,
    });
    expect(nodeOutcome('node-a', { outcome: 'failed', detail: 'x', reason: 'IO_ERROR' }, 'c-1', at)).toEqual({
      node: 'node-a',
      outcome: 'failed',
      detail: 'x',
      conductorId: 'c-1',
      at,
      reason: 'IO_ERROR',
    });
  });
});
