import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodeLockFileSystem, stepsNeedSync } from './lock-file-system';
import { StepFileSystem } from './step-file-system';

describe('StepFileSystem: fsyncs where the root is shared, not on a local folder', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-step-fs-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('knows the test machine’s temporary folder for a local file system', async () => {
    expect(await stepsNeedSync(root)).toBe(false);
  });

  it('counts a root it cannot ask as shared (an fsync too many costs little)', async () => {
    expect(await stepsNeedSync(path.join(root, 'not-mounted-yet'))).toBe(true);
  });

  it('fsyncs until the first answer, then not on a local folder', async () => {
    const steps = new StepFileSystem(nodeLockFileSystem, root);
    expect(steps.current.openFolder).toBeDefined();
    steps.refresh();
    await steps.settled();
    expect(steps.current.openFolder).toBeUndefined();
    await steps.current.mkdir(path.join(root, 'made'));
    expect(await fsp.readdir(root)).toEqual(['made']);
  });

  it('keeps fsyncing where the root cannot be asked', async () => {
    const steps = new StepFileSystem(nodeLockFileSystem, path.join(root, 'gone'));
    steps.refresh();
    await steps.settled();
    expect(steps.current.openFolder).toBeDefined();
  });

  it('obeys syncSteps without asking', async () => {
    const on = new StepFileSystem(nodeLockFileSystem, root, true);
    const off = new StepFileSystem(nodeLockFileSystem, path.join(root, 'gone'), false);
    on.refresh();
    off.refresh();
    await Promise.all([on.settled(), off.settled()]);
    expect(on.current.openFolder).toBeDefined();
    expect(off.current.openFolder).toBeUndefined();
  });
});
