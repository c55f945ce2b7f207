import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh temp folder per test, removed afterwards (tests run in parallel and leave nothing behind). */
export async function makeTempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `icc-${prefix}-`));
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
}
