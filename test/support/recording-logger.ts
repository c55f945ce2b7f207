import type { Logger } from '@app/contracts';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: object;
}

/** A logger that records entries (and prints warnings and errors when DEBUG_TESTS is set). */
export function recordingLogger(): Logger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const log = (level: LogEntry['level']) => (obj: object, msg: string) => {
    entries.push({ level, msg, obj });
    if (process.env.DEBUG_TESTS && (level === 'warn' || level === 'error')) console.log(level, msg, obj);
  };
  return { entries, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}
