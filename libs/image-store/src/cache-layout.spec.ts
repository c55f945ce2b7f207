import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidFieldError } from '@app/contracts';
import { CacheLayout, parseTmpName, tmpName } from './cache-layout';

describe('CacheLayout', () => {
  const layout = new CacheLayout('/srv/cache');

  it('names the field of a bad id', () => {
    expect(() => layout.node('../x', 'destination')).toThrow(
      "destination: must start with a letter or digit and contain only letters, digits, '.', '_' or '-'; must not contain '..'",
    );
    expect(() => layout.imageId('', 'imageId')).toThrow(/^imageId: must not be empty/);
    expect(() => layout.node(42, 'source')).toThrow(/^source: /);
  });

  it('refuses an empty root', () => {
    expect(() => new CacheLayout('')).toThrow(InvalidFieldError);
  });

  it('builds tmp paths from validated parts only', () => {
    const node = layout.node('n1');
    expect(layout.tmpPath(node, 'img.v1', 'attempt.7')).toBe(
      path.join('/srv/cache/n1/tmp', 'img.v1~attempt.7.part'),
    );
    expect(() => layout.tmpPath(node, 'img', '../../x')).toThrow(/^attemptId: /);
  });
});

describe('tmp names', () => {
  it.each([
    ['img', 'attempt-1'],
    ['ubuntu-24.04.qcow2', 'a.b.c'],
    ['x.part', 'meta-1234'],
  ])('round-trip %s / %s even with dots on both sides', (imageId, tag) => {
    expect(parseTmpName(tmpName(imageId, tag))).toEqual({ imageId, tag });
  });

  it.each(['img.part', '~a.part', 'img~.part', 'img~a.tmp', 'unrelated'])(
    'ignore %j, which this library did not create',
    (name) => {
      expect(parseTmpName(name)).toBeUndefined();
    },
  );
});
