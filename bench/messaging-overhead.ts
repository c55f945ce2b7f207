/*
 * Messaging overhead: already-present (no-op) requests per second through one conductor, against a raw
 * amqplib publish -> consume -> ack loop on the same broker, in the same run, repeated.
 * Run: npm run bench:messaging   (writes bench/results/messaging-overhead.json)
 */
import { connect } from 'amqplib';
import { median, round, spread } from './bench-stats';
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

export async function runMessagingOverheadBench(options: { messages?: number; rounds?: number } = {}) {
  const messages = options.messages ?? 2000;
  const rounds = options.rounds ?? 5;
  const ours: number[] = [];
  const raw: number[] = [];
  await withCell(['node-a', 'node-b'], async (cell, startConductor) => {
    await cell.seed('node-b', 'present.img', 1024 * 1024);
    await startConductor({ COPY_CONCURRENCY: String(CONCURRENCY) });
    const client = await BenchRequester.open();
    try {
      for (let r = 0; r < rounds; r++) {
        raw.push(await rawLoop(messages));
        const bodies = Array.from({ length: messages }, (_, i) => ({
          v: 1,
          requestId: `r${r}-${i}`,
          imageId: 'present.img',
          destination: 'node-b',
        }));
        const { ms, replies } = await requestAll(client, cell.topology.requestQueue.name, bodies);
        if (replies.some((x) => x.status !== 'already-present'))
          throw new Error('a no-op request was not answered already-present');
        ours.push((messages / ms) * 1000);
      }
    } finally {
      await client.close();
    }
  });
  const ratios = ours.map((o, i) => o / raw[i]!);
  const report = {
    scenario: 'already-present requests through one conductor vs raw amqplib publish->consume->ack',
    date: new Date().toISOString(),
    messages,
    rounds,
    concurrency: CONCURRENCY,
    oursPerSecond: round(median(ours), 0),
    rawPerSecond: round(median(raw), 0),
    ratio: round(median(ratios), 3),
    ratioSpread: spread(ratios.map((x) => round(x, 3))),
    target: '>= 0.5',
  };
  console.table([report]);
  await writeResults('messaging-overhead', report);
  return report;
}

if (require.main === module) void runMessagingOverheadBench();
