import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HostBed } from './support/hosts/host-bed';
import { sh } from './support/hosts/host-network';
import { CephfsCluster } from './support/shared-fs/cephfs-cluster';
import { SHARED_FS_KINDS, SharedFsBed, sharedFsLeftovers } from './support/shared-fs/shared-fs-bed';

/*
 * More checks of the CephFS and GlusterFS beds (issue 24), beyond hosts-shared-fs.e2e-spec.ts: only in
 * `npm run campaign -- --only beds` (vitest.config.mts, CAMPAIGN_ONLY), out of npm test's budget. The
 * campaigns that use these beds would fail without them anyway.
 */
/*
 * A full CephFS stalls writes and the MDS's metadata writes instead of failing them, so both clients look
 * hung (how the large chaos campaign on CephFS once ended). The bed must say so, not leave it to a guess.
 */
describe('the cephfs bed, full', () => {
  let bed: SharedFsBed | undefined;

  afterEach(async () => {
    vi.restoreAllMocks();
    const base = bed?.base;
    await bed?.stop();
    bed = undefined;
    if (base) expect(await sharedFsLeftovers(base)).toEqual([]);
  });

  it('reports a full cluster in ceph health, and stop() warns about it', async () => {
    bed = await SharedFsBed.start('cephfs', ['a']);
    const running = bed;
    const cluster = running.fs as CephfsCluster;
    expect(await cluster.fullWarnings()).toEqual([]);
    // A full ratio far below what one write stores makes the OSD full without filling memory.
    await cluster.ceph('osd', 'set-nearfull-ratio', '0.0005');
    await cluster.ceph('osd', 'set-backfillfull-ratio', '0.0007');
    await cluster.ceph('osd', 'set-full-ratio', '0.001');
    const writing = fsp
      .writeFile(path.join(running.mount('a'), 'big'), Buffer.alloc(32 * 1024 * 1024, 1))
      .catch((error: unknown) => error);
    let warnings: string[] = [];
    const deadline = Date.now() + 60_000;
    while (!warnings.some((line) => /full osd/i.test(line)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      warnings = await cluster.fullWarnings();
    }
    expect(warnings.join('\n')).toMatch(/full osd/i);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    bed = undefined; // stopped here: the client whose write may still be blocked goes with it
    await running.stop();
    expect(warn.mock.calls.map((call) => String(call[0])).join('\n')).toMatch(
      /\[cephfs bed\] the cluster is full/,
    );
    expect(await sharedFsLeftovers(running.base)).toEqual([]);
    await writing;
  }, 120_000);
});

/** Does `stat` of `file`, run through `host`'s launcher, answer within `timeoutMs`? */
async function answers(bed: HostBed, host: string, file: string, timeoutMs = 3_000): Promise<boolean> {
  const [command, ...prefix] = bed.launcher(host);
  return sh(
    'timeout',
    ['-s', 'KILL', String(timeoutMs / 1000), command!, ...prefix, 'stat', file],
    timeoutMs + 5_000,
  ).then(
    () => true,
    () => false,
  );
}

// The hosts campaign with --fs runs on it.
describe.each(SHARED_FS_KINDS)('the multi-host bed on %s', (fs) => {
  let bed: HostBed | undefined;
  afterEach(async () => {
    const base = bed?.base;
    await bed?.teardown();
    bed = undefined;
    if (base) expect(await sharedFsLeftovers(base)).toEqual([]);
  });

  it('serves the bridge: a cut link cuts that host’s file system, the others and the machine’s own mount go on', async () => {
    bed = await HostBed.create({ hosts: ['a', 'b'], brokers: 0, fs });
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    for (const host of ['a', 'b']) expect(mounts).toMatch(new RegExp(` ${bed.cacheRoot(host)} .* fuse\\.`));
    await fsp.writeFile(path.join(bed.cacheRoot('a'), 'hello'), 'from a');
    expect(await fsp.readFile(path.join(bed.root, 'hello'), 'utf8')).toBe('from a');
    await bed.cutLink('a');
    // A new name: nothing cached for it, so the client must ask the servers it can no longer reach.
    await fsp.writeFile(path.join(bed.cacheRoot('b'), 'after-cut'), 'from b');
    expect(await answers(bed, 'a', path.join(bed.cacheRoot('a'), 'after-cut'))).toBe(false);
    expect(await answers(bed, 'b', path.join(bed.cacheRoot('b'), 'after-cut'))).toBe(true);
    await bed.restoreLink('a');
    const deadline = Date.now() + 60_000;
    while (!(await answers(bed, 'a', path.join(bed.cacheRoot('a'), 'after-cut')))) {
      if (Date.now() > deadline) throw new Error(`host a's ${fs} mount did not come back after the link did`);
    }
  });
});
