import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { LockFileSystem } from './lock-file-system';
import type { LockTimings } from './lock-timings';
import { NodeLockManager } from './node-lock-manager';

/**
 * For specs of lock managers on one fresh temp folder per test (call it inside `describe`): `root` is that
 * folder, `manager(id, fs?)` a manager on it; after each test every manager releases all and the folder goes.
 */
export function tempManagers(prefix: string, timings: Partial<LockTimings>) {
  let root = '';
  const managers: NodeLockManager[] = [];
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });
  return {
    get root() {
      return root;
    },
    manager(conductorId: string, fs?: LockFileSystem, requireNodeFolder = false): NodeLockManager {
      const m = new NodeLockManager({ root, conductorId, timings, fs, requireNodeFolder });
      managers.push(m);
      return m;
    },
  };
}
