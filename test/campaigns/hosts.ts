import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect } from 'amqplib';
import { cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { declareCellTopology } from '@app/messaging';
import { type Child, type ChildProcessPool, compiled } from '../support/child-processes';
import { ResultsTap, answeredLines, errorLines } from '../support/conductor-harness';
import { HostBed } from '../support/hosts/host-bed';
import type { CephfsCluster } from '../support/shared-fs/cephfs-cluster';
import { GLUSTER_NO_CLIENT_CACHE } from '../support/shared-fs/gluster-volume';
import type { PublishBatch, RequesterAnswer } from '../support/hosts/requester';
import { writeRandomFile } from '../support/image-store-fixtures';
import { reportFile } from '../support/campaign-report-file';
import { uniqueCellId } from '../support/rabbitmq';
import { partialCopyUnderWay, waitReconnected } from './broker-faults';
import { type CampaignRun, type Cleanups, adminToken, bySize, tally } from './campaign-kit';
import { sleep } from '../support/async';
import { FinalPathsWatcher, lockLeftovers, tmpLeftovers, verifyCopies } from '../support/cell-observers';
import { ConductorFleet, type FleetMember } from './conductor-fleet';
import { judgeHoldLogs } from './hold-log-judge';
import { keepLeftoverEvidence } from './leftover-evidence';
import { HANG_LINE, HostSupervisor } from './host-supervisor';

const MiB = 1024 * 1024;

export type HostFaultKind =
  | 'broker'
  | 'partition'
  | 'mount'
  | 'hang'
  | 'kill'
  | 'pause'
  /** CephFS only: the host's client evicted by the MDS (blocklisted), later mounted again. */
  | 'evict'
  /** CephFS only: a partition longer than the session autoclose, so the MDS evicts the client meanwhile. */
  | 'long-partition';

/**
 * CephFS's session timings on the campaign's bed (seconds): short, so that a long partition outlives
 * them within a campaign; production keeps CephFS's defaults (60 s / 300 s, docs/deployment.md).
 */
const CEPH_CAMPAIGN_SESSION = { sessionTimeoutS: 30, sessionAutocloseS: 35 };
/** The CephFS faults per size (0 on other file systems). */
const CEPH_FAULTS = { ci: { evict: 1, 'long-partition': 1 }, large: { evict: 3, 'long-partition': 2 } };

export interface HostsParams {
  conductorHosts: number;
  nodes: number;
  images: number;
  imageBytes: [number, number];
  /** How many faults of each kind, in seeded order. */
  faults: Record<HostFaultKind, number>;
  /** Outage of a cluster node; cut of a host's link (longer than LOCK_STALE_MS); dead mount; SIGSTOP. */
  brokerStopMs: [number, number];
  partitionMs: [number, number];
  mountDownMs: [number, number];
  /** How long a frozen mount stays frozen after its conductor left (it must leave first). */
  hangExtraMs: [number, number];
  pauseMs: [number, number];
  gapMs: [number, number];
  requestsPerWave: number;
  /**
   * The broker list each conductor gets: 'one' (the node of its own index, until AMQP_URL takes a list)
   * or 'all' (the three nodes, comma-separated, its own first).
   */
  brokersPerConductor: 'one' | 'all';
  /** Conductors speak mutual TLS (amqps://) to the cluster (HOSTS_TLS=1, `npm run campaign -- --tls`). */
  tls: boolean;
  settleMs: number;
}

export const HOSTS_SIZES = {
  ci: {
    conductorHosts: 3,
    nodes: 6,
    images: 6,
    imageBytes: [1 * MiB, 8 * MiB],
    faults: { broker: 1, partition: 1, mount: 1, hang: 1, kill: 1, pause: 1, evict: 0, 'long-partition': 0 },
    brokerStopMs: [2_000, 4_000],
    partitionMs: [6_000, 8_000],
    mountDownMs: [1_000, 3_000],
    hangExtraMs: [0, 2_000],
    pauseMs: [5_500, 7_000],
    gapMs: [200, 1_500],
    requestsPerWave: 6,
    brokersPerConductor: 'one',
    tls: false,
    settleMs: 240_000,
  },
  large: {
    conductorHosts: 4,
    nodes: 12,
    images: 16,
    imageBytes: [1 * MiB, 16 * MiB],
    faults: { broker: 4, partition: 4, mount: 4, hang: 4, kill: 4, pause: 4, evict: 0, 'long-partition': 0 },
    brokerStopMs: [2_000, 8_000],
    partitionMs: [6_000, 35_000],
    mountDownMs: [1_000, 5_000],
    hangExtraMs: [0, 10_000],
    pauseMs: [5_500, 10_000],
    gapMs: [200, 3_000],
    requestsPerWave: 10,
    brokersPerConductor: 'one',
    tls: false,
    settleMs: 600_000,
  },
} satisfies Record<string, HostsParams>;

/** Sshfs mtimes have whole seconds: the stale time must be several heartbeats (issue 18 ran 4000). */
export const HOSTS_LOCK_TIMINGS = {
  staleMs: 4_000,
  updateMs: 1_000,
  safetyMarginMs: 1_500,
  pollMs: 50,
};

/** HOSTS_BROKERS=one|all picks the broker list of each conductor (default one; see HostsParams). */
function brokersPerConductor(): HostsParams['brokersPerConductor'] {
  const value = process.env.HOSTS_BROKERS ?? 'one';
  if (value !== 'one' && value !== 'all')
    throw new Error(`HOSTS_BROKERS must be one or all (got ${JSON.stringify(value)})`);
  return value;
}

export function hostsTestTimeoutMs(run: CampaignRun): number {
  const p = bySize(run, HOSTS_SIZES);
  const cephFaults = run.fs === 'cephfs' ? Object.values(bySize(run, CEPH_FAULTS)) : [];
  const faults = [...Object.values(p.faults), ...cephFaults].reduce((a, b) => a + b, 0);
  // Bed set-up (a 3-node cluster on a loaded 2-core machine takes a minute or more), each fault with its
  // recovery, the settle time, and the teardown.
  return 240_000 + faults * 90_000 + p.settleMs;
}

interface FaultRecord {
  kind: HostFaultKind;
  target: string;
  atMs: number;
  heldMs: number;
  struckMidCopy: boolean;
  /** From the end of the fault (restart, restore, resume) until the affected conductor was back. */
  conductorBackMs: number | null;
  /** From the end of the fault until a request published then had its final answer. */
  probeAnsweredMs: number | null;
}

/**
 * The across-hosts campaign (issue 13): conductors on ≥3 simulated hosts (own namespace, own sshfs mount
 * of one CACHE_ROOT), a 3-node RabbitMQ cluster, requests from a requester host, and seeded faults: the
 * broker node a conductor uses stopped and started, a host's link cut past LOCK_STALE_MS, a host's mount
 * killed and re-made, a host's mount frozen until its conductor leaves by itself (CACHE_ROOT_HANG_EXIT_MS)
 * and is restarted by the host's supervisor, SIGKILL (and restart) and SIGSTOP past LOCK_STALE_MS.
 * Afterwards every request must have a final answer, every destination verify, the hold logs show no two
 * holders, nothing be left.
 */
export async function runHostsCampaign(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<{ violations: string[]; figures: Record<string, unknown> }> {
  const sized = bySize(run, HOSTS_SIZES);
  const p: HostsParams = {
    ...sized,
    faults: { ...sized.faults, ...(run.fs === 'cephfs' ? bySize(run, CEPH_FAULTS) : {}) },
    brokersPerConductor: brokersPerConductor(),
    tls: process.env.HOSTS_TLS === '1',
  };
  const rng = run.rng;
  const violations: string[] = [];
  const conductorHosts = Array.from({ length: p.conductorHosts }, (_, i) => `h${i + 1}`);
  const setUpStarted = performance.now();
  // CAMPAIGN_FS=cephfs|glusterfs: every host mounts a CephFS or GlusterFS served on the bridge (else sshfs).
  const bed = await HostBed.create({
    hosts: [...conductorHosts, 'rq'],
    brokers: 3,
    tls: p.tls,
    fs: run.fs === 'local' ? 'sshfs' : run.fs,
    fsOptions: {
      ceph: CEPH_CAMPAIGN_SESSION,
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    },
  });
  cleanups.add('host bed', () => bed.teardown());
  const setUpMs = Math.round(performance.now() - setUpStarted);
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const cluster = bed.brokers();

  // The cell, made through the machine's own view of the served folder.
  const nodes = Array.from({ length: p.nodes }, (_, i) => `node-${i}`);
  const store = new ImageStore({ root: bed.root, fsync: false });
  for (const node of nodes) await store.markers.registerNode(node, 'hosts-campaign');
  const planRng = rng.fork('plan');
  const seeds = new Map<string, { sha256: string; size: number; node: string }>();
  for (let i = 0; i < p.images; i++) {
    const imageId = `img-${i}.raw`;
    const node = nodes[i % nodes.length]!;
    const staging = path.join(bed.base, `seed-${imageId}`);
    const size = planRng.int(p.imageBytes[0], p.imageBytes[1]);
    const sha256 = await writeRandomFile(staging, size);
    await store.imports.importImage(node, imageId, staging);
    await fsp.rm(staging);
    seeds.set(imageId, { sha256, size, node });
  }
  const pairs: Array<{ imageId: string; destination: string }> = [];
  for (const [imageId, seed] of seeds)
    for (const destination of nodes.filter((n) => n !== seed.node)) pairs.push({ imageId, destination });
  planRng.shuffle(pairs);

  const cellId = uniqueCellId('h');
  const retryDelaysMs = [200, 500, 1000];
  const topology = cellTopology(cellId, { retryDelaysMs });
  const admin = await connect(cluster.urls[0]!);
  await declareCellTopology(await admin.createChannel(), topology);
  await admin.close();
  const tap = await ResultsTap.open(topology, cluster.urls);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher(50);
  cleanups.add('final-path watcher', () => watcher.stop());
  for (const pair of pairs)
    watcher.watch(store.entries.imagePath(pair.destination, pair.imageId), seeds.get(pair.imageId)!);

  // The requester host.
  const requester = pool.fork(compiled('test/support/hosts/requester.ts'), [JSON.stringify(cluster.urls)], {
    hardTimeoutMs: bySize(run, { ci: 900_000, large: 3_600_000 }),
    launcher: bed.launcher('rq'),
  }) as Child<unknown> as Child<RequesterAnswer>;
  await requester.waitFor((m) => m.batch === -1, 30_000);

  // Conductors: one per host at first; a killed one is restarted on its host under a new id.
  const holdLogs = path.join(bed.base, 'holds');
  await fsp.mkdir(holdLogs);
  const hostOf = (id: string) => id.split('-')[0]!;
  const brokerIndexOf = (id: string) => conductorHosts.indexOf(hostOf(id)) % cluster.urls.length;
  const brokerList = (id: string) => {
    const first = brokerIndexOf(id);
    const order = [first, ...cluster.urls.map((_, i) => i).filter((i) => i !== first)];
    const urls = p.tls ? cluster.tlsUrls : cluster.urls;
    return (p.brokersPerConductor === 'one' ? [first] : order).map((i) => urls[i]!).join(',');
  };
  const fleet = new ConductorFleet(
    pool,
    (id) => ({
      CELL_ID: cellId,
      CACHE_ROOT: bed.cacheRoot(hostOf(id)),
      AMQP_URL: brokerList(id),
      ...(p.tls ? bed.brokerTlsEnv : {}),
      ADMIN_PORT: '0',
      ADMIN_HOST: '0.0.0.0',
      COPY_CONCURRENCY: '4',
      LOCK_STALE_MS: String(HOSTS_LOCK_TIMINGS.staleMs),
      LOCK_UPDATE_MS: String(HOSTS_LOCK_TIMINGS.updateMs),
      LOCK_SAFETY_MARGIN_MS: String(HOSTS_LOCK_TIMINGS.safetyMarginMs),
      LOCK_POLL_MS: String(HOSTS_LOCK_TIMINGS.pollMs),
      LOCK_WAIT_MS: '30000',
      MAX_ATTEMPTS: '12',
      RETRY_DELAYS_MS: retryDelaysMs.join(','),
      SHUTDOWN_GRACE_MS: '10000',
      LEFTOVER_SWEEP_MS: '3000',
      LOG_LEVEL: 'info',
      HOLD_LOG: path.join(holdLogs, `${id}.jsonl`),
    }),
    adminToken(run),
    bySize(run, { ci: 900_000, large: 3_600_000 }),
    (id) => ({
      launcher: bed.launcher(hostOf(id)),
      script: compiled('test/support/hosts/hold-logging-conductor.ts'),
      adminHost: bed.address(hostOf(id)),
    }),
  );
  const generation = new Map<string, number>();
  const startOn = (host: string) => {
    const n = (generation.get(host) ?? 0) + 1;
    generation.set(host, n);
    return fleet.start(`${host}-${n}`);
  };
  await Promise.all(conductorHosts.map((h) => startOn(h)));
  fleet.startSampling(1_000);
  // Each host's service manager (systemd, Restart=always): a conductor that left by itself because its
  // CACHE_ROOT stopped answering is started again once the host's mount is usable.
  const supervisor = new HostSupervisor(fleet, {
    hostOf,
    start: (host) => startOn(host),
    mountUsable: (host) => bed.mountUsable(host),
    elapsedMs: elapsed,
    delayMs: 1_000,
    giveUpMs: 120_000,
  });
  try {
    // Requests: waves through the requester host; a reserved pair per fault serves as its recovery probe.
    const ids: string[] = [];
    const requested = new Set<string>();
    const probePairs = pairs.splice(
      0,
      Object.values(p.faults).reduce((a, b) => a + b, 0),
    );
    let cursor = 0;
    let batches = 0;
    const publish = async (wave: Array<{ imageId: string; destination: string }>): Promise<string[]> => {
      const batch = batches++;
      const messages = wave.map((pair) => {
        const requestId = `hc-${ids.length}`;
        ids.push(requestId);
        requested.add(`${pair.imageId}|${pair.destination}`);
        const seed = seeds.get(pair.imageId)!;
        const body: Record<string, unknown> = { v: 1, requestId, ...pair };
        if (planRng.chance(0.5)) Object.assign(body, { sha256: seed.sha256, size: seed.size });
        return { body, messageId: requestId };
      });
      requester.process.send({
        batch,
        queue: topology.requestQueue.name,
        messages,
        deadlineMs: 60_000,
      } satisfies PublishBatch);
      const answer = await requester.waitFor((m) => m.batch === batch, 90_000);
      if ('error' in answer) violations.push(`requester could not publish batch ${batch}: ${answer.error}`);
      return messages.map((m) => m.messageId);
    };
    const nextWave = () => {
      const repeats = Math.ceil(p.requestsPerWave / 4);
      return [
        ...Array.from({ length: p.requestsPerWave }, () => pairs[cursor++ % pairs.length]!),
        ...Array.from(
          { length: repeats },
          () => pairs[planRng.int(0, Math.max(0, Math.min(cursor, pairs.length) - 1))]!,
        ),
      ];
    };

    const faultRng = rng.fork('faults');
    const victimRng = rng.fork('victims');
    const kinds = faultRng.shuffle(
      (Object.entries(p.faults) as Array<[HostFaultKind, number]>).flatMap(([k, n]) =>
        Array<HostFaultKind>(n).fill(k),
      ),
    );
    const faults: FaultRecord[] = [];
    const probe = async (): Promise<number | null> => {
      const from = performance.now();
      const [id] = await publish([probePairs[faults.length % probePairs.length]!]);
      for (;;) {
        if (tap.final(id!)) return Math.round(performance.now() - from);
        if (performance.now() - from > 120_000) return null;
        await sleep(50);
      }
    };
    const waitForOutput = async (member: FleetMember, text: string, timeoutMs: number) => {
      const from = performance.now();
      while (!member.conductor.child.output.join('').includes(text)) {
        if (performance.now() - from > timeoutMs) return false;
        await sleep(100);
      }
      return true;
    };
    const latestOn = (host: string) =>
      fleet
        .live()
        .filter((m) => hostOf(m.id) === host)
        .at(-1);
    const memberBack = async (victim: FleetMember, reconnectsBefore: number): Promise<number | null> => {
      const from = performance.now();
      for (;;) {
        // A victim that left by itself (its CACHE_ROOT hung) is back once its host's restarted one is. A
        // newer member on its host also means it left: one that exits while paused (its hang exit firing
        // on resume) can still be listed live here when its successor is already up (seed 159257054).
        const newest = latestOn(hostOf(victim.id));
        const member = victim.state === 'exited' || (newest && newest !== victim) ? newest : victim;
        const sample = member && (await fleet.sampleOne(member).catch(() => undefined));
        if (
          sample?.brokerState === 'connected' &&
          (member !== victim || sample.reconnects >= reconnectsBefore)
        )
          return Math.round(performance.now() - from);
        if (performance.now() - from > 90_000) return null;
        await sleep(100);
      }
    };

    for (const kind of kinds) {
      await sleep(faultRng.int(p.gapMs[0], p.gapMs[1]));
      await publish(nextWave());
      const struckMidCopy = await partialCopyUnderWay(bed.root, nodes, 4_000);
      const live = fleet.live();
      const victim = victimRng.pick(live);
      const host = hostOf(victim.id);
      const atMs = elapsed();
      const before = (await fleet.sampleOne(victim).catch(() => undefined))?.reconnects ?? 0;
      let heldMs = 0;
      let conductorBackMs: number | null = null;
      let target = victim.id;
      if (kind === 'broker') {
        const index = brokerIndexOf(victim.id);
        target = `broker-${index} (of ${victim.id})`;
        heldMs = faultRng.int(p.brokerStopMs[0], p.brokerStopMs[1]);
        await bed.stopBrokerNode(index);
        await sleep(heldMs);
        await bed.startBrokerNode(index);
        conductorBackMs = await waitReconnected(victim, before, 90_000);
      } else if (kind === 'partition') {
        target = `${host} (${victim.id})`;
        heldMs = faultRng.int(p.partitionMs[0], p.partitionMs[1]);
        await bed.cutLink(host);
        await sleep(heldMs);
        await bed.restoreLink(host);
        conductorBackMs = await memberBack(victim, before);
      } else if (kind === 'mount') {
        target = `${host} (${victim.id})`;
        heldMs = faultRng.int(p.mountDownMs[0], p.mountDownMs[1]);
        await bed.killMount(host);
        await sleep(heldMs);
        await bed.remakeMount(host);
        conductorBackMs = await memberBack(victim, before);
      } else if (kind === 'evict' || kind === 'long-partition') {
        // The MDS evicts the host's client (at once, or once the cut outlives the session autoclose): every
        // call through it then fails ESHUTDOWN and the client is blocklisted, so its late writes cannot
        // land. The conductor there must stand down (its CACHE_ROOT guard reports the folder unusable) and
        // come back once the mount is made again, as an operator or the mount's unit does.
        target = `${host} (${victim.id})`;
        const ceph = bed.share as CephfsCluster;
        const from = performance.now();
        if (kind === 'evict') await ceph.evict(host);
        else await bed.cutLink(host);
        await sleep(
          kind === 'evict'
            ? faultRng.int(p.mountDownMs[0], p.mountDownMs[1])
            : (CEPH_CAMPAIGN_SESSION.sessionAutocloseS + 5) * 1000,
        );
        // The MDS is on the machine's side of the bridge: it answers during the cut too.
        if ((await ceph.sessionOf(host)) !== undefined)
          violations.push(`${kind} of ${target}: the MDS still has a session of client.${host}`);
        heldMs = Math.round(performance.now() - from);
        // The blocklisted client is replaced before the link returns, so the host's supervisor never
        // starts a conductor on it.
        await bed.killMount(host);
        if (kind === 'long-partition') await bed.restoreLink(host);
        await bed.remakeMount(host);
        conductorBackMs = await memberBack(victim, before);
      } else if (kind === 'hang') {
        // The mount stops answering (NFS `hard` with its server gone): the conductor must leave by itself
        // after CACHE_ROOT_HANG_EXIT_MS; the mount answers again a little later, and the host's supervisor
        // starts a new conductor there.
        target = `${host} (${victim.id})`;
        const from = performance.now();
        bed.freezeMount(host);
        const left = await waitForOutput(victim, HANG_LINE, 90_000);
        if (!left) violations.push(`hang of ${target}: the conductor did not leave within 90 s`);
        await sleep(faultRng.int(p.hangExtraMs[0], p.hangExtraMs[1]));
        heldMs = Math.round(performance.now() - from);
        bed.thawMount(host);
        conductorBackMs = await memberBack(victim, before);
      } else if (kind === 'kill') {
        await fleet.kill(victim);
        const from = performance.now();
        await startOn(host);
        conductorBackMs = Math.round(performance.now() - from);
      } else {
        heldMs = faultRng.int(p.pauseMs[0], p.pauseMs[1]);
        fleet.pause(victim);
        await sleep(heldMs);
        fleet.resume(victim);
        conductorBackMs = await memberBack(victim, before);
      }
      if (conductorBackMs === null)
        violations.push(`${kind} of ${target}: the conductor was not back within 90 s`);
      const probeAnsweredMs = await probe();
      if (probeAnsweredMs === null)
        violations.push(`${kind} of ${target}: a request published after it had no answer within 120 s`);
      faults.push({ kind, target, atMs, heldMs, struckMidCopy, conductorBackMs, probeAnsweredMs });
    }
    await publish(nextWave());

    const finals = await tap.finalsWithin(ids, p.settleMs, violations);
    await supervisor.settled();
    for (const r of supervisor.restarts.filter((x) => x.why !== 'hang'))
      violations.push(
        `conductor ${r.exited} ended by itself (code ${r.code}, signal ${r.signal}), not on a hung CACHE_ROOT`,
      );
    for (const g of supervisor.gaveUp) violations.push(`not restarted: ${g}`);
    await fleet.waitIdle(120_000).catch((error: unknown) => violations.push(String(error)));
    await fleet.stopSampling();
    await watcher.stop();

    // Leftovers once idle: the conductors' own leftover sweep (every 3 s, entries unchanged for the stale
    // time) must collect what killed, paused, cut-off and unmounted holders left, with no help from us.
    const idleFrom = performance.now();
    let leftovers: string[] = [];
    for (;;) {
      leftovers = [
        ...(await lockLeftovers(bed.root, HOSTS_LOCK_TIMINGS.staleMs)).map(
          (l) => `lock ${l.node}/${l.imageId} ${l.mode} by ${l.conductorId ?? '?'}`,
        ),
        ...(await tmpLeftovers(bed.root)),
      ];
      if (leftovers.length === 0 || performance.now() - idleFrom > 30_000) break;
      await sleep(500);
    }
    for (const l of leftovers) violations.push(`left once idle (30 s after): ${l}`);
    // Left: keep what tells why (a heartbeat beating on, or frozen entries the sweep did not collect).
    const evidence =
      leftovers.length > 0
        ? await keepLeftoverEvidence(
            reportFile(run.name, run.size, run.fs).replace(/\.json$/, '-leftovers'),
            { root: bed.root, holdLogs, members: fleet.members, live: fleet.live() },
            await lockLeftovers(bed.root, HOSTS_LOCK_TIMINGS.staleMs),
          )
        : null;
    const leftoversGoneMs = leftovers.length === 0 ? Math.round(performance.now() - idleFrom) : null;

    const lost = ids.filter((id) => !finals.has(id));
    const failed = [...finals.values()].filter((r) => r.status === 'failed');
    for (const r of failed.slice(0, 20))
      violations.push(`request ${r.requestId} failed for good: ${String(r.reason)} ${String(r.detail)}`);
    const corrupt = await verifyCopies(store, requested, seeds, violations);
    for (const problem of watcher.problems.slice(0, 20)) violations.push(`final-path reader: ${problem}`);

    const holds = await judgeHoldLogs(holdLogs);
    for (const o of holds.overlaps.slice(0, 10))
      violations.push(`two holders of ${o.key}: ${JSON.stringify(o.a)} and ${JSON.stringify(o.b)}`);

    const conductors = fleet.conductors();
    for (const m of fleet.running())
      if (m.conductor.child.process.exitCode !== null) violations.push(`conductor ${m.id} exited`);
    for (const l of conductors
      .flatMap((c) => c.logs().filter((x) => x.msg === 'unexpected error in a copy'))
      .slice(0, 5))
      violations.push(`INTERNAL error: ${JSON.stringify(l)}`);

    const onTls = conductors.filter((c) =>
      c.logs().some((l) => l.msg === 'conductor started' && l.brokerTls === true),
    ).length;
    if (p.tls && onTls !== conductors.length)
      violations.push(`tls: only ${onTls} of ${conductors.length} conductors started on TLS to the cluster`);
    const lines = answeredLines(conductors);
    const connects = conductors.flatMap((c, i) =>
      c
        .logs()
        .filter((l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) >= 1)
        .map((l) => ({ conductor: fleet.members[i]!.id, ...l })),
    );
    return {
      violations,
      figures: {
        params: p,
        setUpMs,
        durationMs: elapsed(),
        hosts: {
          conductors: conductorHosts,
          requester: 'rq',
          brokers: p.tls ? cluster.tlsUrls : cluster.urls,
        },
        // With tls, every conductor's log says it started on TLS (read back, not assumed).
        conductorsOnTls: onTls,
        requests: ids.length,
        pairs: requested.size,
        results: {
          final: tally([...finals.values()].map((r) => r.status)),
          resultMessages: tap.results.length,
        },
        lost: lost.length,
        failed: failed.length,
        corrupt,
        faults,
        recoveryMs: Object.fromEntries(
          kinds.map((k) => [
            k,
            faults
              .filter((f) => f.kind === k)
              .map((f) => ({ back: f.conductorBackMs, probe: f.probeAnsweredMs })),
          ]),
        ),
        redeliveries: lines.filter((l) => l.redelivered === true).length,
        laterAttempts: lines.filter((l) => Number(l.attempt) > 1).length,
        takeovers: { fromHoldLogs: holds.takeovers, fromStatus: fleet.total('lockTakeovers') },
        locksLost: fleet.total('locksLost'),
        // Conductors that left by themselves (CACHE_ROOT hung) and their restarts by the host's supervisor.
        restarts: supervisor.restarts,
        exits: tally(supervisor.restarts.map((r) => `${r.why}:${r.signal ?? r.code}`)),
        // With one broker URL per conductor a reconnect is to the same node; with a list (AMQP_URL with
        // several URLs) it may be to another: both counted here, per conductor.
        failOvers: tally(connects.map((c) => c.conductor)),
        holdLog: { proofs: holds.proofs, spans: holds.spans, overlaps: holds.overlaps.length },
        leftoversGoneAfterIdleMs: leftoversGoneMs,
        leftoverEvidence: evidence,
        finalPathReader: { looks: watcher.looks, hashed: watcher.hashed, problems: watcher.problems.length },
        errorLogLines: errorLines(conductors).length,
        bedFaults: bed.faults,
      },
    };
  } finally {
    supervisor.stop();
  }
}
