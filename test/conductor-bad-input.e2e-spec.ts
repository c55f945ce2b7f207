import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { HEADER_REASON } from '@app/contracts';
import {
  type Result,
  ResultsTap,
  conductorTestbed,
  errorLines,
  takeDeadLetters,
} from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { exists, sha256OfFile } from './support/image-store-fixtures';

const MiB = 1024 * 1024;
const IMAGE = 'ubuntu.qcow2';

interface BadCase {
  name: string;
  /** An object is sent as JSON; a string as is. */
  body: unknown;
  reason: string;
  contentType?: string;
  /** false: no reply_to; a string: that queue instead of the test client's. */
  replyTo?: false | string;
  /** Text the result's detail must contain. */
  detail?: string[];
}

describe('conductor: bad input', () => {
  let tap: ResultsTap | undefined;
  const bed = conductorTestbed(['node-a', 'node-b', 'node-c'], {
    nested: true,
    cleanup: async () => {
      await tap?.close();
    },
  });
  const pool = bed.pool;

  beforeEach(async () => {
    tap = await ResultsTap.open(bed.cell!.topology);
  });

  it('answers and dead-letters each bad message once with its reason, writes nothing outside CACHE_ROOT, and keeps serving', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 1 * MiB);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'bad-input' }),
      90_000,
    ).ready();
    const parentBefore = await fsp.readdir(c.parent!);

    const valid = { v: 1, imageId: IMAGE, destination: 'node-b', source: 'node-a' };
    const cases: BadCase[] = [
      {
        name: 'bad-json',
        body: '{"v":1,"requestId":"bad-json","imageId":',
        reason: 'INVALID_REQUEST',
        detail: ['not valid JSON'],
      },
      { name: 'bad-array', body: '[1,2,3]', reason: 'INVALID_REQUEST', detail: ['must be a JSON object'] },
      {
        name: 'bad-types',
        body: { v: 1, requestId: 'bad-types', imageId: 42, destination: ['node-b'], size: '12' },
        reason: 'INVALID_REQUEST',
        detail: ['imageId', 'destination', 'size'],
      },
      {
        name: 'bad-missing-fields',
        body: { v: 1, requestId: 'bad-missing-fields' },
        reason: 'INVALID_REQUEST',
        detail: ['imageId: is required', 'destination: is required'],
      },
      {
        name: 'bad-unknown-field',
        body: { ...valid, requestId: 'bad-unknown-field', weight: 9 },
        reason: 'INVALID_REQUEST',
        detail: ['weight: unknown field'],
      },
      {
        name: 'bad-version',
        body: { ...valid, v: 2, requestId: 'bad-version' },
        reason: 'UNSUPPORTED_VERSION',
        detail: ['unsupported version 2'],
      },
      {
        name: 'bad-traversal-image',
        body: { ...valid, requestId: 'bad-traversal-image', imageId: '../../etc/passwd' },
        reason: 'INVALID_REQUEST',
        detail: ['imageId'],
      },
      {
        name: 'bad-traversal-destination',
        body: { ...valid, requestId: 'bad-traversal-destination', destination: '../etc' },
        reason: 'INVALID_REQUEST',
        detail: ['destination'],
      },
      {
        name: 'bad-traversal-source',
        body: { ...valid, requestId: 'bad-traversal-source', source: '..', destination: 'node-c' },
        reason: 'INVALID_REQUEST',
        detail: ['source'],
      },
      // An unusable requestId is never echoed: the result names the request by its message_id.
      {
        name: 'bad-traversal-request-id',
        body: { ...valid, requestId: '../etc' },
        reason: 'INVALID_REQUEST',
        detail: ['requestId'],
      },
      {
        name: 'bad-absolute-image',
        body: { ...valid, requestId: 'bad-absolute-image', imageId: '/etc/passwd' },
        reason: 'INVALID_REQUEST',
        detail: ['imageId'],
      },
      {
        name: 'bad-same-node',
        body: { ...valid, requestId: 'bad-same-node', destination: 'node-a' },
        reason: 'INVALID_REQUEST',
        detail: ['source: must differ from destination'],
      },
      {
        name: 'bad-no-image',
        body: { v: 1, requestId: 'bad-no-image', imageId: 'ghost.qcow2', destination: 'node-b' },
        reason: 'SOURCE_MISSING',
      },
      {
        name: 'bad-not-on-source',
        body: { ...valid, requestId: 'bad-not-on-source', source: 'node-c' },
        reason: 'SOURCE_MISSING',
        detail: ['node-c'],
      },
      {
        name: 'bad-unknown-source',
        body: { ...valid, requestId: 'bad-unknown-source', source: 'node-z' },
        reason: 'UNKNOWN_NODE',
        detail: ['source: node node-z is not registered'],
      },
      {
        name: 'bad-checksum',
        body: { ...valid, requestId: 'bad-checksum', destination: 'node-c', sha256: '0'.repeat(64) },
        reason: 'CHECKSUM_MISMATCH',
      },
      {
        name: 'bad-checksum-any-source',
        body: {
          v: 1,
          requestId: 'bad-checksum-any-source',
          imageId: IMAGE,
          destination: 'node-c',
          sha256: 'f'.repeat(64),
        },
        reason: 'CHECKSUM_MISMATCH',
      },
      {
        name: 'bad-size',
        body: { ...valid, requestId: 'bad-size', destination: 'node-c', size: image.size + 1 },
        reason: 'SIZE_MISMATCH',
      },
      {
        name: 'bad-deadline',
        body: { ...valid, requestId: 'bad-deadline', deadline: '2001-01-01T00:00:00Z' },
        reason: 'DEADLINE_EXCEEDED',
      },
      // The requestId first, so it can still be read from the (refused, unparsed) first 16 KiB.
      {
        name: 'bad-huge',
        body: { requestId: 'bad-huge', ...valid, padding: 'x'.repeat(20 * 1024) },
        reason: 'INVALID_REQUEST',
        detail: ['at most 16384 bytes'],
      },
      {
        name: 'bad-content-type',
        body: { ...valid, requestId: 'bad-content-type' },
        contentType: 'text/plain',
        reason: 'INVALID_REQUEST',
        detail: ['content_type'],
      },
      {
        name: 'bad-no-reply-to',
        body: { ...valid, v: 2, requestId: 'bad-no-reply-to' },
        replyTo: false,
        reason: 'UNSUPPORTED_VERSION',
      },
      // A reply_to in the cells' own namespace: an answer there would come back as one more request or dead
      // letter (the once-each count below would see it). Refused, answered on the events exchange only.
      {
        name: 'bad-reply-to-requests',
        body: { ...valid, requestId: 'bad-reply-to-requests' },
        replyTo: c.topology.requestQueue.name,
        reason: 'INVALID_REQUEST',
        detail: ['reply_to', c.topology.requestQueue.name],
      },
      {
        name: 'bad-reply-to-dead-letters',
        body: { ...valid, v: 2, requestId: 'bad-reply-to-dead-letters' },
        replyTo: c.topology.deadLetterQueue.name,
        reason: 'INVALID_REQUEST',
        detail: ['reply_to'],
      },
    ];
    const sent = cases.map((bad) => ({
      bad,
      correlationId: bed.client!.send(c.topology.requestQueue.name, bad.body, {
        messageId: bad.name,
        contentType: bad.contentType,
        replyTo: bad.replyTo,
      }),
    }));
    // A valid request after all of them: the conductor still serves.
    const good = bed.client!.send(
      c.topology.requestQueue.name,
      { ...valid, requestId: 'good-after', sha256: image.sha256 },
      { messageId: 'good-after' },
    );

    // Each is answered on reply_to (when it had one) and on the events exchange, with the requestId read
    // from the body, or from message_id when the body is unreadable.
    const events = await tap!.waitForFinal([...cases.map((b) => b.name), 'good-after'], 60_000);
    for (const { bad, correlationId } of sent) {
      const expected = {
        requestId: bad.name,
        status: 'failed',
        reason: bad.reason,
        retryable: false,
        conductorId: 'bad-input',
      };
      const event = events.get(bad.name)!;
      expect(event, bad.name).toMatchObject(expected);
      for (const text of bad.detail ?? []) expect(String(event.detail), bad.name).toContain(text);
      if (bad.replyTo !== undefined) {
        expect(
          bed.client!.replies.filter((r) => r.correlationId === correlationId),
          bad.name,
        ).toEqual([]);
      } else {
        expect(await bed.client!.finalReply(correlationId, 10_000), bad.name).toMatchObject(expected);
      }
    }
    expect(await bed.client!.finalReply(good, 30_000)).toMatchObject({
      requestId: 'good-after',
      status: 'completed',
      sha256: image.sha256,
    });
    expect(await sha256OfFile(c.store.entries.imagePath('node-b', IMAGE))).toBe(image.sha256);

    // Dead-lettered exactly once each, with the reason in x-icc-reason; the valid one is not there.
    const dead = await takeDeadLetters(c.topology);
    const deadByName = new Map<string, typeof dead>();
    for (const d of dead)
      deadByName.set(String(d.messageId), [...(deadByName.get(String(d.messageId)) ?? []), d]);
    for (const bad of cases) {
      const copies = deadByName.get(bad.name) ?? [];
      expect(copies.length, `dead letters of ${bad.name}`).toBe(1);
      expect(copies[0]!.headers[HEADER_REASON], bad.name).toBe(bad.reason);
    }
    expect(dead.length).toBe(cases.length);
    // Every failure was final at once: nothing retried, no duplicate results.
    expect(tap!.results.filter((r: Result) => r.retryable === true)).toEqual([]);

    // Nothing written outside CACHE_ROOT, no stray node folders inside it, nothing published on a mismatch.
    expect(await fsp.readdir(c.parent!)).toEqual(parentBefore);
    expect(parentBefore).toEqual(['cache']);
    // (.icc-header-key: the cell's key for signed retry headers, made by the first conductor; .icc-answers:
    // the final answers of the requests whose id could be read, docs/cache-layout.md; .icc-conductors: the
    // conductors' records, docs/upgrades.md; .rounds: the round leases' folder, made at start.)
    expect((await fsp.readdir(c.root)).sort()).toEqual([
      '.icc-answers',
      '.icc-conductors',
      '.icc-header-key',
      '.rounds',
      'node-a',
      'node-b',
      'node-c',
    ]);
    expect(await exists(path.join(c.root, '..', 'etc'))).toBe(false);
    expect(await exists(path.join(c.root, 'etc'))).toBe(false);
    expect(await exists(c.store.entries.imagePath('node-c', IMAGE))).toBe(false);
    expect(await c.tmpLeftovers()).toEqual([]);

    expect(conductor.child.process.exitCode).toBeNull();
    expect(conductor.child.process.signalCode).toBeNull();
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `conductor-bad-input: ${JSON.stringify({ badMessages: cases.length, deadLettered: dead.length, reasons: Object.fromEntries(cases.map((b) => [b.name, events.get(b.name)!.reason])) })}`,
    );
  });
});
