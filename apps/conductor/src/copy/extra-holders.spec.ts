import { describe, expect, it } from 'vitest';
import type { CopyImageRequest, ImageStore } from '@app/image-store';
import type { HeldLockSet, LockRequest, NodeLockManager } from '@app/locking';
import type { CopyJob } from './copy-job';
import { CopyWorkflow } from './copy-workflow';
import { NodeBandwidth } from './node-bandwidth';
import { ReadSlots } from './read-slots';
import type { SourceSelector } from './source-selector';

const MiB = 1024 * 1024;
const META = { size: 64 * MiB, sha256: 'a'.repeat(64) };
const none = { fallback: 0, nodes: {} };

/*
 * The gate of copies from several holders, in CopyWorkflow with stand-ins for the store and the locks:
 * who is asked for a lock, which helpers reach copyImage, and that every slot and lock is given back.
 */
function cell(options: {
  caps?: { read: number; write: number };
  refuseLock?: string[];
  goneUnderLock?: string[];
}) {
  const requested: LockRequest[][] = [];
  const released: string[] = [];
  const copies: CopyImageRequest[] = [];
  const slots = new ReadSlots(4);
  const heldOf = (requests: LockRequest[]) =>
    ({
      locks: requests.map((r) => ({ key: { node: r.node, imageId: r.imageId }, fencingToken: 1 })),
      signal: new AbortController().signal,
      assertStillHeld: async () => undefined,
      release: async () => {
        released.push(requests.map((r) => r.node).join('+'));
      },
    }) as unknown as HeldLockSet;
  const locks = {
    acquireAll: async (requests: LockRequest[]) => {
      requested.push(requests);
      if (requests.some((r) => options.refuseLock?.includes(r.node))) throw new Error('LOCK_TIMEOUT');
      return heldOf(requests);
    },
  } as unknown as NodeLockManager;
  const store = {
    root: '/nowhere',
    markers: { nodeRegistration: async () => ({ registered: true }) },
    copies: {
      verifiedImage: async (node: string) => {
        if (node === 'node-b') return undefined;
        const underLock = requested.some((set) => set.length === 1 && set[0]!.node === node);
        return options.goneUnderLock?.includes(node) && underLock ? undefined : META;
      },
      touchLastUsed: async () => undefined,
      copyImage: async (request: CopyImageRequest) => {
        copies.push(request);
        return {
          status: 'copied',
          bytes: META.size,
          resumedBytes: 0,
          sha256: META.sha256,
          meta: META,
          copyMs: 1,
          verifyMs: 1,
          readFrom: ['node-a', ...(request.helpers ?? []).map((h) => h.node)],
        };
      },
    },
  } as unknown as ImageStore;
  const sources = {
    slots,
    acquire: async () => ({ node: 'node-a', meta: META, slotWaitMs: 0, release: slots.tryTake('node-a')! }),
    helperCandidates: async () => ['node-c', 'node-d', 'node-e', 'node-f'],
    forgetHolder: () => undefined,
    learnHolder: () => undefined,
  } as unknown as SourceSelector;
  const bandwidth =
    options.caps &&
    new NodeBandwidth({
      read: { fallback: options.caps.read, nodes: {} },
      write: { fallback: options.caps.write, nodes: {} },
      backgroundRead: none,
      backgroundWrite: none,
    });
  const workflow = new CopyWorkflow(store, locks, sources, {
    lockWaitMs: 1_000,
    log: { warn: () => undefined },
    ...(bandwidth ? { bandwidth } : {}),
  });
  return {
    run: (job: Partial<CopyJob> = {}) =>
      workflow.run({ imageId: 'img.raw', destination: 'node-b', ...job }, { attemptId: 'a1' }),
    helpers: () => copies.map((c) => c.helpers?.map((h) => h.node)),
    helperLocks: () =>
      requested.filter((set) => set.length === 1).map((set) => `${set[0]!.node} ${set[0]!.mode}`),
    released: () => released,
    slots,
  };
}

describe('copies from several holders: the gate', () => {
  it('adds holders while their read caps stay below the destination’s write cap, each under its own shared lock', async () => {
    const c = cell({ caps: { read: 16 * MiB, write: 48 * MiB } });
    expect(await c.run()).toMatchObject({ status: 'completed', source: 'node-a' });
    expect(c.helpers()).toEqual([['node-c', 'node-d']]);
    expect(c.helperLocks()).toEqual(['node-c shared', 'node-d shared']);
    // Every lock and read slot is given back.
    expect(c.released().sort()).toEqual(['node-a+node-b', 'node-c', 'node-d']);
    expect(c.slots.view().inUse).toEqual({});
  });

  it('reads one source as today: without caps, with a named source, or when one source fills the destination', async () => {
    for (const [c, job] of [
      [cell({}), {}],
      [cell({ caps: { read: 16 * MiB, write: 64 * MiB } }), { source: 'node-a' }],
      [cell({ caps: { read: 64 * MiB, write: 64 * MiB } }), {}],
      [cell({ caps: { read: 16 * MiB, write: 0 } }), { source: 'node-a' }],
    ] as const) {
      await c.run(job);
      expect(c.helpers()).toEqual([undefined]);
      expect(c.helperLocks()).toEqual([]);
    }
  });

  it('skips a holder whose lock is not granted at once or whose image went before its lock', async () => {
    const c = cell({
      caps: { read: 16 * MiB, write: 48 * MiB },
      refuseLock: ['node-c'],
      goneUnderLock: ['node-d'],
    });
    await c.run();
    expect(c.helpers()).toEqual([['node-e', 'node-f']]);
    expect(c.helperLocks()).toEqual(['node-c shared', 'node-d shared', 'node-e shared', 'node-f shared']);
    expect(c.released().sort()).toEqual(['node-a+node-b', 'node-d', 'node-e', 'node-f']);
    expect(c.slots.view().inUse).toEqual({});
  });
});
