import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { readSecretText } from './credential-file';

describe('secret files', () => {
  let dir = '';
  const file = async (name: string, content: string, mode: number) => {
    const at = path.join(dir, name);
    await fsp.writeFile(at, content);
    await fsp.chmod(at, mode);
    return at;
  };
  beforeAll(async () => {
    dir = await makeTempDir('secret-files');
  });
  afterAll(() => removeDir(dir));

  it('reads one line, without its line break, from a file only its owner (or group) may read', async () => {
    expect(readSecretText('S', await file('a', 'value\n', 0o600))).toBe('value');
    expect(readSecretText('S', await file('b', 'value\r\n', 0o440))).toBe('value');
  });

  it('refuses what would leak or could be swapped, and says why without the content', async () => {
    await expect(file('c', 'hidden-value\n', 0o604)).resolves.toBeTruthy();
    expect(() => readSecretText('S', path.join(dir, 'c'))).toThrow(
      /^S=\S+c: is readable by every user \(mode 0604\)/,
    );
    const [writable, twoLines, empty] = [
      await file('d', 'x', 0o622),
      await file('e', 'one\ntwo\n', 0o600),
      await file('f', '\n', 0o600),
    ];
    expect(() => readSecretText('S', writable)).toThrow(/is writable by every user \(mode 0622\)/);
    expect(() => readSecretText('S', twoLines)).toThrow(/holds more than one line/);
    expect(() => readSecretText('S', empty)).toThrow(/: is empty$/);
    expect(() => readSecretText('S', dir)).toThrow(/: is not a regular file$/);
    expect(() => readSecretText('S', path.join(dir, 'nope'))).toThrow(/: does not exist$/);
    try {
      readSecretText('S', path.join(dir, 'c'));
    } catch (error) {
      expect((error as Error).message).not.toContain('hidden-value');
    }
  });
});
