import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from './support/child-processes';
import { circles, folderGraph, importGraph } from './support/import-graph';

/**
 * No import circle in the product code, between files or between the folders of an app or a lib: a
 * circle means two rooms that cannot be read, tested or moved one without the other. Type-only imports
 * count (a circle of types is still one).
 */
describe('import circles', () => {
  const graph = importGraph(PROJECT_ROOT, ['apps', 'libs']);

  it('reads the whole product code', () => {
    expect(graph.size).toBeGreaterThan(200);
    expect(graph.get('apps/conductor/src/main.ts')).toContain('libs/contracts/src/index.ts');
    expect(graph.get('apps/conductor/src/lifecycle/conductor-lifecycle.ts')).toContain(
      'apps/conductor/src/jobs/cancel-watch.ts',
    );
  });

  it('has none between files', () => {
    expect(circles(graph)).toEqual([]);
  });

  it('has none between the folders of an app or a lib', () => {
    expect(circles(folderGraph(graph))).toEqual([]);
  });

  it('finds a circle of files and one of folders when there is one', () => {
    const made = new Map([
      ['apps/x/src/a/one.ts', new Set(['apps/x/src/b/two.ts'])],
      ['apps/x/src/b/two.ts', new Set(['apps/x/src/b/three.ts'])],
      ['apps/x/src/b/three.ts', new Set(['apps/x/src/a/one.ts'])],
      ['apps/x/src/b/four.ts', new Set(['apps/x/src/c/five.ts'])],
      ['apps/x/src/c/five.ts', new Set(['apps/x/src/b/two.ts'])],
    ]);
    expect(circles(made)).toEqual([['apps/x/src/a/one.ts', 'apps/x/src/b/three.ts', 'apps/x/src/b/two.ts']]);
    expect(circles(folderGraph(made))).toEqual([['apps/x/src/a', 'apps/x/src/b', 'apps/x/src/c']]);
  });
});
