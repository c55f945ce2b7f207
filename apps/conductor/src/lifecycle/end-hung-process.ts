/**
 * Ends this process at once, with SIGKILL sent to itself, after writing `message` to stderr.
 *
 * Not process.exit(): Node's exit joins its file-system threads (libuv's threadpool shutdown), and a thread
 * in a file call that never returns never joins, so process.exit() and process.reallyExit() hang for good
 * on a hung mount (measured with four reads of a FIFO that has no writer). A signal ends every thread in
 * the kernel instead; only a FUSE request its server has already read and never answers outlives even
 * that (docs/deployment.md). Not a catchable signal either: Nest's shutdown hooks would run the graceful
 * stop, which needs the file system. The line goes to stderr synchronously (pino writes through the same
 * stuck threads), so the reason is on record before the process is gone.
 */
export function endHungProcess(message: string): void {
  process.stderr.write(`conductor: ${message}\n`);
  process.kill(process.pid, 'SIGKILL');
}
