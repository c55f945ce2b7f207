import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { type CacheSide, isErrno, mapIoError, readFolderOrEmpty } from './fs-errors';

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, open '/cache/x'`), { code });
}

function mapped(code: string, side: CacheSide): unknown {
  return mapIoError(errno(code), { side, what: `${side} node n1, image img` }, 'writing');
}

describe('isErrno', () => {
  // Node's error for ESTALE on the GlusterFS bed: no name, only the number.
  const estale = Object.assign(new Error('Unknown system error -116, scandir'), {
    code: 'Unknown system error -116',
    errno: -116,
  });

  it('reads ESTALE (another client removed it) as ENOENT, and as nothing else', () => {
    expect(isErrno(estale, 'ENOENT')).toBe(true);
    expect(isErrno(estale, 'ENOENT', 'ENOTDIR')).toBe(true);
    expect(isErrno(estale, 'EEXIST')).toBe(false);
    expect(isErrno(errno('EIO'), 'ENOENT')).toBe(false);
  });
});

describe('mapIoError', () => {
  it.each([
    ['ENOSPC', 'destination', 'NO_SPACE'],
    ['EDQUOT', 'destination', 'NO_SPACE'],
    ['ENOSPC', 'cache', 'NO_SPACE'],
    ['EROFS', 'destination', 'DESTINATION_READ_ONLY'],
    ['EACCES', 'destination', 'DESTINATION_READ_ONLY'],
    ['EPERM', 'destination', 'DESTINATION_READ_ONLY'],
    ['ENOTDIR', 'destination', 'DESTINATION_READ_ONLY'],
    ['ENOENT', 'source', 'SOURCE_MISSING'],
    ['ELOOP', 'source', 'SOURCE_MISSING'],
    // The same errno at the other end, or for bookkeeping, is a plain (retryable) I/O failure.
    ['EROFS', 'source', 'IO_ERROR'],
    ['EACCES', 'cache', 'IO_ERROR'],
    ['ENOENT', 'destination', 'IO_ERROR'],
    ['EIO', 'destination', 'IO_ERROR'],
    ['EMFILE', 'source', 'IO_ERROR'],
  ] as Array<[string, CacheSide, string]>)('maps %s on the %s side to %s', (code, side, expected) => {
    const error = mapped(code, side);
    expect(error).toBeInstanceOf(ReasonError);
    expect((error as ReasonError).code).toBe(expected);
    expect((error as ReasonError).message).toContain(`${side} node n1, image img: writing failed (${code})`);
    expect((error as ReasonError).cause).toBeInstanceOf(Error);
  });

  it('marks NO_SPACE and IO_ERROR retryable, DESTINATION_READ_ONLY not', () => {
    expect((mapped('ENOSPC', 'destination') as ReasonError).retryable).toBe(true);
    expect((mapped('EIO', 'destination') as ReasonError).retryable).toBe(true);
    expect((mapped('EROFS', 'destination') as ReasonError).retryable).toBe(false);
  });

  it('passes ConductorErrors and non-errno errors through unchanged', () => {
    const conductorError = new ReasonError('LOCK_LOST', 'lost');
    const bug = new TypeError('x is undefined');
    const context = { side: 'destination' as const, what: 'x' };
    expect(mapIoError(conductorError, context, 'a')).toBe(conductorError);
    expect(mapIoError(bug, context, 'a')).toBe(bug);
    expect(mapIoError('a string', context, 'a')).toBe('a string');
  });
});

describe('readFolderOrEmpty', () => {
  let dir = '';
  const context = { side: 'cache' as const, what: 'node n1' };
  beforeEach(async () => {
    dir = await makeTempDir('fs-errors');
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('lists the names, or their Dirents', async () => {
    await fsp.writeFile(path.join(dir, 'a'), '');
    await fsp.mkdir(path.join(dir, 'b'));
    expect((await readFolderOrEmpty(dir, context, 'listing')).sort()).toEqual(['a', 'b']);
    const entries = await readFolderOrEmpty(dir, context, 'listing', { withFileTypes: true });
    expect(entries.map((e) => [e.name, e.isDirectory()]).sort()).toEqual([
      ['a', false],
      ['b', true],
    ]);
  });

  it('answers none for a folder not there yet', async () => {
    expect(await readFolderOrEmpty(path.join(dir, 'missing'), context, 'listing')).toEqual([]);
  });

  it('a file where the folder belongs is an IO_ERROR naming the action, unless ENOTDIR is said to mean none', async () => {
    const file = path.join(dir, 'file');
    await fsp.writeFile(file, '');
    const error = await readFolderOrEmpty(file, context, 'listing images').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReasonError);
    expect(error).toMatchObject({
      code: 'IO_ERROR',
      message: expect.stringMatching(/^node n1: listing images failed \(ENOTDIR\)/),
    });
    expect(await readFolderOrEmpty(file, context, 'listing', { absent: ['ENOENT', 'ENOTDIR'] })).toEqual([]);
  });
});
