import { describe, expect, it } from 'vitest';
import { parseLogLines, waitForLogLine } from './conductor-log';

describe('conductor log', () => {
  it('keeps the complete JSON lines only', () => {
    const text = 'npm noise\n{"level":30,"msg":"conductor started"}\n{"level":30,"msg":"consum';
    expect(parseLogLines(text)).toEqual([{ level: 30, msg: 'conductor started' }]);
  });

  it('waits for a matching line, and fails early with the reason once the process is gone', async () => {
    let text = '';
    let gone: string | undefined;
    const wait = (timeoutMs: number) =>
      waitForLogLine((l) => l.msg === 'consuming', {
        lines: () => parseLogLines(text),
        gone: () => gone,
        timedOut: () => 'no consuming line',
        timeoutMs,
      });
    const found = wait(10_000);
    text = '{"level":30,"msg":"consuming"}\n';
    await expect(found).resolves.toMatchObject({ msg: 'consuming' });
    text = '';
    gone = 'exited with code 1';
    await expect(wait(10_000)).rejects.toThrow('exited with code 1');
    gone = undefined;
    await expect(wait(0)).rejects.toThrow('no consuming line');
  });
});
