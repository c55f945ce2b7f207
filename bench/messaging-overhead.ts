/*
 * Messaging overhead: already-present (no-op) requests per second through one conductor, against two raw
 * amqplib loops on the same broker, in the same run, repeated: the fair one does the conductor's broker
 * work (the same requester, consume with the same prefetch, two confirmed publishes per request: the
 * answer to reply_to and the result on the events exchange, then the ack); the bare one only consumes
 * and acks.
 * Run: npm run bench:messaging [-- --messages 2000 --rounds 5]   (writes bench/results/messaging-overhead.json)
 * Profile the conductor under this load: add `--cpu-prof <dir>`, then `node dist/bench/cpu-profile-summary.js <dir>/*.cpuprofile`.
 */
import { type ConfirmChannel, connect } from 'amqplib';
import { brokerPid, measureCpuUse } from './support/cpu-use';
import { flagValue, numberFlag } from './support/cli-args';
import { median, percentile, round, spread } from './bench-stats';
import { AMQP_URL, BenchRequester, requestAll, withCell, writeResults } from './support/bench-cell';

const CONCURRENCY = 4;

/** The baseline: the same broker path (persistent publish to a quorum queue, manual ack with the same prefetch). */
async function rawLoop(messages: number): Promise<number> {
  const connection = await connect(AMQP_URL);
  try {
    const queue = `icc-bench-raw-${process.pid}-${Date.now()}`;
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const consumer = await connection.createChannel();
    await consumer.prefetch(CONCURRENCY);
    let acked = 0;
    const started = performance.now();
    const done = new Promise<void>((resolve) => {
      void consumer.consume(queue, (m) => {
        if (!m) return;
        JSON.parse(m.content.toString()); // the least a consumer does with a body
        consumer.ack(m);
        if (++acked === messages) resolve();
      });
    });
    for (let i = 0; i < messages; i++)
      channel.sendToQueue(queue, Buffer.from(JSON.stringify({ v: 1, i })), {
        persistent: true,
        contentType: 'application/json',
      });
    await channel.waitForConfirms();
    await done;
    const ms = performance.now() - started;
    await channel.deleteQueue(queue);
    return (messages / ms) * 1000;
  } finally {
    await connection.close();
  }
}

function confirmedPublish(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  body: Buffer,
  options: Parameters<ConfirmChannel['publish']>[3],
): Promise<void> {
  return new Promise((resolve, reject) =>
    channel.publish(exchange, routingKey, body, options, (error) => (error ? reject(error) : resolve())),
  );
}

/**
 * The fair baseline: a consumer doing what the conductor does on the broker for a no-op request, with
 * nothing else (no validation, no file-system check, no logging), answering the same requester.
 */
async function rawConductorLoop(client: BenchRequester, messages: number, round: number): Promise<number> {
  const connection = await connect(AMQP_URL);
  try {
    const queue = `icc-bench-fair-${process.pid}-${Date.now()}`;
    const exchange = `${queue}.events`;
    const publisher = await connection.createConfirmChannel();
    await publisher.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await publisher.assertExchange(exchange, 'topic', { durable: true });
    const consumer = await connection.createChannel();
    await consumer.prefetch(CONCURRENCY);
    const { consumerTag } = await consumer.consume(queue, (m) => {
      if (!m) return;
      const request = JSON.parse(m.content.toString()) as { requestId: string };
      const result = Buffer.from(
        JSON.stringify({ v: 1, type: 'result', requestId: request.requestId, status: 'already-present' }),
      );
      const options = { persistent: true, contentType: 'application/json' };
      void Promise.all([
        confirmedPublish(publisher, '', m.properties.replyTo as string, result, {
          ...options,
          mandatory: true,
          correlationId: m.properties.correlationId as string,
        }),
        confirmedPublish(publisher, exchange, 'result.already-present', result, options),
      ]).then(() => consumer.ack(m));
    });
    const bodies = Array.from({ length: messages }, (_, i) => ({ v: 1, requestId: `fair${round}-${i}` }));
    const { ms } = await requestAll(client, queue, bodies);
    await consumer.cancel(consumerTag);
    await publisher.deleteQueue(queue);
    await publisher.deleteExchange(exchange);
    return (messages / ms) * 1000;
  } finally {
    await connection.close();
  }
}

export async function runMessagingOverheadBench(
  options: { messages?: number; rounds?: number; cpuProfileDir?: string } = {},
) {
  const messages = options.messages ?? 2000;
  const rounds = options.rounds ?? 5;
  const ours: number[] = [];
  const raw: number[] = [];
  const fair: number[] = [];
  // The conductor's own time per no-op request (durations.totalMs: first seen -> result made), all rounds.
  const totalMs: number[] = [];
  // CPU per request (ms of one core): the conductor process (all threads), and the broker, for ours and
  // for the fair raw loop (whose consumer is this bench process).
  const cpuPerRequest = {
    oursConductor: [] as number[],
    oursBroker: [] as number[],
    fairLoop: [] as number[],
    fairBroker: [] as number[],
  };
  await withCell(['node-a', 'node-b'], async (cell, startConductor) => {
    await cell.seed('node-b', 'present.img', 1024 * 1024);
    // --cpu-prof: the profile is written when the conductor exits, so it is stopped with SIGTERM below.
    const conductor = await startConductor(
      { COPY_CONCURRENCY: String(CONCURRENCY) },
      undefined,
      options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [],
    );
    const client = await BenchRequester.open();
    try {
      for (let r = 0; r < rounds; r++) {
        raw.push(await rawLoop(messages));
        const fairCpu = measureCpuUse({ broker: brokerPid(), bench: process.pid });
        const fairStarted = performance.now();
        fair.push(await rawConductorLoop(client, messages, r));
        const fairUse = fairCpu();
        const fairSeconds = (performance.now() - fairStarted) / 1000;
        cpuPerRequest.fairLoop.push(((fairUse.processes.bench ?? 0) * fairSeconds * 1000) / messages);
        cpuPerRequest.fairBroker.push(((fairUse.processes.broker ?? 0) * fairSeconds * 1000) / messages);
        const bodies = Array.from({ length: messages }, (_, i) => ({
          v: 1,
          requestId: `r${r}-${i}`,
          imageId: 'present.img',
          destination: 'node-b',
        }));
        const cpu = measureCpuUse({ conductor: conductor.pid, broker: brokerPid() });
        const { ms, replies } = await requestAll(client, cell.topology.requestQueue.name, bodies);
        const use = cpu();
        cpuPerRequest.oursConductor.push(((use.processes.conductor ?? 0) * ms) / messages);
        cpuPerRequest.oursBroker.push(((use.processes.broker ?? 0) * ms) / messages);
        if (replies.some((x) => x.status !== 'already-present'))
          throw new Error('a no-op request was not answered already-present');
        for (const reply of replies) {
          totalMs.push((reply.durations as { totalMs: number }).totalMs);
        }
        ours.push((messages / ms) * 1000);
      }
    } finally {
      await client.close();
      if (options.cpuProfileDir) {
        conductor.signal('SIGTERM');
        await conductor.exited();
      }
    }
  });
  const ratios = ours.map((o, i) => o / raw[i]!);
  const fairRatios = ours.map((o, i) => o / fair[i]!);
  const report = {
    scenario: 'already-present requests through one conductor vs raw amqplib loops',
    date: new Date().toISOString(),
    messages,
    rounds,
    concurrency: CONCURRENCY,
    oursPerSecond: round(median(ours), 0),
    oursSpread: spread(ours.map((x) => round(x, 0))),
    fairRawPerSecond: round(median(fair), 0),
    fairRawSpread: spread(fair.map((x) => round(x, 0))),
    fairRatio: round(median(fairRatios), 3),
    fairRatioSpread: spread(fairRatios.map((x) => round(x, 3))),
    oursHandlingMsMedian: round(median(totalMs), 2),
    oursHandlingMsP99: round(percentile(totalMs, 99), 2),
    /** Medians over the rounds, in ms of one core per request (the fair loop's own process also publishes the requests). */
    cpuMsPerRequest: {
      conductor: round(median(cpuPerRequest.oursConductor), 3),
      brokerWithConductor: round(median(cpuPerRequest.oursBroker), 3),
      fairLoopProcess: round(median(cpuPerRequest.fairLoop), 3),
      brokerWithFairLoop: round(median(cpuPerRequest.fairBroker), 3),
    },
    rawPerSecond: round(median(raw), 0),
    ratio: round(median(ratios), 3),
    ratioSpread: spread(ratios.map((x) => round(x, 3))),
    target: 'fair ratio >= 0.8',
  };
  console.table([report]);
  await writeResults('messaging-overhead', report);
  return report;
}

if (require.main === module) {
  void runMessagingOverheadBench({
    messages: numberFlag('--messages'),
    rounds: numberFlag('--rounds'),
    cpuProfileDir: flagValue('--cpu-prof'),
  });
}
