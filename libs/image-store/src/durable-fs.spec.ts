import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { linkUnlessPresent, writeFileOnce } from './durable-fs';

/*
 * First writer wins by link(2). On sshfs a link to a taken name fails EPERM, not EEXIST (seen when two
 * conductors started on one sshfs mount at once: the second one died making the cell's header key).
 */
describe('first writer wins by link', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir('durable-fs');
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await removeDir(dir);
  });

  const sshfsLink = () =>
    vi
      .spyOn(fsp, 'link')
      .mockRejectedValue(Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' }));

  it('links a new name, and says taken for a name that is there (EEXIST)', async () => {
    await fsp.writeFile(path.join(dir, 'a'), 'mine');
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(true);
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(false);
  });

  it('takes an error as taken when the name is there afterwards (sshfs: EPERM), and throws it otherwise', async () => {
    await fsp.writeFile(path.join(dir, 'a'), 'mine');
    await fsp.writeFile(path.join(dir, 'b'), 'theirs');
    sshfsLink();
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(false);
    await expect(linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'c'))).rejects.toThrow(/EPERM/);
  });

  it('writeFileOnce: the second writer on sshfs gets false, the first one’s content stays, no temporary file', async () => {
    expect(await writeFileOnce(dir, 'answer.json', 'first', false)).toBe(true);
    sshfsLink();
    expect(await writeFileOnce(dir, 'answer.json', 'second', false)).toBe(false);
    expect(await fsp.readFile(path.join(dir, 'answer.json'), 'utf8')).toBe('first');
    expect(await fsp.readdir(dir)).toEqual(['answer.json']);
  });
});
