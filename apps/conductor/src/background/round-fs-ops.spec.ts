import { describe, expect, it } from 'vitest';
import { RoundFsOps } from './round-fs-ops';

describe('RoundFsOps', () => {
  it('counts each call of a seam’s methods, which still run on the seam itself', async () => {
    class Folder {
      private readonly names = ['a', 'b'];
      async list(): Promise<string[]> {
        return [...this.names];
      }
    }
    const ops = new RoundFsOps();
    const folder = ops.seam(new Folder());
    const stat = ops.fn(async (p: string) => p.length);
    expect(await folder.list()).toEqual(['a', 'b']);
    expect(await folder.list()).toEqual(['a', 'b']);
    expect(await stat('/x')).toBe(2);
    expect(ops.take()).toBe(3);
    expect(ops.take()).toBe(0);
  });
});
