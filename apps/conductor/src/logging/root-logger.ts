import pino from 'pino';

/**
 * The conductor's logger: JSON lines on stdout, written synchronously. pino's default destination writes
 * through libuv's thread pool, the same four threads that every file call uses; when CACHE_ROOT is a
 * network mount that stops answering (a cut link, a dead sshfs, an NFS hard mount), those threads hang in
 * file calls and the log stops exactly when an operator needs it. A synchronous write to stdout (a pipe
 * to journald or a container runtime) needs no pool thread.
 */
export function createRootLogger(level: string, base: Record<string, string>): pino.Logger {
  return pino({ level, base }, pino.destination({ fd: 1, sync: true }));
}
