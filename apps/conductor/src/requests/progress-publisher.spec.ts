import { type Logger, cellTopology } from '@app/contracts';
import { describe, expect, it } from 'vitest';
import type { Publisher } from '@app/messaging';
import type { InFlightCopy } from '../copy/copy-coordinator';
import { ProgressPublisher } from './progress-publisher';

function copy(overrides: Partial<InFlightCopy> = {}): InFlightCopy {
  return {
    key: 'img -> node-b',
    imageId: 'img',
    destination: 'node-b',
    source: 'node-a',
    requestIds: ['r-1'],
    phase: 'copying',
    bytesDone: 0,
    bytesTotal: 100,
    startedAt: new Date().toISOString(),
    startedMono: 0,
    ...overrides,
  };
}

describe('ProgressPublisher', () => {
  const log: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

  function publisherRecording() {
    const sent: Array<{ routingKey: string; body: Record<string, unknown> }> = [];
    const publisher = {
      publish: async (_exchange: string, routingKey: string, body: Record<string, unknown>) => {
        sent.push({ routingKey, body });
      },
    } as unknown as Publisher;
    return { publisher, sent };
  }

  it('throttles one copy, always sends phase changes, and starts a later copy of the same key afresh', () => {
    const { publisher, sent } = publisherRecording();
    const progress = new ProgressPublisher(publisher, cellTopology('c'), 'cond-1', 60_000, log);
    const first = copy();
    progress.onProgress(first);
    first.bytesDone = 50;
    progress.onProgress(first); // throttled
    first.phase = 'verifying';
    progress.onProgress(first); // phase change
    expect(sent.map((s) => s.body.phase)).toEqual(['copying', 'verifying']);

    // The same image and destination copied again (a new copy object): not held back by the old one.
    progress.onProgress(copy({ requestIds: ['r-2'], phase: 'verifying' }));
    expect(sent.map((s) => s.body.requestId)).toEqual(['r-1', 'r-1', 'r-2']);
    expect(sent[2]!.routingKey).toBe('progress.node-b');
  });
});
