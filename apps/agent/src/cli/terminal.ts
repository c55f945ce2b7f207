/** Where a command writes: stdout for results, stderr for progress and diagnostics. */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  /** Live bars only on a terminal; plain lines when piped or captured. */
  readonly stdoutIsTTY: boolean;
  readonly stderrIsTTY: boolean;
}

export const processTerminal: Terminal = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  get stdoutIsTTY() {
    return process.stdout.isTTY === true;
  },
  get stderrIsTTY() {
    return process.stderr.isTTY === true;
  },
};
