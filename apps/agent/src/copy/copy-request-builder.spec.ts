import { describe, expect, it } from 'vitest';
import { UsageError } from '../cli/exit-codes';
import { buildCopyRequest, parseCellId, parseTimeoutSeconds } from './copy-request-builder';

const SHA = 'ab'.repeat(32);

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (error) {
    if (error instanceof UsageError) return error;
    throw error;
  }
  throw new Error('expected a UsageError');
}

describe('buildCopyRequest', () => {
  it('builds a v1 request with only the fields given', () => {
    expect(buildCopyRequest('img.qcow2', { to: 'node-b' }, 'req-1')).toEqual({
      v: 1,
      requestId: 'req-1',
      imageId: 'img.qcow2',
      destination: 'node-b',
    });
    expect(
      buildCopyRequest('img.qcow2', {
        to: 'node-b',
        from: 'node-a',
        sha256: SHA.toUpperCase(),
        size: '42',
        requestId: 'r2',
      }),
    ).toEqual({
      v: 1,
      requestId: 'r2',
      imageId: 'img.qcow2',
      destination: 'node-b',
      source: 'node-a',
      sha256: SHA,
      size: 42,
    });
  });

  it('generates a safe request id by default', () => {
    expect(buildCopyRequest('img', { to: 'n' }).requestId).toMatch(/^icc-[0-9a-f-]{36}$/);
  });

  it.each([
    [{ to: '../x' }, '--to', "must not contain '..'"],
    [{ to: 'n', sha256: 'xyz' }, '--sha256', '64 lowercase'],
    [{ to: 'n', size: '-1' }, '--size', 'whole number'],
    [{ to: 'n', size: '1e3' }, '--size', 'whole number'],
    [{ to: 'n', from: 'n' }, '--from', 'must differ from destination'],
    [{ to: 'n', requestId: 'a/b' }, '--request-id', 'letters, digits'],
  ])('%j is refused naming %s', (flags, flag, reason) => {
    const error = usageError(() => buildCopyRequest('img', flags));
    expect(error.flag).toBe(flag);
    expect(error.message).toContain(reason);
    expect(error.exitCode).toBe(2);
  });

  it('names the image argument, and every flag when several are wrong', () => {
    expect(usageError(() => buildCopyRequest('x.meta.json', { to: 'n' })).flag).toBe('<imageId>');
    const error = usageError(() => buildCopyRequest('img', { to: '/x', sha256: 'no' }));
    expect(error.message).toMatch(/^--to: .*; --sha256: /);
  });
});

describe('parseCellId / parseTimeoutSeconds', () => {
  it('requires a valid cell id', () => {
    expect(parseCellId('prod-1')).toBe('prod-1');
    expect(usageError(() => parseCellId(undefined)).message).toContain('CELL_ID');
    expect(usageError(() => parseCellId('a b')).flag).toBe('--cell');
  });

  it('takes seconds, decimals allowed, positive only', () => {
    expect(parseTimeoutSeconds(undefined, 600)).toBe(600_000);
    expect(parseTimeoutSeconds('1.5', 600)).toBe(1500);
    for (const bad of ['0', '-2', 'soon', ''])
      expect(usageError(() => parseTimeoutSeconds(bad, 1)).flag).toBe('--timeout');
  });
});
