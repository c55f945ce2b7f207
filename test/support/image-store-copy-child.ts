/**
 * A separate process that runs one ImageStore.copies.copyImage, for test/image-store-kill.e2e-spec.ts
 * and test/image-store-resume.e2e-spec.ts.
 * Usage: node dist/test/support/image-store-copy-child.js '<CopyChildArgs as JSON>'
 * Prints the outcome as one JSON line on stdout; exits 1 with the error on stderr.
 */
import { ImageStore } from '@app/image-store';
import { countReadsOf } from './source-read-counter';

export interface CopyChildArgs {
  root: string;
  imageId: string;
  source: string;
  destination: string;
  attemptId: string;
  /**
   * After this many bytes, block this long after every chunk. A 256 MiB copy takes well under a second
   * on a fast disk; slowing its second half gives the parent a wide window to SIGKILL it half-way.
   */
  slowAfterBytes?: number;
  slowMsPerChunk?: number;
  /** Resume a dead attempt's partial copy, as the conductor does. */
  resume?: boolean;
  /** Count the bytes read from the source image into this file (test/support/source-read-counter.ts). */
  countSourceReadsTo?: string;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '') as CopyChildArgs;
  const store = new ImageStore({ root: args.root });
  if (args.countSourceReadsTo)
    countReadsOf(store.entries.imagePath(args.source, args.imageId), args.countSourceReadsTo);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const outcome = await store.copies.copyImage({
    imageId: args.imageId,
    source: args.source,
    destination: args.destination,
    attemptId: args.attemptId,
    resume: args.resume ?? false,
    onProgress: (done) => {
      // A synchronous sleep, like a paused or overloaded process: the event loop stops too.
      if (args.slowMsPerChunk && done >= (args.slowAfterBytes ?? 0)) {
        Atomics.wait(pause, 0, 0, args.slowMsPerChunk);
      }
    },
  });
  process.stdout.write(JSON.stringify({ ok: true, outcome }) + '\n');
}

main().catch((error: unknown) => {
  process.stderr.write(
    `copy child failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
