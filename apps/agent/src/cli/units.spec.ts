import { describe, expect, it } from 'vitest';
import { formatDuration, parseBytes, parseDuration } from './units';

describe('flag units', () => {
  it.each([
    ['14d', 14 * 86_400_000],
    ['36h', 36 * 3_600_000],
    ['90m', 5_400_000],
    ['30s', 30_000],
    ['250ms', 250],
    ['1.5h', 5_400_000],
    ['2w', 14 * 86_400_000],
    ['0', 0],
    [' 10 D ', 864_000_000],
  ])('duration %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '10', '-1d', '1y', 'd', '1e3s', '1d2h', '9'.repeat(20) + 'w'])('refuses duration %j', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );

  it.each([
    ['123', 123],
    ['0', 0],
    ['10B', 10],
    ['4K', 4096],
    ['500G', 500 * 1024 ** 3],
    ['500GiB', 500 * 1024 ** 3],
    ['500 gb', 500 * 1024 ** 3],
    ['1.5T', 1.5 * 1024 ** 4],
  ])('bytes %s', (text, bytes) => expect(parseBytes(text)).toBe(bytes));

  it.each(['', '-5', '5X', 'G', '1,5G', '99999999P'])('refuses bytes %j', (text) =>
    expect(parseBytes(text)).toBeUndefined(),
  );

  it.each([
    [14 * 86_400_000, '14d'],
    [3_600_000, '1h'],
    [36 * 3_600_000, '36h'],
    [5_400_000, '90m'],
    [30_000, '30s'],
    [1_500, '1500ms'],
    [0, '0'],
  ])('shows duration %d as %s, which parses back to it', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration(text)).toBe(ms);
  });
});
