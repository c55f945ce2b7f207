import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { CacheRootGuard } from '../cache-root/cache-root-guard';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../cache-root/header-key';
import type { JobMessageHandlerDeps } from './job-message-handler';
import { JobMessageHandler } from './job-message-handler';
import { FakePublisher, consumeMessage, fakeDelivery } from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';

describe("JobMessageHandler: CACHE_ROOT not the cell's folder (a dead network mount)", () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  it('hands a purge back untouched: no record written, no outcome, nothing answered', async () => {
    root = await makeTempDir('jobs-guard');
    const cacheRoot = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log: recordingLogger(),
    });
    await fsp.rm(path.join(root, HEADER_KEY_FILE));
    const publisher = new FakePublisher();
    const log = recordingLogger();
    const handler = new JobMessageHandler({
      store: new ImageStore({ root, fsync: false }),
      publisher: publisher.asPublisher,
      topology: cellTopology('spec-cell'),
      conductorId: 'conductor-1',
      purgeWaitMs: 1_000,
      log,
      shutdown: new AbortController().signal,
      cacheRoot,
    } as unknown as JobMessageHandlerDeps);
    const message = consumeMessage(
      { v: 1, type: 'purge', jobId: 'job-1', imageId: 'img.raw', nodes: ['node-a'] },
      { messageId: 'job-1', contentType: 'application/json' },
    );
    const { delivery } = fakeDelivery(message, log);
    await handler.handle(delivery);

    expect(delivery.outcome).toBe('requeued');
    expect(publisher.sent).toEqual([]);
    // What a purge would have written into the empty folder: its job record.
    expect(await fsp.readdir(root)).toEqual([]);
    expect(log.entries.find((e) => e.msg.startsWith('could not finish'))?.obj).toMatchObject({
      err: expect.stringContaining('is gone'),
    });
  });
});
