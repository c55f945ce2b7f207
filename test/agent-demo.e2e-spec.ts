import { describe, expect, it } from 'vitest';
import { cellQueues, cellTopology } from '@app/contracts';
import { describeRun, runIcc } from './support/agent-cli';
import { exists } from './support/image-store-fixtures';
import { AMQP_URL, requireRabbitMq, withChannel } from './support/rabbitmq';

/** True when the broker has no queue (or exchange) of that name (a passive declare fails with 404). */
async function absent(check: 'queue' | 'exchange', name: string): Promise<boolean> {
  return withChannel(async (channel) => {
    try {
      if (check === 'queue') await channel.checkQueue(name);
      else await channel.checkExchange(name);
      return false;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return true;
      throw error;
    }
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('icc demo', () => {
  it(
    'runs a whole temporary cell to the end, verifies every copy and leaves nothing behind',
    { timeout: 180_000 },
    async () => {
      await requireRabbitMq();
      // A smaller big image keeps the test quick; the command's default stays 256 MiB.
      const args = ['demo', '--big-image-mib', '24'];
      const run = await runIcc(args, { env: { AMQP_URL }, timeoutMs: 150_000 });
      const report = describeRun(args, run);
      expect(run.code, report).toBe(0);
      expect(run.stdout, report).toContain('all 15 images verified');
      // The pre-cache job onto every node: its per-node table, then its summary line.
      for (const node of ['node-2', 'node-3', 'node-5', 'node-6'])
        expect(run.stdout, report).toMatch(new RegExp(`│ ${node} +│ completed +│ 4\\.0 MiB`));
      for (const node of ['node-1', 'node-4'])
        expect(run.stdout, report).toMatch(new RegExp(`│ ${node} +│ already-present +│ - `));
      expect(run.stdout, report).toMatch(
        /precache job demo-[0-9a-f]+-precache \(cirros-0\.6\.2\.img\): 6\/6 nodes done \(2 already-present, 4 completed\)/,
      );
      // The image only the origin has: downloaded once, then copied from its first holder.
      expect(run.stdout).toMatch(/#10 origin fedora-41\.qcow2 -> node-4 +completed/);
      expect(run.stdout).toContain('origin: 1 download(s) of fedora-41.qcow2 for 2 copies');
      // Not a terminal here: plain progress lines, no bar escape codes.
      expect(run.stdout).not.toContain('\u001b[');
      expect(run.stdout).toMatch(/#1 fan-out ubuntu-24\.04\.qcow2 -> node-2 +completed/);
      expect(run.stdout).toMatch(/already-present \/ coalesced/);
      expect(run.stdout).toMatch(/lock wait p50 \/ max/);

      const cellId = /icc demo: cell (\S+),/.exec(run.stdout)?.[1];
      const tempDir = /temp folder: (\S+)/.exec(run.stdout)?.[1];
      const conductorPid = Number(/starting a conductor \(pid (\d+)/.exec(run.stdout)?.[1]);
      expect(cellId && tempDir && conductorPid, report).toBeTruthy();
      const topology = cellTopology(cellId!);
      expect(await exists(tempDir!), `temp folder ${tempDir} left behind`).toBe(false);
      expect(processAlive(conductorPid), `conductor ${conductorPid} still running`).toBe(false);
      for (const queue of cellQueues(topology))
        expect(await absent('queue', queue.name), `queue ${queue.name} left behind`).toBe(true);
      expect(await absent('exchange', topology.eventsExchange.name)).toBe(true);
    },
  );
});
