import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import type { CopyImageRequest, ImageStore } from '@app/image-store';
import type { HeldLockSet, LockRequest, NodeLockManager } from '@app/locking';
import { type CopyLockPlan, CopyWorkflow } from './copy-workflow';
import type { SourceSelector } from './source-selector';

/*
 * How CopyWorkflow names failures around its locks, with the store, the locks and the source choice
 * replaced by stand-ins (the e2e campaigns in test/campaign-*.e2e-spec.ts cause them for real).
 */
describe('CopyWorkflow failure reasons', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-workflow-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  const job = { imageId: 'img.raw', destination: 'node-b', source: 'node-a' };

  const SOURCE_META = { size: 10, sha256: 'a'.repeat(64) };

  function workflow(options: {
    copyError?: unknown;
    lockError?: unknown;
    stillHeld: boolean;
    unregistered?: string[];
    /** The destination's verified image: before the locks ('early'), only once they are held ('under-lock'). */
    destinationPresent?: 'early' | 'under-lock';
    sourceGoneUnderLock?: boolean;
    copied?: 'copied' | 'already-present';
    job?: typeof job;
    lockPlan?: CopyLockPlan;
    /** SHARE_PIECES on (the source has a piece list), and what the copy does with the request it gets. */
    fromPartialCopies?: boolean;
    duringCopy?: (request: CopyImageRequest) => void;
  }) {
    let released = 0;
    let lockRequests = 0;
    const requested: LockRequest[][] = [];
    const held = {
      locks: [{ key: { node: 'node-b', imageId: 'img.raw' }, fencingToken: 7 }],
      signal: new AbortController().signal,
      assertStillHeld: async () => {
        if (!options.stillHeld)
          throw new ReasonError('LOCK_LOST', 'lock on node-b/img.raw lost: no heartbeat for 2600 ms');
      },
      release: async () => {
        released++;
      },
    } as unknown as HeldLockSet;
    const locks = {
      acquireAll: async (requests: LockRequest[]) => {
        lockRequests++;
        requested.push(requests);
        if (options.lockError) throw options.lockError;
        return held;
      },
    } as unknown as NodeLockManager;
    const store = {
      root,
      markers: {
        nodeRegistration: async (node: string) =>
          options.unregistered?.includes(node)
            ? { registered: false, problem: `no marker ${root}/${node}/node.json` }
            : { registered: true },
      },
      copies: {
        verifiedImage: async (node: string) => {
          if (node === 'node-a')
            return options.sourceGoneUnderLock && lockRequests > 0 ? undefined : SOURCE_META;
          const present =
            options.destinationPresent === 'early' ||
            (options.destinationPresent === 'under-lock' && lockRequests > 0);
          return present ? SOURCE_META : undefined;
        },
        touchLastUsed: async () => undefined,
        readPieceList: async () => ({ list: { pieces: [] } }),
        copyImage: async (request: CopyImageRequest) => {
          options.duringCopy?.(request);
          if (options.copied)
            return {
              status: options.copied,
              bytes: options.copied === 'copied' ? 10 : 0,
              sha256: SOURCE_META.sha256,
              meta: SOURCE_META,
              copyMs: 1,
              verifyMs: 1,
            };
          throw options.copyError;
        },
      },
    } as unknown as ImageStore;
    const sources = {
      acquire: async () => ({
        node: 'node-a',
        meta: { size: 10, sha256: 'a'.repeat(64) },
        slotWaitMs: 0,
        release: () => undefined,
      }),
      forgetHolder: () => undefined,
      learnHolder: () => undefined,
    } as unknown as SourceSelector;
    const warned: Array<[Record<string, unknown>, string]> = [];
    const told: Array<[Record<string, unknown>, string]> = [];
    const log = {
      warn: (fields: Record<string, unknown>, msg: string) => void warned.push([fields, msg]),
      info: (fields: Record<string, unknown>, msg: string) => void told.push([fields, msg]),
    };
    return {
      run: () =>
        new CopyWorkflow(store, locks, sources, {
          lockWaitMs: 1_000,
          log,
          lockPlan: options.lockPlan,
          fromPartialCopies: options.fromPartialCopies,
        }).run(options.job ?? job, { attemptId: 'a1' }),
      warned,
      told,
      released: () => released,
      requested: () => requested,
      lockRequests: () => lockRequests,
    };
  }

  const reasonOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'resolved',
      (error: unknown) => (error instanceof ReasonError ? `${error.code}: ${error.message}` : String(error)),
    );

  it('reports an I/O failure of a holder that lost its locks as LOCK_LOST (its partial copy was removed by the next holder)', async () => {
    const copyError = new ReasonError(
      'IO_ERROR',
      'destination node node-b, image img.raw: publishing (rename) failed (ENOENT)',
    );
    const w = workflow({ copyError, stillHeld: false });
    expect(await reasonOf(w.run())).toMatch(
      /^LOCK_LOST: lock on node-b\/img.raw lost: .*; then: .*publishing \(rename\) failed \(ENOENT\)/,
    );
    expect(w.released()).toBe(1);
  });

  it('keeps IO_ERROR, and any other failure, while the locks are still held', async () => {
    const io = new ReasonError('IO_ERROR', 'destination node node-b: writing failed (EIO)');
    expect(await reasonOf(workflow({ copyError: io, stillHeld: true }).run())).toBe(
      `IO_ERROR: ${io.message}`,
    );
    const mismatch = new ReasonError('CHECKSUM_MISMATCH', 'the bytes have another sha256');
    expect(await reasonOf(workflow({ copyError: mismatch, stillHeld: false }).run())).toBe(
      `CHECKSUM_MISMATCH: ${mismatch.message}`,
    );
  });

  it('refuses an unregistered destination or named source with UNKNOWN_NODE before taking any lock', async () => {
    const destination = workflow({ stillHeld: true, unregistered: ['node-b'] });
    expect(await reasonOf(destination.run())).toMatch(
      /^UNKNOWN_NODE: destination: node node-b is not registered in this cell \(no marker .*node-b\/node\.json\); nothing was locked or created$/,
    );
    expect(destination.lockRequests()).toBe(0);
    const source = workflow({ stillHeld: true, unregistered: ['node-a'] });
    expect(await reasonOf(source.run())).toMatch(/^UNKNOWN_NODE: source: node node-a is not registered/);
    expect(source.lockRequests()).toBe(0);
    // Without a named source, an unregistered node is never asked about: the selector skips it.
    const unnamed = workflow({
      stillHeld: true,
      unregistered: ['node-a'],
      copied: 'copied',
      job: { imageId: 'img.raw', destination: 'node-b' } as typeof job,
    });
    expect(await reasonOf(unnamed.run())).toBe('resolved');
  });

  it('reports the size and sha256 of the image at the destination in every already-present result', async () => {
    const expected = { status: 'already-present', bytes: SOURCE_META.size, sha256: SOURCE_META.sha256 };
    expect(await workflow({ stillHeld: true, destinationPresent: 'early' }).run()).toMatchObject(expected);
    expect(
      await workflow({ stillHeld: true, destinationPresent: 'under-lock', sourceGoneUnderLock: true }).run(),
    ).toMatchObject(expected);
    expect(await workflow({ stillHeld: true, copied: 'already-present' }).run()).toMatchObject(expected);
    expect(await workflow({ stillHeld: true, copied: 'copied' }).run()).toMatchObject({
      status: 'completed',
      bytes: 10,
    });
  });

  it('takes the source shared and the destination exclusive, or what an injected lock plan names (the bench seam)', async () => {
    const plain = workflow({ stillHeld: true, copied: 'copied' });
    await plain.run();
    expect(plain.requested()).toEqual([
      [
        { node: 'node-a', imageId: 'img.raw', mode: 'shared' },
        { node: 'node-b', imageId: 'img.raw', mode: 'exclusive' },
      ],
    ]);
    const planned = workflow({
      stillHeld: true,
      copied: 'copied',
      lockPlan: () => [{ node: 'everything', imageId: 'all', mode: 'exclusive' }],
    });
    await planned.run();
    expect(planned.requested()).toEqual([[{ node: 'everything', imageId: 'all', mode: 'exclusive' }]]);
  });

  it('names a lock folder the file system refuses instead of failing INTERNAL', async () => {
    const errno = (code: string, where: string) =>
      Object.assign(new Error(`${code}: mkdir '${where}'`), { code, path: where });
    // The destination's cache is writable here, so its errors are not "read-only".
    await fsp.mkdir(path.join(root, 'node-b'));
    const full = workflow({
      lockError: errno('ENOSPC', path.join(root, 'node-b', 'locks')),
      stillHeld: true,
    });
    expect(await reasonOf(full.run())).toMatch(/^NO_SPACE: taking the locks/);
    const sourceSide = workflow({
      lockError: errno('EROFS', path.join(root, 'node-a', 'locks')),
      stillHeld: true,
    });
    expect(await reasonOf(sourceSide.run())).toMatch(/^IO_ERROR: taking the locks/);
    const denied = workflow({
      lockError: errno('EACCES', path.join(root, 'node-b', 'locks', 'img.raw')),
      stillHeld: true,
    });
    expect(await reasonOf(denied.run())).toMatch(
      /^DESTINATION_READ_ONLY: destination node node-b: taking the locks/,
    );
    // A recursive mkdir on a read-only file system says ENOENT: the destination is probed for writing.
    await fsp.chmod(path.join(root, 'node-b'), 0o500);
    const masked = workflow({
      lockError: errno('ENOENT', path.join(root, 'node-b', 'locks')),
      stillHeld: true,
    });
    const reason = await reasonOf(masked.run());
    await fsp.chmod(path.join(root, 'node-b'), 0o700);
    // As root, permissions do not stop writes (access(W_OK) passes): then it stays a retryable IO_ERROR.
    expect(reason).toMatch(
      process.getuid?.() === 0 ? /^IO_ERROR: taking the locks/ : /^DESTINATION_READ_ONLY: /,
    );
  });

  it('logs a holder dropped from a copy that reads from copies in progress, as from one with further holders', async () => {
    const w = workflow({
      stillHeld: true,
      copied: 'copied',
      fromPartialCopies: true,
      job: { imageId: 'img.raw', destination: 'node-b' } as typeof job,
      duringCopy: (request) => {
        expect(request.swarm).toBeDefined();
        request.onHolderDropped?.('node-c', "piece 1 read from node node-c's copy in progress has sha256 x");
      },
    });
    expect(await reasonOf(w.run())).toBe('resolved');
    expect(w.warned).toEqual([
      [
        expect.objectContaining({
          node: 'node-c',
          destination: 'node-b',
          why: expect.stringMatching(/^piece 1/),
        }),
        'a holder was dropped from a copy',
      ],
    ]);
  });

  it('logs where a copy that reads from copies in progress got its pieces: verified holders and copies in progress', async () => {
    const w = workflow({
      stillHeld: true,
      copied: 'copied',
      fromPartialCopies: true,
      job: { imageId: 'img.raw', destination: 'node-b' } as typeof job,
      duringCopy: (request) => {
        for (const [node, inProgress] of [
          ['node-a', false],
          ['node-d', true],
          ['node-c', true],
          ['node-c', true],
        ] as const)
          request.swarm!.onPieceRead!(node, inProgress);
      },
    });
    await w.run();
    expect(w.told).toEqual([
      [
        expect.objectContaining({
          destination: 'node-b',
          fromVerified: 1,
          fromCopiesInProgress: 3,
          verifiedNodes: ['node-a'],
          copiesInProgress: ['node-c', 'node-d'],
        }),
        'a copy read its pieces',
      ],
    ]);
  });
});
