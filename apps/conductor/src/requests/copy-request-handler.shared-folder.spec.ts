import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HEADER_ATTEMPT, HEADER_REASON, type ReasonCode } from '@app/contracts';
import { CacheRootGuard } from '../cache-root/cache-root-guard';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../cache-root/header-key';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { fakeDelivery } from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';
import {
  COMPLETED,
  body,
  fails,
  handlerWith,
  headers,
  request,
  signedRetry,
  signer,
  topology,
} from './copy-request-handler.fixture';

describe("CopyRequestHandler: CACHE_ROOT not the cell's folder (a dead network mount)", () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  async function guarded(code: ReasonCode, mountDead: boolean) {
    root = await makeTempDir('handler-guard');
    const cacheRoot = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log: recordingLogger(),
    });
    if (mountDead) await fsp.rm(path.join(root, HEADER_KEY_FILE));
    return handlerWith(fails(code), { cacheRoot });
  }

  it.each<ReasonCode>(['UNKNOWN_NODE', 'SOURCE_MISSING', 'IO_ERROR'])(
    '%s seen on it is no answer: CACHE_UNAVAILABLE, retried without using up an attempt, not dead-lettered',
    async (code) => {
      const { handler, publisher, log } = await guarded(code, true);
      const message = signedRetry(topology.maxAttempts);
      const { delivery } = fakeDelivery(message, log);
      await handler.handle(delivery);

      expect(delivery.outcome).toBe('acked');
      expect(publisher.to(topology.deadLetterQueue.name)).toEqual([]);
      const retries = publisher.sent.filter((m) => m.routingKey.includes('retry'));
      expect(retries).toHaveLength(1);
      const h = headers(retries[0]!);
      expect(h).toMatchObject({
        [HEADER_ATTEMPT]: topology.maxAttempts,
        [HEADER_REASON]: 'CACHE_UNAVAILABLE',
      });
      expect(String(h['x-icc-detail'])).toContain(code);
      expect(
        signer.read({ content: message.content, properties: { ...message.properties, headers: h } }, 3),
      ).toMatchObject({
        attempt: topology.maxAttempts,
        ignored: [],
      });
      const events = publisher.to(topology.eventsExchange.name).map(body);
      expect(events).toEqual([expect.objectContaining({ reason: 'CACHE_UNAVAILABLE', retryable: true })]);
    },
  );

  it('on the folder it started on, UNKNOWN_NODE stays a final answer', async () => {
    const { handler, publisher, log } = await guarded('UNKNOWN_NODE', false);
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    expect(headers(publisher.to(topology.deadLetterQueue.name)[0]!)[HEADER_REASON]).toBe('UNKNOWN_NODE');
  });
});

describe("CopyRequestHandler: a request id's first final answer stands", () => {
  const FIRST = {
    v: 1 as const,
    type: 'result' as const,
    requestId: 'req-1',
    status: 'completed' as const,
    attempt: 1,
    durations: { totalMs: 7 },
    conductorId: 'conductor-0',
    at: '2026-01-01T00:00:00.000Z',
  };

  it('a re-send is answered with the recorded answer, without copying', async () => {
    const answers = { read: vi.fn(async () => FIRST), record: vi.fn() };
    const { handler, publisher, log, runs } = handlerWith(fails('SOURCE_MISSING'), { answers });
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(runs).toEqual([]);
    expect(answers.record).not.toHaveBeenCalled();
    expect(delivery.outcome).toBe('acked');
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([FIRST]);
    expect(publisher.to('amq.gen-reply').map(body)).toEqual([FIRST]);
  });

  it('a duplicate finishing after the first final answer sends the first one, not its own', async () => {
    const answers = {
      read: vi.fn(async () => undefined),
      record: vi.fn(async () => ({ answer: FIRST, first: false })),
    };
    const { handler, publisher, log } = handlerWith(
      async () => ({ result: { ...COMPLETED, status: 'already-present' }, coalesced: false }),
      { answers },
    );
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(answers.record).toHaveBeenCalledWith(expect.objectContaining({ status: 'already-present' }));
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([FIRST]);
    expect(delivery.outcome).toBe('acked');
  });

  it('a final failure is recorded before it is sent; a record that cannot be written does not hold it back', async () => {
    const answers = {
      read: vi.fn(async () => undefined),
      record: vi.fn(async () => Promise.reject(new Error('EIO'))),
    };
    const { handler, publisher, log } = handlerWith(fails('SOURCE_MISSING'), { answers });
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(answers.record).toHaveBeenCalledWith(expect.objectContaining({ reason: 'SOURCE_MISSING' }));
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([
      expect.objectContaining({ status: 'failed', reason: 'SOURCE_MISSING', retryable: false }),
    ]);
    expect(log.entries.map((e) => e.msg)).toContain(
      'could not record the final answer: answered without a record',
    );
  });
});
