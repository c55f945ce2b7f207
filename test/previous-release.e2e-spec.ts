import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from './support/child-processes';
import { previousRelease, releaseCacheFolder } from './support/previous-release';

describe('the previous release for the mixed-version campaign', () => {
  it('fails at once, with the git command that fetches it, when this clone lacks the recorded commit', () => {
    const commit = '0123456789abcdef0123456789abcdef01234567';
    expect(() => previousRelease(undefined, { version: '0.0.9', commit })).toThrow(
      `the previous release 0.0.9 (commit ${commit}, release/previous-release.json) is not in this clone; ` +
        `fetch it with: git -C ${PROJECT_ROOT} fetch origin ${commit}`,
    );
  });

  it('is built outside the clone, under the user cache folder', () => {
    expect(releaseCacheFolder().startsWith(PROJECT_ROOT)).toBe(false);
    expect(releaseCacheFolder()).toMatch(/\/image-cache-conductor\/releases$/);
  });
});
