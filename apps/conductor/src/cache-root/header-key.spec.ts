import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from './header-key';

describe('loadOrCreateHeaderKey', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-key-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('creates one key for all conductors of the cell, even when they start together, readable by its owner only', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateHeaderKey(root)));
    expect(keys[0]).toHaveLength(32);
    for (const key of keys) expect(key.equals(keys[0]!)).toBe(true);
    expect(await fsp.readdir(root)).toEqual([HEADER_KEY_FILE]);
    expect((await fsp.stat(path.join(root, HEADER_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect((await loadOrCreateHeaderKey(root)).equals(keys[0]!)).toBe(true);
  });

  it('refuses a damaged key file, naming it', async () => {
    await fsp.writeFile(path.join(root, HEADER_KEY_FILE), 'short\n');
    await expect(loadOrCreateHeaderKey(root)).rejects.toThrow(/\.icc-header-key: must hold 64 lowercase hex/);
  });
});
