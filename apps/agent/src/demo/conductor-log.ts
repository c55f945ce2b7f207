/**
 * Reading a conductor's JSON log (pino, one object a line), for whoever runs a conductor as a child
 * process and waits for what it says: the demo, and the tests' conductor processes.
 */

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** The complete JSON lines of `text`; other output and a line still being written are skipped. */
export function parseLogLines(text: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as LogLine);
    } catch {
      // a line still being written
    }
  }
  return lines;
}

export interface LogWait {
  /** The lines so far. */
  lines: () => LogLine[] | Promise<LogLine[]>;
  /** Why no such line can come any more (the process exited), or undefined while it runs. */
  gone: () => string | undefined | Promise<string | undefined>;
  /** The error message when `timeoutMs` passed first. */
  timedOut: () => string | Promise<string>;
  timeoutMs: number;
  cancel?: AbortSignal;
}

/** Polls the log until a line matches; fails early once the process is gone. */
export async function waitForLogLine(predicate: (line: LogLine) => boolean, wait: LogWait): Promise<LogLine> {
  const deadline = Date.now() + wait.timeoutMs;
  for (;;) {
    const found = (await wait.lines()).find(predicate);
    if (found) return found;
    if (wait.cancel?.aborted) throw wait.cancel.reason;
    const gone = await wait.gone();
    if (gone !== undefined) throw new Error(gone);
    if (Date.now() > deadline) throw new Error(await wait.timedOut());
    await new Promise((r) => setTimeout(r, 50));
  }
}
