/*
 * Every benchmark in one run (npm run bench), then one summary table: scenario, ours, baseline, ratio,
 * target. Each scenario measures its own baseline in the same run; figures are medians over rounds.
 * Results: bench/results/*.json; the table we publish: bench/RESULTS.md.
 */
import { runBandwidthCapsBench } from './bandwidth-caps';
import { runBigCopyBench } from './big-copy';
import { runCopyMemoryBench } from './copy-memory';
import { runCopyRingBench } from './copy-ring';
import { runFanoutSpreadBench } from './fanout-spread';
import { runLockHandoffBench } from './lock-handoff';
import { runLockScopeBench } from './lock-scope';
import { runMessagingOverheadBench } from './messaging-overhead';
import { runResumeAfterKillBench } from './resume-after-kill';
import { runScaleBench } from './scale';
import { runStatusLatencyBench } from './status-latency';
import { writeResults } from './support/bench-cell';

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const rows: Array<Record<string, string | number>> = [];
  const big = await runBigCopyBench();
  rows.push({
    scenario: '1. 1 GiB request -> verified image',
    ours: `${big.oursMs} ms`,
    baseline: `max(sha256 only, fs.copyFile) ${big.machineLimitMs} ms (copyFile ${big.copyFileMs} ms / cp ${big.cpMs} ms / copyFile+fsync ${big.copyFileFsyncMs} ms)`,
    ratio: `${big.vsMachineLimit}x the limit (${big.vsMachineLimitSpread.min}-${big.vsMachineLimitSpread.max}); ${big.ratioVsCopyFileFsync}x copyFile+fsync`,
    target: '<= 1.1x max(sha256 only, copyFile)',
  });
  rows.push({
    scenario: '1d. the same against a durable verified copy (ours fsyncs before publishing)',
    ours: `${big.oursMs} ms`,
    baseline: `max(sha256 only, fs.copyFile + fsync) ${big.durableLimitMs} ms`,
    ratio: `${big.vsDurableLimit}x (${big.vsDurableLimitSpread.min}-${big.vsDurableLimitSpread.max})`,
    target: '-',
  });
  rows.push({
    scenario: '1h. sha256 of the same bytes in memory (the floor of a verified copy)',
    ours: `${big.sha256OnlyMs} ms`,
    baseline: `fs.copyFile ${big.copyFileMs} ms`,
    ratio: `ceiling ${big.ceilingVsCopyFile}x copyFile`,
    target: '-',
  });
  rows.push({
    scenario: '1b. conductor RSS growth during the copy',
    ours: `${big.conductorRssGrowthMiB} MiB (max ${big.conductorRssGrowthMaxMiB})`,
    baseline: '-',
    ratio: '-',
    target: '<= 64 MiB',
  });
  const memory = await runCopyMemoryBench();
  rows.push({
    scenario: '1c. ImageStore.copies.copyImage in-process (no broker)',
    ours: `${memory.ours.ms} ms, RSS +${memory.peakRssGrowthMiB} MiB`,
    baseline: `fs.copyFile ${memory.rawCopyFile.ms} ms (+fsync ${memory.rawCopyFileFsync.ms} ms)`,
    ratio: `${Math.round((100 * memory.rawCopyFile.ms) / memory.ours.ms) / 100}x copyFile`,
    target: '>= 0.9x raw, RSS <= 64 MiB',
  });
  rows.push({
    scenario: '1e. the copy pipeline alone: copy workers, fsync off (in-process)',
    ours: `${memory.pipelineNoFsync.ms} ms`,
    baseline: `max(sha256 only ${memory.hashOnlyMs} ms, fs.copyFile ${memory.rawCopyFile.ms} ms)`,
    ratio: `${memory.pipelineVsLimit}x (${memory.pipelineVsLimitSpread.min}-${memory.pipelineVsLimitSpread.max})`,
    target: '-',
  });
  const ring = await runCopyRingBench();
  for (const r of ring.rows.filter((row) => row.buffers !== 2))
    rows.push({
      scenario: `1f. the copy loop with ${r.buffers} buffers (reads ahead) vs 2, 1 GiB, no fsync${r.default ? ' (default)' : ''}`,
      ours: `${r.medianMs} ms`,
      baseline: `2 buffers ${ring.rows[0]!.medianMs} ms`,
      ratio: `${r.speedupVs2}x (${r.speedupVs2Spread.min}-${r.speedupVs2Spread.max})`,
      target: '-',
    });
  const scope = await runLockScopeBench();
  for (const r of scope.rows)
    rows.push({
      scenario: `2/3. ${r.scenario}`,
      ours: `${r.oursMs} ms`,
      baseline: `${r.baseline} ${r.baselineMs} ms`,
      ratio: `${r.speedup}x`,
      target: r.target,
    });
  const fanout = await runFanoutSpreadBench();
  for (const r of fanout.rows)
    rows.push({
      scenario: `fan-out spreading: ${r.scenario}`,
      ours: `${r.oursMs} ms, ${r.sourcesUsed} sources`,
      baseline: `single source ${r.singleSourceMs} ms`,
      ratio: `${r.speedup}x`,
      target: 'issue 6: spreading pays off',
    });
  const handoff = await runLockHandoffBench();
  rows.push({
    scenario: '4. lock hand-off between processes',
    ours: `p50 ${handoff.ours.p50Ms} ms, p99 ${handoff.ours.p99Ms} ms`,
    baseline: `plain proper-lockfile p50 ${handoff.baseline.p50Ms} ms, p99 ${handoff.baseline.p99Ms} ms`,
    ratio: `${handoff.ratioP50}x faster`,
    target: 'p50 <= 5 ms',
  });
  const status = await runStatusLatencyBench();
  rows.push({
    scenario: '1s. GET /status p99 while 4 copies of 1 GiB run',
    ours: `${status.workers.busyP99Ms} ms (idle ${status.workers.idleP99Ms} ms); copies ${status.workers.copiesMs} ms`,
    baseline: `HASH_WORKERS=0 ${status.mainThread.busyP99Ms} ms (idle ${status.mainThread.idleP99Ms} ms); copies ${status.mainThread.copiesMs} ms`,
    ratio: `${status.p99WorkersVsMainThread}x lower p99; copies ${status.copiesSpeedupVsMainThread}x faster`,
    target: 'main thread responsive',
  });
  const messaging = await runMessagingOverheadBench();
  rows.push({
    scenario: '5. no-op requests through one conductor',
    ours: `${messaging.oursPerSecond}/s`,
    baseline: `raw loop with the same broker work ${messaging.fairRawPerSecond}/s (bare consume+ack ${messaging.rawPerSecond}/s)`,
    ratio: `${messaging.fairRatio} (${messaging.fairRatioSpread.min}-${messaging.fairRatioSpread.max}); bare ${messaging.ratio}`,
    target: '>= 0.8 of the same broker work',
  });
  const scale = await runScaleBench();
  for (const n of scale.nodes)
    rows.push({
      scenario: `6. ${n.nodes} nodes: per-request cost`,
      ours: `copy ${n.copyMsPerRequest} ms, no-op ${n.noopMsPerRequest} ms`,
      baseline: '10 nodes',
      ratio: `copy ${n.copyCostVs10}x, no-op ${n.noopCostVs10}x`,
      target: 'flat (~1x)',
    });
  rows.push({
    scenario: '6. queue depth 10,000 vs 500',
    ours: `${scale.queueDepth.deep10000PerSecond}/s`,
    baseline: `${scale.queueDepth.shallow500PerSecond}/s`,
    ratio: `${scale.queueDepth.ratio}`,
    target: 'flat (~1x)',
  });
  const resume = await runResumeAfterKillBench();
  for (const r of resume.rows)
    rows.push({
      scenario: `7. ${r.scenario}`,
      ours: `${r.resumeMs} ms (killed at ${r.killedAtMedianPercent}%)`,
      baseline: `fresh copy ${r.freshMs} ms`,
      ratio: `${r.ratioVsFresh} (${r.ratioSpread.min}-${r.ratioSpread.max})`,
      target: `towards ${r.idealRatio}`,
    });
  const caps = await runBandwidthCapsBench();
  for (const r of caps.rows)
    rows.push({
      scenario: `8. ${r.scenario}`,
      ours: r.measured,
      baseline: '-',
      ratio: `${r.ratio} (${r.spread.min}-${r.spread.max})`,
      target: r.target,
    });
  console.table(rows);
  await writeResults('summary', { started, finished: new Date().toISOString(), rows });
}

void main();
