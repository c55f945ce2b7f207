import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect } from 'amqplib';
import { HEADER_REASON } from '@app/contracts';
import { PIECES_SUFFIX } from '@app/image-store';
import { runIcc } from '../support/agent-cli';
import type { ChildProcessPool } from '../support/child-processes';
import { ResultsTap, errorLines } from '../support/conductor-harness';
import { ConductorProcess } from '../support/conductor-process';
import { AMQP_URL, queueMessageCount } from '../support/rabbitmq';
import { waitFor } from '../support/async';
import { TestCell } from '../support/test-cell';
import {
  CASE_HEADER,
  type FuzzHttpRequest,
  bodyKey,
  generateBadMessages,
  generateCliArgs,
  generateHttpRequests,
  isKnownReason,
} from './bad-input';
import { type CampaignRun, type Cleanups, bySize, tally } from './campaign-kit';
import { sleep } from '../support/async';
import { listTree } from '../support/cell-observers';

/**
 * What conductors keep beside the node folders: the header key, their records (docs/upgrades.md), the
 * final answers and the round leases (docs/cache-layout.md).
 */
const CELL_FILES =
  /^(\.icc-header-key|\.icc-conductors(\/[A-Za-z0-9][A-Za-z0-9._-]*\.json)?|\.icc-answers|\.rounds(\/.*)?)$/;

const KiB = 1024;

export const BAD_INPUT_SIZES = {
  ci: {
    badMessages: 1_200,
    validRequests: 120,
    conductors: 2,
    httpRequests: 500,
    httpConcurrency: 8,
    cliRuns: 60,
    cliConcurrency: 3,
  },
  large: {
    badMessages: 12_000,
    validRequests: 1_000,
    conductors: 2,
    httpRequests: 5_000,
    httpConcurrency: 16,
    cliRuns: 400,
    cliConcurrency: 4,
  },
};

type Outcome = { violations: string[]; figures: Record<string, unknown> };

function conductorIsFine(conductor: ConductorProcess, violations: string[], name: string): void {
  if (conductor.child.process.exitCode !== null || conductor.child.process.signalCode !== null)
    violations.push(
      `${name} exited (${conductor.child.process.exitCode ?? conductor.child.process.signalCode})`,
    );
  for (const l of errorLines([conductor]).slice(0, 5)) violations.push(`${name} logged an error: ${l}`);
}

/**
 * 5a. Malformed and hostile AMQP messages mixed into valid traffic: every bad one answered and dead-lettered
 * exactly once with a known reason (the one its class calls for), every valid one completed, no crash,
 * nothing written outside CACHE_ROOT and no stray names inside it.
 */
export async function runMessageFuzz(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<Outcome> {
  const p = bySize(run, BAD_INPUT_SIZES);
  const rng = run.rng.fork('messages');
  const violations: string[] = [];
  const nodes = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e'];
  const cell = await TestCell.create({ nodes, nested: true });
  cleanups.add('cell', () => cell.cleanup());
  const images = ['img-0.raw', 'img-1.raw', 'img-2.raw', 'img-3.raw'];
  const holders = new Map<string, string>();
  const seeds = new Map<string, { sha256: string; size: number }>();
  for (const [i, imageId] of images.entries()) {
    holders.set(imageId, nodes[i % 2]!);
    seeds.set(imageId, await cell.seed(nodes[i % 2]!, imageId, rng.int(64 * KiB, 512 * KiB)));
  }
  const validRequest = (requestId: string): Record<string, unknown> => {
    const imageId = rng.pick(images);
    const source = holders.get(imageId)!;
    return { v: 1, requestId, imageId, destination: rng.pick(nodes.filter((n) => n !== source)), source };
  };

  const bad = generateBadMessages(rng, p.badMessages, { nodes, images, validRequest });
  const valid = Array.from({ length: p.validRequests }, (_, i) => ({
    index: p.badMessages + i,
    body: validRequest(`ok-${i}`),
  }));
  // Interleaved: valid requests land among the bad ones, not after them.
  type Item = { bad?: (typeof bad)[number]; valid?: (typeof valid)[number] };
  const items: Item[] = rng.shuffle([...bad.map((b) => ({ bad: b })), ...valid.map((v) => ({ valid: v }))]);

  const parentBefore = (await fsp.readdir(cell.parent!)).sort();
  const rootFsBefore = (await fsp.readdir('/')).sort();
  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const conductors = await Promise.all(
    Array.from({ length: p.conductors }, (_, i) =>
      ConductorProcess.start(pool, cell.conductorEnv({ CONDUCTOR_ID: `fuzz-${i}` }), 600_000).ready(),
    ),
  );

  const started = performance.now();
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createConfirmChannel();
    let pending = 0;
    for (const item of items) {
      if (item.bad) {
        const m = item.bad;
        channel.sendToQueue(
          cell.topology.requestQueue.name,
          m.body,
          m.bare ? {} : { ...m.properties, persistent: true },
        );
      } else {
        const v = item.valid!;
        channel.sendToQueue(cell.topology.requestQueue.name, Buffer.from(JSON.stringify(v.body)), {
          contentType: 'application/json',
          persistent: true,
          messageId: String(v.body.requestId),
          headers: { [CASE_HEADER]: v.index },
        });
      }
      if (++pending >= 200) {
        await channel.waitForConfirms();
        pending = 0;
      }
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close().catch(() => undefined);
  }
  const publishedMs = performance.now() - started;

  // Every valid request completes; every bad one reaches the dead-letter queue.
  const finals = await tap
    .waitForFinal(
      valid.map((v) => String(v.body.requestId)),
      120_000,
    )
    .catch((error: Error) => {
      violations.push(error.message);
      return new Map();
    });
  for (const [id, r] of finals)
    if (!['completed', 'already-present'].includes(String(r.status)))
      violations.push(`valid request ${String(id)} ended ${JSON.stringify(r)}`);
  await waitFor(
    async () => (await queueMessageCount(cell.topology.deadLetterQueue.name)) >= bad.length,
    `${bad.length} dead letters`,
    180_000,
  ).catch((error: Error) => violations.push(error.message));
  const handledMs = performance.now() - started;
  await sleep(1_000); // anything more (a second dead letter of one message) arrives now
  const dead = await drainQueue(cell.topology.deadLetterQueue.name);

  // Exactly once each, with the reason its class calls for; nothing from valid traffic.
  const byCase = new Map<number, typeof dead>();
  const byBody = new Map<string, typeof dead>();
  for (const d of dead) {
    const index = d.headers[CASE_HEADER];
    if (typeof index === 'number') byCase.set(index, [...(byCase.get(index) ?? []), d]);
    else byBody.set(bodyKey(d.content), [...(byBody.get(bodyKey(d.content)) ?? []), d]);
  }
  const reasons: string[] = [];
  for (const m of bad) {
    const copies = m.bare ? (byBody.get(bodyKey(m.body)) ?? []) : (byCase.get(m.index) ?? []);
    if (copies.length !== 1) {
      violations.push(
        `bad message #${m.index} (${m.kind}) dead-lettered ${copies.length} times: ${m.body.subarray(0, 120).toString('utf8')}`,
      );
      continue;
    }
    const reason = copies[0]!.headers[HEADER_REASON];
    reasons.push(String(reason));
    if (!isKnownReason(reason))
      violations.push(`bad message #${m.index} (${m.kind}): unknown x-icc-reason ${JSON.stringify(reason)}`);
    else if (!m.expectedReasons.includes(reason))
      violations.push(
        `bad message #${m.index} (${m.kind}): reason ${reason}, expected ${m.expectedReasons.join(' or ')}: ${m.body.subarray(0, 200).toString('utf8')}`,
      );
    if (Buffer.compare(copies[0]!.content, m.body) !== 0)
      violations.push(`bad message #${m.index}: the dead letter's body differs from the original`);
  }
  for (const v of valid)
    if (byCase.has(v.index))
      violations.push(
        `valid request ${String(v.body.requestId)} was dead-lettered: ${JSON.stringify(byCase.get(v.index)![0]!.headers)}`,
      );
  if (dead.length !== bad.length)
    violations.push(`${dead.length} dead letters for ${bad.length} bad messages`);
  const failedResults = tap.results.filter((r) => r.status === 'failed');
  if (failedResults.length !== bad.length)
    violations.push(`${failedResults.length} failed results for ${bad.length} bad messages`);
  if (tap.results.some((r) => r.retryable === true)) violations.push('a bad message was retried');

  // Valid copies verify; nothing outside CACHE_ROOT; inside it, only the cell's nodes and known names.
  for (const [id, r] of finals) {
    const expected = seeds.get(String(r.imageId));
    const file = cell.store.entries.imagePath(String(r.destination), String(r.imageId));
    if (!expected || (await fsp.stat(file).catch(() => undefined))?.size !== expected.size)
      violations.push(`valid request ${String(id)}: ${file} missing or wrong size`);
  }
  if (JSON.stringify((await fsp.readdir(cell.parent!)).sort()) !== JSON.stringify(parentBefore))
    violations.push(
      `the folder holding CACHE_ROOT changed: ${JSON.stringify(await fsp.readdir(cell.parent!))}`,
    );
  const rootFsAfter = (await fsp.readdir('/')).sort();
  if (JSON.stringify(rootFsAfter) !== JSON.stringify(rootFsBefore))
    violations.push(
      `/ changed: before ${JSON.stringify(rootFsBefore)}, after ${JSON.stringify(rootFsAfter)}`,
    );
  const tree = await listTree(cell.root);
  // An image, its meta and its piece list (docs/cache-layout.md, "Piece lists").
  const allowed = new Set(images.flatMap((i) => [i, `${i}.meta.json`, `${i}${PIECES_SUFFIX}`]));
  // The conductors still run: a record being written (`.<id>.beat-*.tmp`, renamed by its beat) is litter
  // only if it is still there a while later (CI once listed one mid-beat).
  const recordsBeingWritten: string[] = [];
  for (const entry of tree) {
    const [node, folder, name] = entry.split('/');
    if (/^\.icc-conductors\/\.[^/]+\.tmp$/.test(entry)) {
      recordsBeingWritten.push(entry);
      continue;
    }
    // .icc-header-key: the cell's key for signed retry headers (docs/protocol.md), made by the first conductor;
    // .icc-conductors/<conductorId>.json: the conductors' records (docs/upgrades.md).
    if (CELL_FILES.test(entry)) continue;
    // .icc-answers: the requests' final answers (docs/cache-layout.md), one JSON file per request id in
    // its bucket, and the time index `.by-time/<hour>/<bucket>~<requestId>` of their retention.
    if (node === '.icc-answers') {
      const answerFile = /^[0-9a-f]{2}$/.test(folder ?? '') && (name === undefined || name.endsWith('.json'));
      const timeIndex =
        folder === '.by-time' && /^(\d+(\/[0-9a-f]{2}~[^/]+)?)?$/.test(entry.split('/').slice(2).join('/'));
      if (folder !== undefined && !answerFile && !timeIndex)
        violations.push(`unexpected answer file: ${entry}`);
    } else if (!nodes.includes(node!)) violations.push(`unexpected entry in CACHE_ROOT: ${entry}`);
    else if (folder !== undefined && !['images', 'locks', 'tmp', 'used', 'node.json'].includes(folder))
      violations.push(`unexpected entry in a node folder: ${entry}`);
    else if (folder === 'images' && name !== undefined && !allowed.has(name))
      violations.push(`unexpected image: ${entry}`);
    else if (folder === 'locks' && name !== undefined && !images.includes(name))
      violations.push(`unexpected lock key: ${entry}`);
  }
  if (recordsBeingWritten.length > 0) await sleep(2_000);
  for (const entry of recordsBeingWritten)
    if (await fsp.lstat(path.join(cell.root, entry)).catch(() => undefined))
      violations.push(`a conductor record's temporary file stayed 2 s: ${entry}`);
  for (const t of await cell.tmpLeftovers()) violations.push(`partial file left: ${t}`);
  for (const [i, c] of conductors.entries()) conductorIsFine(c, violations, `fuzz-${i}`);
  const internal = conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'unexpected error in a copy'));
  for (const l of internal.slice(0, 5)) violations.push(`INTERNAL: ${JSON.stringify(l)}`);

  return {
    violations,
    figures: {
      params: p,
      badMessages: bad.length,
      byKind: tally(bad.map((m) => m.kind)),
      bare: bad.filter((m) => m.bare).length,
      validRequests: valid.length,
      validCompleted: [...finals.values()].filter(
        (r) => r.status === 'completed' || r.status === 'already-present',
      ).length,
      deadLetters: dead.length,
      reasons: tally(reasons),
      failedResults: failedResults.length,
      publishMs: Math.round(publishedMs),
      handledMs: Math.round(handledMs),
      messagesPerSecond: Math.round((items.length / handledMs) * 1000),
      crashes: conductors.filter(
        (c) => c.child.process.exitCode !== null || c.child.process.signalCode !== null,
      ).length,
    },
  };
}

/** Takes every message of a queue with a consumer (fast for thousands), until it stays empty for a moment. */
async function drainQueue(
  queue: string,
): Promise<Array<{ headers: Record<string, unknown>; content: Buffer }>> {
  const connection = await connect(AMQP_URL);
  const taken: Array<{ headers: Record<string, unknown>; content: Buffer }> = [];
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(500);
    let last = performance.now();
    await channel.consume(queue, (m) => {
      if (!m) return;
      taken.push({ headers: (m.properties.headers ?? {}) as Record<string, unknown>, content: m.content });
      last = performance.now();
      channel.ack(m);
    });
    while (performance.now() - last < 1_000 || (await channel.checkQueue(queue)).messageCount > 0)
      await sleep(100);
  } finally {
    await connection.close().catch(() => undefined);
  }
  return taken;
}

/**
 * 5b. The admin HTTP routes under fuzzed paths, queries, methods and headers (raw sockets): never a 5xx,
 * never a dropped connection or a crash; protected routes 401 without the token (and never their data);
 * /locks 400 for bad parameters and 200 for good ones.
 */
export async function runAdminFuzz(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<Outcome> {
  const p = bySize(run, BAD_INPUT_SIZES);
  const rng = run.rng.fork('http');
  const violations: string[] = [];
  const cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
  cleanups.add('cell', () => cell.cleanup());
  await cell.seed('node-a', 'img-0.raw', 64 * KiB);
  const token = `tok-${run.seed}-${rng.hex(16)}`;
  const conductor = await ConductorProcess.start(
    pool,
    cell.conductorEnv({ CONDUCTOR_ID: 'http-fuzz', ADMIN_TOKEN: token }),
    600_000,
  ).ready();
  const port = conductor.adminPort();
  const requests = generateHttpRequests(rng, p.httpRequests, token);
  const statuses: Array<{ request: FuzzHttpRequest; status: number | string }> = [];
  let cursor = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: p.httpConcurrency }, async () => {
      while (cursor < requests.length) {
        const request = requests[cursor++]!;
        const answer = await rawHttp(port, request).catch((error: Error) => ({
          status: `error: ${error.message}`,
          body: '',
          contentType: '',
        }));
        // CONNECT is a tunnel request: Node's HTTP server closes it unanswered when nobody handles tunnels.
        const closedUnanswered =
          request.method === 'CONNECT' && answer.status === 'error: not an HTTP answer: ""';
        statuses.push({ request, status: closedUnanswered ? 'closed (CONNECT)' : answer.status });
        const describe = `${request.method} ${JSON.stringify(request.target.slice(0, 200))} (${request.kind}, #${request.index})`;
        if (closedUnanswered) continue;
        if (typeof answer.status !== 'number') violations.push(`${describe}: ${answer.status}`);
        else {
          if (answer.status >= 500)
            violations.push(`${describe}: HTTP ${answer.status} ${answer.body.slice(0, 200)}`);
          if (
            request.expect !== undefined &&
            answer.status !== request.expect &&
            !(request.method === 'HEAD' && answer.status === request.expect)
          )
            violations.push(
              `${describe}: HTTP ${answer.status}, expected ${request.expect}: ${answer.body.slice(0, 200)}`,
            );
          // The status page shell (HTML) holds no data; JSON or metrics text without the token would.
          if (
            !request.authorized &&
            answer.status === 200 &&
            !answer.contentType.startsWith('text/html') &&
            /"totals"|"entries"|icc_results_total/.test(answer.body)
          )
            violations.push(`${describe}: protected data answered without the token`);
        }
      }
    }),
  );
  const tookMs = performance.now() - started;
  const live = await fetch(`http://127.0.0.1:${port}/health/live`)
    .then((r) => r.status)
    .catch(() => 0);
  if (live !== 200) violations.push(`/health/live answered ${live} after the fuzz`);
  conductorIsFine(conductor, violations, 'http-fuzz');
  return {
    violations,
    figures: {
      requests: requests.length,
      byKind: tally(requests.map((r) => r.kind)),
      statuses: tally(statuses.map((s) => String(s.status))),
      requestsPerSecond: Math.round((requests.length / tookMs) * 1000),
    },
  };
}

/** One raw HTTP/1.1 request (Connection: close); resolves with the status code and body text. */
function rawHttp(
  port: number,
  request: FuzzHttpRequest,
): Promise<{ status: number; body: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 10 s'));
    }, 10_000);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', (error) => {
      clearTimeout(timer);
      // An answer followed by a reset (the server closing a bad request) still counts as answered.
      if (chunks.length > 0) done();
      else reject(error);
    });
    const done = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) {
        reject(new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 100))}`));
        return;
      }
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      const contentType = /\r\ncontent-type:\s*([^\r\n]*)/i.exec(head)?.[1] ?? '';
      resolve({ status: Number(m[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4), contentType });
    };
    socket.on('end', done);
    const hasHost = request.headers.some(([k]) => k.toLowerCase() === 'host');
    const lines = [
      `${request.method} ${request.target} HTTP/1.1`,
      ...(hasHost ? [] : [`Host: 127.0.0.1:${port}`]),
      'Connection: close',
      ...request.headers.map(([k, v]) => `${k}: ${v}`),
    ];
    if (request.body !== undefined && !request.headers.some(([k]) => k.toLowerCase() === 'content-length'))
      lines.push(`Content-Length: ${Buffer.byteLength(request.body)}`);
    socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n${request.body ?? ''}`, 'utf8'));
  });
}

/**
 * 5c. `icc copy` with fuzzed command lines against a real cell and conductor: the exit code is always one
 * the documentation lists (0, 2, 3, 4, 5; the one the flags call for when the oracle can tell), never 1,
 * never a signal, never a stack trace.
 */
export async function runCliFuzz(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<Outcome> {
  const p = bySize(run, BAD_INPUT_SIZES);
  const rng = run.rng.fork('cli');
  const violations: string[] = [];
  const nodes = ['node-a', 'node-b', 'node-c', 'node-d'];
  const cell = await TestCell.create({ nodes });
  cleanups.add('cell', () => cell.cleanup());
  const image = await cell.seed('node-a', 'cli.img', 256 * KiB);
  const conductor = await ConductorProcess.start(
    pool,
    cell.conductorEnv({ CONDUCTOR_ID: 'cli-fuzz' }),
    600_000,
  ).ready();
  const lines = generateCliArgs(rng, p.cliRuns, {
    cellId: cell.cellId,
    amqpUrl: AMQP_URL,
    image: 'cli.img',
    source: 'node-a',
    destinations: nodes.slice(1),
    sha256: image.sha256,
    size: image.size,
  });
  const exits: Array<{ code: number | null; note: string }> = [];
  let cursor = 0;
  const started = performance.now();
  // The CLI reads CELL_ID and AMQP_URL from the environment when a flag is missing: neither is set here.
  const env = { ...process.env };
  delete env.CELL_ID;
  delete env.AMQP_URL;
  delete env.ICC_DEBUG;
  await Promise.all(
    Array.from({ length: p.cliConcurrency }, async () => {
      while (cursor < lines.length) {
        const line = lines[cursor++]!;
        const result = await runIcc(line.args, { env, timeoutMs: 45_000 });
        exits.push({ code: result.code, note: line.note });
        const describe = `icc ${JSON.stringify(line.args)} (${line.note})`;
        if (result.signal !== null || result.code === null)
          violations.push(`${describe}: killed by ${result.signal}\n${result.stderr.slice(-500)}`);
        else if (![0, 2, 3, 4, 5].includes(result.code))
          violations.push(`${describe}: exit ${result.code}\n${result.stderr.slice(-800)}`);
        else if (!line.allowed.includes(result.code))
          violations.push(
            `${describe}: exit ${result.code}, expected ${line.allowed.join(' or ')}\n${result.stderr.slice(-500)}`,
          );
        if (/\n\s+at .+:\d+:\d+\)?/.test(result.stderr) || /unexpected error/i.test(result.stderr))
          violations.push(`${describe}: a stack trace on stderr\n${result.stderr.slice(-800)}`);
        if (line.args.includes('--json') && result.code !== 2 && result.stdout.trim() !== '') {
          try {
            JSON.parse(result.stdout);
          } catch {
            violations.push(
              `${describe}: --json printed something that is not one JSON object: ${result.stdout.slice(0, 200)}`,
            );
          }
        }
      }
    }),
  );
  conductorIsFine(conductor, violations, 'cli-fuzz');
  // The valid lines published real requests: nothing may land outside the cell's nodes.
  for (const entry of await fsp.readdir(cell.root))
    if (!nodes.includes(entry) && !CELL_FILES.test(entry))
      violations.push(`unexpected entry in CACHE_ROOT: ${entry}`);
  for (const node of nodes)
    for (const name of await fsp.readdir(path.join(cell.root, node, 'images')).catch(() => [] as string[]))
      if (!name.startsWith('cli.img')) violations.push(`unexpected image ${node}/${name}`);
  return {
    violations,
    figures: {
      runs: lines.length,
      exitCodes: tally(exits.map((e) => String(e.code))),
      classes: tally(lines.map((l) => l.note || 'valid')),
      secondsPerRun: Math.round((performance.now() - started) / lines.length / 10) / 100,
    },
  };
}
