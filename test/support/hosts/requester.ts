/*
 * A requester on a simulated host (forked through the host's launcher, argv[2]: JSON list of broker
 * URLs): publishes each batch it is sent over IPC with publisher confirms, to the first broker of the
 * list that takes it, rotating on failure, and answers { batch, url } once the broker confirmed all of
 * it, or { batch, error } after `deadlineMs`. Duplicates are allowed (at-least-once), losses are not.
 */
import { connect } from 'amqplib';

export interface PublishBatch {
  batch: number;
  queue: string;
  messages: Array<{ body: unknown; messageId: string }>;
  deadlineMs: number;
}

export type RequesterAnswer =
  { batch: number; url: string; tries: number } | { batch: number; error: string };

const urls = JSON.parse(process.argv[2] ?? '[]') as string[];
if (urls.length === 0) {
  process.stderr.write('requester: argv[2] must be a JSON list of AMQP URLs\n');
  process.exit(2);
}
let next = 0;

async function publishOnce(url: string, batch: PublishBatch): Promise<void> {
  const connection = await connect(url, { timeout: 3_000 });
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    for (const m of batch.messages)
      channel.sendToQueue(batch.queue, Buffer.from(JSON.stringify(m.body)), {
        contentType: 'application/json',
        persistent: true,
        messageId: m.messageId,
      });
    await Promise.race([
      channel.waitForConfirms(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no confirms within 10 s')), 10_000)),
    ]);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

process.on('message', (batch: PublishBatch) => {
  void (async () => {
    const deadline = Date.now() + batch.deadlineMs;
    let lastError = '';
    for (let tries = 1; Date.now() < deadline; tries++) {
      const url = urls[next % urls.length]!;
      try {
        await publishOnce(url, batch);
        process.send!({ batch: batch.batch, url, tries } satisfies RequesterAnswer);
        return;
      } catch (error) {
        lastError = `${url}: ${(error as Error).message}`;
        next++;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    process.send!({ batch: batch.batch, error: lastError } satisfies RequesterAnswer);
  })();
});
process.send!({ batch: -1, url: 'ready', tries: 0 } satisfies RequesterAnswer);
