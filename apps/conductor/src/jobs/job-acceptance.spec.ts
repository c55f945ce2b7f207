import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { JobRequest } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { acceptJob } from './job-acceptance';

describe('acceptJob: the record and the outcomes known at once, in a real cell folder', () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  /** node-a in service, node-b draining, node-c never registered. */
  async function cell(): Promise<ImageStore> {
    root = await makeTempDir('job-acceptance');
    const store = new ImageStore({ root, fsync: false });
    await store.markers.registerNode('node-a', 'spec');
    await store.markers.registerNode('node-b', 'spec');
    await fsp.writeFile(path.join(root, 'node-b', 'draining'), '');
    return store;
  }
  const job = (type: 'precache' | 'purge'): JobRequest => ({
    v: 1,
    type,
    jobId: 'job-1',
    imageId: 'img.raw',
    nodes: ['node-a', 'node-b', 'node-c'],
  });
  const outcomes = async (store: ImageStore) =>
    Object.fromEntries((await store.jobs.outcomes('job-1')).map((o) => [o.node, o.outcome]));

  it('pre-cache: the unknown and the draining nodes are skipped; draining is read of registered nodes only', async () => {
    const store = await cell();
    const draining = vi.spyOn(store.markers, 'isDraining');
    const record = await acceptJob({ store, conductorId: 'c-1' }, job('precache'));

    expect(record).toMatchObject({ jobId: 'job-1', type: 'precache', nodes: ['node-a', 'node-b', 'node-c'] });
    expect(await store.jobs.read('job-1')).toEqual(record);
    expect(await outcomes(store)).toEqual({ 'node-b': 'skipped-draining', 'node-c': 'skipped-unknown' });
    expect(draining.mock.calls.map(([node]) => node)).toEqual(['node-a', 'node-b']);
  });

  it('purge: only the unknown node is skipped, no draining marker is read', async () => {
    const store = await cell();
    const draining = vi.spyOn(store.markers, 'isDraining');
    await acceptJob({ store, conductorId: 'c-1' }, job('purge'));

    expect(await outcomes(store)).toEqual({ 'node-c': 'skipped-unknown' });
    expect(draining).not.toHaveBeenCalled();
  });

  it('a redelivered job cancelled meanwhile: every node left is cancelled, no marker read, outcomes kept', async () => {
    const store = await cell();
    await acceptJob({ store, conductorId: 'c-1' }, job('precache'));
    await store.jobs.cancel('job-1');
    const registration = vi.spyOn(store.markers, 'nodeRegistration');
    await acceptJob({ store, conductorId: 'c-2' }, job('precache'));

    expect(await outcomes(store)).toEqual({
      'node-a': 'cancelled',
      'node-b': 'skipped-draining',
      'node-c': 'skipped-unknown',
    });
    expect(await store.jobs.outcome('job-1', 'node-a')).toMatchObject({
      detail: 'the job was cancelled before this node was started',
      conductorId: 'c-2',
    });
    expect(registration).not.toHaveBeenCalled();
  });

  it('a job id reused for another kind of job is a final INVALID_REQUEST', async () => {
    const store = await cell();
    await acceptJob({ store, conductorId: 'c-1' }, job('precache'));
    await expect(acceptJob({ store, conductorId: 'c-1' }, job('purge'))).rejects.toMatchObject({
      code: 'INVALID_REQUEST',
      retryable: false,
      message: 'jobId: job-1 is already the precache job of image img.raw; choose another job id',
    });
  });
});
