import { MultiBar, type SingleBar } from 'cli-progress';
import { formatBytes } from './format';

export interface ProgressUpdate {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
}

interface Row {
  label: string;
  bar?: SingleBar;
  phase?: string;
  /** Plain mode: the last quarter (0..4) printed, so a line goes out per 25 %. */
  quarter: number;
  finished: boolean;
}

export interface ProgressBoardOptions {
  /** Bars on a terminal; plain lines otherwise (logs, CI, a test capturing output). */
  tty: boolean;
  /** Where bars are drawn (bars need a real stream). */
  stream: NodeJS.WriteStream;
  /** Where plain lines go. */
  writeLine: (line: string) => void;
  /** Labels are padded to this width so bars line up. */
  labelWidth?: number;
}

/**
 * One progress row per copy: live bars (cli-progress MultiBar) on a terminal, or plain lines (phase changes,
 * every 25 %, the outcome) when the output is not a terminal. Fed by progress events, which are best
 * effort (dropped or duplicated events only make the display coarser).
 */
export class ProgressBoard {
  private readonly rows = new Map<string, Row>();
  private readonly multi?: MultiBar;

  constructor(private readonly options: ProgressBoardOptions) {
    if (options.tty) {
      this.multi = new MultiBar({
        stream: options.stream,
        format: '{label} |{bar}| {percentage}% {status}',
        barsize: 20,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        autopadding: true,
        fps: 8,
      });
    }
  }

  add(id: string, label: string): void {
    const padded = label.padEnd(this.options.labelWidth ?? 0);
    const row: Row = { label: padded, quarter: -1, finished: false };
    if (this.multi) row.bar = this.multi.create(1, 0, { label: padded, status: 'queued' });
    this.rows.set(id, row);
  }

  update(id: string, update: ProgressUpdate): void {
    const row = this.rows.get(id);
    if (!row || row.finished) return;
    const total = Math.max(update.bytesTotal, 1);
    const done = Math.min(update.bytesDone, total);
    const status = `${update.phase} ${formatBytes(update.bytesDone)}/${formatBytes(update.bytesTotal)}`;
    if (row.bar) {
      row.bar.setTotal(total);
      row.bar.update(done, { status });
      return;
    }
    const quarter = update.bytesTotal > 0 ? Math.floor((4 * update.bytesDone) / update.bytesTotal) : 0;
    if (update.phase !== row.phase || (update.phase === 'copying' && quarter > row.quarter)) {
      row.phase = update.phase;
      row.quarter = quarter;
      this.options.writeLine(`${row.label}  ${status}`);
    }
  }

  finish(id: string, status: string, complete: boolean): void {
    const row = this.rows.get(id);
    if (!row || row.finished) return;
    row.finished = true;
    if (row.bar) {
      const total = row.bar.getTotal();
      row.bar.update(complete ? total : row.bar.getProgress() * total, { status });
      return;
    }
    this.options.writeLine(`${row.label}  ${status}`);
  }

  /** A message above the bars (or a plain line). */
  log(line: string): void {
    if (this.multi) this.multi.log(`${line}\n`);
    else this.options.writeLine(line);
  }

  stop(): void {
    this.multi?.stop();
  }
}
