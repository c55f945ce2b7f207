import { describe, expect, it } from 'vitest';
import { sleep, waitFor } from './support/async';
import { ConductorProcess } from './support/conductor-process';
import { sshfsTestbed } from './support/sshfs-testbed';

/**
 * A conductor whose CACHE_ROOT stops answering (its FUSE server frozen: every file call waits in the
 * kernel, as on an NFS `hard` mount of an unreachable server) can finish nothing through the file system
 * again, while its broker connection stays up and keeps its unacked deliveries. It must leave by itself
 * (CACHE_ROOT_HANG_EXIT_MS), and really end although its file-system threads are stuck, where
 * process.exit() would wait for them for good.
 */
describe('conductor: its CACHE_ROOT mount stops answering', () => {
  const { bed, mountCellRoot } = sshfsTestbed(['node-a', 'node-b'], 'hung-mount');

  it('logs the hang and ends itself (SIGKILL) once a read has had no answer for the bound', async () => {
    const c = bed.cell!;
    const { sshfs, mnt } = await mountCellRoot();
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv({
        CACHE_ROOT: mnt,
        CONDUCTOR_ID: 'hung-mount',
        CACHE_ROOT_PROBE_MS: '200',
        CACHE_ROOT_HANG_EXIT_MS: '2000',
      }),
      120_000,
    ).ready(60_000);

    sshfs.freeze(mnt);
    // On stderr, written synchronously: pino's own writes go through the stuck file-system threads.
    // Far above the 2 s bound: a generous wait for a loaded machine, not a timing claim.
    const hangLine = /conductor: CACHE_ROOT hangs: a read of .*\.icc-header-key has had no answer for \d+ ms/;
    await waitFor(() => hangLine.test(conductor.child.output.join('')), 'the hang line', 60_000);
    // Its SIGKILL has ended it while the mount was still frozen in every run but one, where it was still
    // there 60 s later: a killed process whose FUSE request was already taken by the (now frozen) server can
    // stay in the kernel until the request is answered, as on an NFS `hard` mount of a server that is down.
    // So: the SIGKILL within a while, at the latest once the mount answers again (then the host's
    // supervisor starts its successor).
    const exitedFrozen = await Promise.race([
      conductor.exited().then(() => true),
      sleep(10_000).then(() => false),
    ]);
    sshfs.thaw(mnt);
    const exit = await Promise.race([conductor.exited(), sleep(30_000).then(() => 'still running')]);
    expect(exit, `exited while the mount was frozen: ${exitedFrozen}`).toEqual({
      code: null,
      signal: 'SIGKILL',
    });
  });
});
