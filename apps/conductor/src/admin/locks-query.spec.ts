import { describe, expect, it } from 'vitest';
import { InvalidQueryError, parseLocksQuery } from './locks-query';

function problems(query: unknown) {
  try {
    parseLocksQuery(query);
  } catch (error) {
    if (error instanceof InvalidQueryError) return error.problems;
    throw error;
  }
  throw new Error('expected an InvalidQueryError');
}

describe('parseLocksQuery', () => {
  it('accepts no filter, a node, an image, or both', () => {
    expect(parseLocksQuery({})).toEqual({});
    expect(parseLocksQuery(undefined)).toEqual({});
    expect(parseLocksQuery({ node: 'node-a', image: 'ubuntu-24.04.qcow2' })).toEqual({
      node: 'node-a',
      image: 'ubuntu-24.04.qcow2',
    });
  });

  it('names each bad parameter and why', () => {
    expect(problems({ node: '../x' })).toEqual([
      { parameter: 'node', reason: expect.stringMatching(/\.\./) },
    ]);
    expect(problems({ image: 'a/b' })).toEqual([
      { parameter: 'image', reason: expect.stringMatching(/letters, digits/) },
    ]);
    expect(problems({ image: 'x.meta.json' })).toEqual([
      { parameter: 'image', reason: expect.stringMatching(/meta\.json/) },
    ]);
    expect(problems({ node: '' })).toEqual([{ parameter: 'node', reason: expect.stringMatching(/empty/) }]);
    expect(problems({ node: ['a', 'b'] })).toEqual([
      { parameter: 'node', reason: 'must be given once, as text' },
    ]);
    expect(problems({ nod: 'a' })).toEqual([
      { parameter: 'nod', reason: 'unknown parameter (known: node, image)' },
    ]);
    expect(
      problems({ node: 'x'.repeat(65), imageId: 'i' })
        .map((p) => p.parameter)
        .sort(),
    ).toEqual(['imageId', 'node']);
  });
});
