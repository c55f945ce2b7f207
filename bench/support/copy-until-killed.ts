/*
 * BENCHMARK ONLY: a process that copies one image with ImageStore (resumable, as the conductor copies)
 * and slows down past `slowAfterBytes`, so that its parent can SIGKILL it at a chosen point.
 * Usage: node dist/bench/support/copy-until-killed.js '<CopyUntilKilledArgs as JSON>'
 */
import { ImageStore } from '@app/image-store';

export interface CopyUntilKilledArgs {
  root: string;
  imageId: string;
  source: string;
  destination: string;
  attemptId: string;
  slowAfterBytes: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '') as CopyUntilKilledArgs;
  const store = new ImageStore({ root: args.root, fsync: false });
  const pause = new Int32Array(new SharedArrayBuffer(4));
  await store.copies.copyImage({
    imageId: args.imageId,
    source: args.source,
    destination: args.destination,
    attemptId: args.attemptId,
    resume: true,
    onProgress: (done) => {
      if (done >= args.slowAfterBytes) Atomics.wait(pause, 0, 0, 20);
    },
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`copy failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
