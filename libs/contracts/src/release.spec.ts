import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compareVersions, readReleaseInfo } from './release';

describe('release identity', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  function packageDir(version: string, previous?: unknown): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'icc-release-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'x', version }));
    if (previous !== undefined) {
      mkdirSync(path.join(dir, 'release'));
      writeFileSync(path.join(dir, 'release', 'previous-release.json'), JSON.stringify(previous));
    }
    mkdirSync(path.join(dir, 'dist', 'libs'), { recursive: true });
    return dir;
  }

  it('reads the version of the nearest package.json above it and the previous release beside it', () => {
    const dir = packageDir('2.3.4', { version: '2.2.0', commit: 'a'.repeat(40) });
    expect(readReleaseInfo(path.join(dir, 'dist', 'libs'))).toEqual({
      version: '2.3.4',
      previous: { version: '2.2.0', commit: 'a'.repeat(40) },
    });
    expect(readReleaseInfo(packageDir('1.0.0'))).toEqual({ version: '1.0.0', previous: null });
  });

  it('refuses a previous-release file with a bad field, naming it', () => {
    const dir = packageDir('2.3.4', { version: '2.2', commit: 'c88e1ff' });
    expect(() => readReleaseInfo(dir)).toThrow(
      /version: must be a version like 1\.2\.3.*commit: must be a full/,
    );
  });

  it('orders versions by major, minor, patch as numbers', () => {
    expect(compareVersions('1.10.0', '1.9.9')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0', '1.1.0')).toBeLessThan(0);
    expect(compareVersions('2.0.0-rc1', '2.0.0')).toBe(0);
    expect(() => compareVersions('1.0', '1.0.0')).toThrow(/not a release version: "1.0"/);
  });
});
